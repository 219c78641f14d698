"""Adaptive weight normalization (AWN) of Adder2d."""
import pytest
import torch
from torch import nn

from adder_det.ops import Adder2d, adder2d
from adder_det.ops.awn import standardize


def awn(per='filter', **kw):
    return dict(type='AWN', per=per, **kw)


@pytest.mark.parametrize('per', ['filter', 'layer'])
def test_standardized_filters_zero_mean_unit_variance_times_gain(per):
    torch.manual_seed(0)
    m = Adder2d(6, 4, 3, groups=2, weight_norm=awn(per), eta=None)
    with torch.no_grad():
        m.weight.mul_(7).add_(3)
        m.awn_gain.uniform_(0.5, 2.0)
    w = m.filters().double()
    gain = m.awn_gain.double().flatten()
    if per == 'filter':
        assert m.awn_gain.shape == (4, 1, 1, 1)
        flat = w.flatten(1)
        torch.testing.assert_close(flat.mean(1), torch.zeros(4, dtype=w.dtype),
                                   atol=1e-6, rtol=0)
        torch.testing.assert_close(flat.std(1, unbiased=False), gain,
                                   rtol=1e-5, atol=0)
    else:
        assert m.awn_gain.shape == (1, 1, 1, 1)
        assert abs(w.mean().item()) < 1e-6
        assert w.std(unbiased=False).item() == pytest.approx(gain.item(),
                                                              rel=1e-5)


def test_gain_starts_at_one_so_awn_starts_near_the_raw_filters():
    torch.manual_seed(0)
    m = Adder2d(16, 8, 3, weight_norm=awn())
    assert torch.equal(m.awn_gain, torch.ones(8, 1, 1, 1))
    m2 = Adder2d(16, 8, 3, weight_norm=awn('layer', gain=0.5))
    assert torch.equal(m2.awn_gain, torch.full((1, 1, 1, 1), 0.5))


@pytest.mark.parametrize('per', ['filter', 'layer'])
def test_gradcheck_through_the_normalization(per):
    torch.manual_seed(0)
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    shape = (4, 1, 1, 1) if per == 'filter' else (1, 1, 1, 1)
    g = torch.rand(shape, dtype=torch.float64).add_(0.5).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda w, g: standardize(w, g, per, 1e-5), (w, g))


@pytest.mark.parametrize('per', ['filter', 'layer'])
def test_layer_gradients_are_the_chain_rule_through_awn(per):
    """The papers' filter gradient (X - F) of the standardized filters,
    carried back through the normalization to the raw filters and gain."""
    torch.manual_seed(1)
    x = torch.randn(2, 4, 6, 6, dtype=torch.float64)
    m = Adder2d(4, 5, 3, padding=1, eta=None, weight_norm=awn(per),
                dtype=torch.float64)
    with torch.no_grad():
        m.awn_gain.uniform_(0.5, 2.0)
    gy = torch.randn(2, 5, 6, 6, dtype=torch.float64)
    m(x).backward(gy)
    w_hat = m.filters().detach().requires_grad_()
    adder2d(x, w_hat, padding=1, eta=None).backward(gy)
    raw = m.weight.detach().requires_grad_()
    gain = m.awn_gain.detach().requires_grad_()
    standardize(raw, gain, per, 1e-5).backward(w_hat.grad)
    torch.testing.assert_close(m.weight.grad, raw.grad)
    torch.testing.assert_close(m.awn_gain.grad, gain.grad)


def test_gradcheck_input_with_awn_sign_rule():
    g = torch.Generator().manual_seed(3)
    x = (torch.randint(-3, 3, (1, 2, 5, 5), generator=g) + 0.3 +
         0.1 * torch.rand(1, 2, 5, 5, generator=g)).double().requires_grad_()
    m = Adder2d(2, 3, 3, input_grad='sign', weight_norm=awn(), eta=None,
                dtype=torch.float64)
    assert torch.autograd.gradcheck(m, (x, ))


def test_eta_scales_the_raw_filter_gradient():
    torch.manual_seed(0)
    m = Adder2d(4, 6, 3, eta=0.3, weight_norm=awn())
    m(torch.randn(2, 4, 7, 7)).square().mean().backward()
    k = m.weight.numel()
    assert m.weight.grad.norm().item() == pytest.approx(0.3 * k ** 0.5,
                                                        rel=1e-5)
    assert m.awn_gain.grad.norm().item() != pytest.approx(
        0.3 * m.awn_gain.numel() ** 0.5, rel=1e-3)  # gain: not rescaled


def test_trains_and_loss_decreases_on_a_fixed_batch():
    torch.manual_seed(0)
    net = nn.Sequential(
        Adder2d(3, 8, 3, padding=1, weight_norm=awn()), nn.BatchNorm2d(8),
        nn.ReLU(), Adder2d(8, 8, 3, padding=1, weight_norm=awn('layer')),
        nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(8, 3))
    x, y = torch.randn(16, 3, 8, 8), torch.randint(0, 3, (16, ))
    opt = torch.optim.SGD(net.parameters(), lr=0.2, momentum=0.9)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


@pytest.mark.parametrize('per', ['filter', 'layer'])
def test_folding_gives_identical_outputs_and_reloads_as_folded(per):
    torch.manual_seed(0)
    m = Adder2d(4, 6, 3, padding=1, weight_norm=awn(per))
    with torch.no_grad():
        m.awn_gain.uniform_(0.5, 2.0)
    x = torch.randn(2, 4, 8, 8)
    before = m(x)
    m.fold_weight_norm()
    assert m.weight_norm_folded and m.awn_gain is None
    assert 'awn_gain' not in dict(m.named_parameters())
    assert torch.equal(m(x), before)
    assert 'folded' in repr(m)
    fresh = Adder2d(4, 6, 3, padding=1, weight_norm=awn(per))
    fresh.load_state_dict(m.state_dict())
    assert fresh.weight_norm_folded
    assert torch.equal(fresh(x), before)
    # an unfolded AWN state dict loads as unfolded
    again = Adder2d(4, 6, 3, padding=1, weight_norm=awn(per))
    again.load_state_dict(Adder2d(4, 6, 3, weight_norm=awn(per)).state_dict())
    assert not again.weight_norm_folded


@pytest.mark.parametrize('cfg,match', [
    (dict(type='BN'), "dict\\(type='AWN'"),
    ('AWN', "dict\\(type='AWN'"),
    (dict(type='AWN', per='channel'), 'per must be one of'),
    (dict(type='AWN', eps=0), 'eps must be positive'),
    (dict(type='AWN', momentum=0.1), 'unknown weight_norm keys'),
])
def test_bad_weight_norm_config(cfg, match):
    with pytest.raises(ValueError, match=match):
        Adder2d(3, 4, 3, weight_norm=cfg)
