"""Mixed precision: adder2d under torch.autocast, with a loss scaler.

Autocast makes the convolutions before an adder layer produce float16 or
bfloat16 while the adder filters stay float32; the adder layer widens the
half input and computes in float32 (adder_det/ops/adder2d.py,
_autocast_to_float32). A loss scaler's factor must not meet the eta scaling
in backward: defer_eta moves it after the unscaling.
"""
import copy
import sys
import warnings

import pytest
import torch
from torch import nn

from adder_det.ops import Adder2d, adder2d, defer_eta

adder2d_module = sys.modules['adder_det.ops.adder2d']  # name: the function

CUDA = pytest.mark.skipif(not torch.cuda.is_available(),
                          reason='no CUDA device')
# (device, autocast dtype): CPU autocast takes both half types too.
SETTINGS = [('cpu', torch.bfloat16), ('cpu', torch.float16),
            pytest.param('cuda', torch.float16, marks=CUDA),
            pytest.param('cuda', torch.bfloat16, marks=CUDA)]


def same(a, b, device):
    """Bitwise on CPU; on CUDA within rounding (split reductions add
    partial sums atomically, in no fixed order): for half tensors torch's
    default tolerance of their dtype."""
    if device == 'cpu':
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    elif a.dtype in (torch.float16, torch.bfloat16):
        torch.testing.assert_close(a, b)
    else:
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize('device,dtype', SETTINGS)
@pytest.mark.parametrize('backend', ['auto', 'reference'])
def test_half_input_computed_in_float32(device, dtype, backend, monkeypatch):
    monkeypatch.setenv('ADDER_DET_BACKEND', backend)
    torch.manual_seed(0)
    x = torch.randn(2, 6, 9, 9, device=device).to(dtype).requires_grad_()
    w = torch.randn(4, 3, 3, 3, device=device, requires_grad=True)
    b = torch.randn(4, device=device, requires_grad=True)
    with torch.autocast(device, dtype=dtype):
        y = adder2d(x, w, b, stride=2, padding=1, groups=2)
    assert y.dtype == torch.float32
    g = torch.randn_like(y)
    y.backward(g)
    assert (x.grad.dtype, w.grad.dtype, b.grad.dtype) == (
        dtype, torch.float32, torch.float32)

    # The same layer in float32 on the widened input (widening is exact).
    x32 = x.detach().float().requires_grad_()
    w32 = w.detach().clone().requires_grad_()
    y32 = adder2d(x32, w32, b.detach(), stride=2, padding=1, groups=2)
    y32.backward(g)
    same(y, y32, device)
    same(w.grad, w32.grad, device)
    same(x.grad, x32.grad.to(dtype), device)


@pytest.mark.filterwarnings('ignore:Adder2d under autocast')
@pytest.mark.parametrize('device,dtype', SETTINGS)
@pytest.mark.parametrize('weight_norm', [None, dict(type='AWN')])
def test_module_after_autocast_conv(device, dtype, weight_norm):
    """A conv (cast by autocast) feeding an Adder2d, as in an adder
    backbone: runs, and matches the float32 module on the conv's output."""
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, padding=1).to(device)
    adder = Adder2d(4, 6, 3, padding=1, bias=True,
                    weight_norm=weight_norm).to(device)
    x = torch.randn(2, 3, 8, 8, device=device)
    with torch.autocast(device, dtype=dtype):
        h = conv(x)
        y = adder(h)
    assert h.dtype == dtype and y.dtype == torch.float32
    y.square().mean().backward()
    assert adder.weight.grad.dtype == torch.float32
    assert torch.isfinite(adder.weight.grad).all()
    assert torch.isfinite(conv.weight.grad).all()
    with torch.no_grad():
        same(y, adder(h.float()), device)


def _net(device):
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1),
                         Adder2d(4, 6, 3, padding=1, eta=0.2),
                         nn.BatchNorm2d(6)).to(device)


@pytest.mark.parametrize('device,dtype', SETTINGS)
def test_loss_scaled_step_keeps_the_eta_norm(device, dtype):
    """With defer_eta, a GradScaler step moves the adder filters by
    lr * eta * sqrt(numel), as a float32 step does; scaling in backward
    would divide that by the loss scale."""
    lr, scale = 0.1, 2.0**12
    ref = _net(device)
    opt = torch.optim.SGD(ref.parameters(), lr=lr)
    x = torch.randn(2, 3, 8, 8, device=device)
    target = torch.randn(2, 6, 8, 8, device=device)
    (ref(x) * target).mean().backward()
    before = ref[1].weight.detach().clone()
    opt.step()
    ref_step = ref[1].weight.detach() - before

    net = _net(device)
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    handle = defer_eta(net, opt)
    scaler = torch.amp.GradScaler(device, init_scale=scale)
    with torch.autocast(device, dtype=dtype):
        loss = (net(x) * target).mean()
    scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()
    handle.remove()
    step = net[1].weight.detach() - before
    expected = lr * 0.2 * before.numel()**0.5
    assert abs(step.norm().item() - expected) < 1e-4 * expected
    assert abs(ref_step.norm().item() - expected) < 1e-4 * expected
    # Half-precision conv output: a slightly different gradient direction.
    cos = torch.nn.functional.cosine_similarity(step.flatten(),
                                                ref_step.flatten(), dim=0)
    assert cos > 0.99


def test_warns_when_eta_meets_the_loss_scale(monkeypatch):
    monkeypatch.setattr(adder2d_module, '_warned_loss_scaling', False)
    net = _net('cpu')
    x = torch.randn(1, 3, 6, 6)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        with torch.autocast('cpu', dtype=torch.bfloat16):
            net(x)
            net(x)
    msgs = [str(w.message) for w in caught if 'loss scale' in str(w.message)]
    assert len(msgs) == 1 and 'defer_eta' in msgs[0]

    # Deferred (or evaluating, or no autocast): no warning.
    monkeypatch.setattr(adder2d_module, '_warned_loss_scaling', False)
    deferred = copy.deepcopy(net)
    defer_eta(deferred, torch.optim.SGD(deferred.parameters(), lr=0.1))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        with torch.autocast('cpu', dtype=torch.bfloat16):
            deferred(x)
            net.eval()(x)
        net.train()(x)
    assert not [w for w in caught if 'loss scale' in str(w.message)]
