"""defer_eta: eta scaling at the optimizer step instead of in backward."""
import copy
import sys
import warnings

import pytest
import torch
from torch import nn

from adder_det.ops import Adder2d, defer_eta, scale_filter_grad


def small_net(eta=0.2):
    torch.manual_seed(0)
    return nn.Sequential(Adder2d(3, 4, 3, padding=1, eta=eta),
                         nn.BatchNorm2d(4), nn.ReLU(),
                         Adder2d(4, 2, 1, eta=eta), nn.BatchNorm2d(2))


def sgd(net):
    return torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9,
                           weight_decay=1e-4)


def test_one_process_same_steps_as_scaling_in_backward():
    x = torch.randn(2, 3, 6, 6)
    a = small_net()
    b = copy.deepcopy(a)
    opt_a, opt_b = sgd(a), sgd(b)
    handle = defer_eta(b, opt_b)
    assert all(m.eta_deferred for m in b.modules() if isinstance(m, Adder2d))
    for _ in range(3):
        for net, opt in ((a, opt_a), (b, opt_b)):
            opt.zero_grad()
            net(x).square().mean().backward()
            opt.step()
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6)
    handle.remove()
    assert not any(m.eta_deferred for m in b.modules()
                   if isinstance(m, Adder2d))


def test_averaged_gradient_rescaled_once():
    """What DDP does: average raw per-process gradients, then rescale."""
    net = small_net()
    opt = torch.optim.SGD(net.parameters(), lr=0.0)
    defer_eta(net, opt)
    layer = net[0]
    grads = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        net.zero_grad()
        net(torch.randn(2, 3, 6, 6)).square().mean().backward()
        grads.append(layer.weight.grad.clone())
    # in backward nothing was rescaled: the raw gradients differ in norm
    assert abs(grads[0].norm() - grads[1].norm()) > 1e-6
    layer.weight.grad = (grads[0] + grads[1]) / 2
    opt.step()
    expected = scale_filter_grad((grads[0] + grads[1]) / 2, layer.eta)
    torch.testing.assert_close(layer.weight.grad, expected)
    k = layer.weight.numel()
    assert layer.weight.grad.norm().item() == pytest.approx(
        layer.eta * k ** 0.5, rel=1e-5)


def test_every_filter_must_be_in_an_optimizer():
    net = small_net()
    opt = torch.optim.SGD(list(net[1].parameters()) + [net[3].weight], lr=1)
    with pytest.raises(ValueError, match='in none of the optimizers'):
        defer_eta(net, opt)
    opt2 = torch.optim.SGD([net[0].weight], lr=1)
    handle = defer_eta(net, opt, opt2)  # split over two optimizers: fine
    handle.remove()
    with pytest.raises(TypeError, match='optimizer'):
        defer_eta(net)


def test_eta_none_layers_left_alone():
    net = small_net(eta=None)
    defer_eta(net, sgd(net))
    assert not any(getattr(m, 'eta_deferred', False) for m in net.modules())


def test_warns_when_data_parallel_without_deferral(monkeypatch):
    mod = sys.modules['adder_det.ops.adder2d']  # the name is the function
    monkeypatch.setattr(mod, '_warned_data_parallel', False)
    monkeypatch.setattr(torch.distributed, 'is_initialized', lambda: True)
    monkeypatch.setattr(torch.distributed, 'get_world_size', lambda: 2)
    net = small_net()
    with pytest.warns(UserWarning, match='defer_eta'):
        net(torch.randn(1, 3, 4, 4))
    monkeypatch.setattr(mod, '_warned_data_parallel', False)
    defer_eta(net, sgd(net))
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        net(torch.randn(1, 3, 4, 4))
