"""The Adder2d module mirrors nn.Conv2d."""
import pytest
import torch
from torch import nn

from adder_det.ops import Adder2d, adder2d


def test_mirrors_conv2d_attributes():
    a = Adder2d(8, 16, 3, stride=2, padding=1, dilation=1, groups=2, bias=True)
    c = nn.Conv2d(8, 16, 3, stride=2, padding=1, dilation=1, groups=2)
    for attr in ('in_channels', 'out_channels', 'kernel_size', 'stride',
                 'padding', 'dilation', 'groups', 'transposed',
                 'output_padding', 'padding_mode'):
        assert getattr(a, attr) == getattr(c, attr), attr
    assert a.weight.shape == c.weight.shape and a.bias.shape == c.bias.shape
    assert [n for n, _ in a.named_parameters()] == ['weight', 'bias']
    x = torch.randn(2, 8, 9, 9)
    assert a(x).shape == c(x).shape


def test_forward_is_functional_and_options_reach_it():
    torch.manual_seed(0)
    m = Adder2d(4, 6, (3, 1), padding=(1, 0), input_grad='sign', eta=None)
    x = torch.randn(2, 4, 7, 7, requires_grad=True)
    x2 = x.detach().clone().requires_grad_()
    m(x).sum().backward()
    adder2d(x2, m.weight.detach(), None, 1, (1, 0), input_grad='sign',
            eta=None).sum().backward()
    torch.testing.assert_close(x.grad, x2.grad)
    # eta=None leaves the raw gradient, eta=0.2 rescales it.
    g_raw = m.weight.grad.clone()
    m.weight.grad = None
    m.eta = 0.2
    m(x).sum().backward()
    assert not torch.allclose(m.weight.grad, g_raw)
    assert abs(m.weight.grad.norm() - 0.2 * m.weight.numel() ** 0.5) < 1e-3


def test_init_is_unit_normal_not_conv_init():
    torch.manual_seed(0)
    m = Adder2d(64, 64, 3)
    std = m.weight.std().item()
    assert 0.95 < std < 1.05, std
    assert m.bias is None
    m.weight.data.zero_()
    m.init_weights()
    assert 0.95 < m.weight.std().item() < 1.05
    assert 0.45 < Adder2d(64, 64, 3, init_std=0.5).weight.std().item() < 0.55
    m = Adder2d(64, 64, 3, init_mean=0.8, init_std=0.6)
    assert abs(m.weight.mean().item() - 0.8) < 0.02
    assert 0.57 < m.weight.std().item() < 0.63
    m.weight.data.zero_()
    m.init_weights()  # what mmengine's init calls: same distribution
    assert abs(m.weight.mean().item() - 0.8) < 0.02


def test_extra_repr():
    r = repr(Adder2d(3, 8, 3, stride=2, padding=1, input_grad='sign'))
    assert 'Adder2d(3, 8, kernel_size=(3, 3), stride=(2, 2)' in r
    assert "input_grad='sign'" in r and 'eta=0.2' in r


@pytest.mark.parametrize('kwargs,match', [
    (dict(groups=3), 'groups'),
    (dict(input_grad='relu'), 'input_grad'),
    (dict(eta=0), 'eta'),
    (dict(kernel_size=0), 'kernel_size'),
])
def test_bad_arguments(kwargs, match):
    args = dict(in_channels=4, out_channels=8, kernel_size=3)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        Adder2d(**args)


def test_state_dict_round_trip():
    a, b = Adder2d(3, 4, 3), Adder2d(3, 4, 3)
    b.load_state_dict(a.state_dict())
    x = torch.randn(1, 3, 5, 5)
    torch.testing.assert_close(a(x), b(x))
