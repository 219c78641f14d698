"""AdderOptimWrapperConstructor: adder filters get their own lr/decay."""
import pytest
import torch
from torch import nn

from adder_det.ops import Adder2d


def net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4),
                         Adder2d(4, 4, 3, bias=True,
                                 weight_norm=dict(type='AWN')),
                         nn.BatchNorm2d(4))


def groups_by_param(model, paramwise_cfg):
    from mmengine.optim import build_optim_wrapper

    import adder_det.engine  # noqa: F401  (registers)
    wrapper = build_optim_wrapper(model, dict(
        optimizer=dict(type='AdamW', lr=0.002, weight_decay=0.05),
        constructor='AdderOptimWrapperConstructor',
        paramwise_cfg=paramwise_cfg))
    out = {}
    names = {id(p): n for n, p in model.named_parameters()}
    for g in wrapper.optimizer.param_groups:
        for p in g['params']:
            out[names[id(p)]] = (g['lr'], g['weight_decay'])
    return out


@pytest.mark.parametrize('extra', [{}, dict(norm_decay_mult=0.)])
def test_adder_filters_get_the_multipliers(extra):
    model = net()
    g = groups_by_param(model, dict(adder_lr_mult=10., adder_decay_mult=0.5,
                                    **extra))
    assert set(g) == {n for n, _ in model.named_parameters()}
    assert g['2.weight'] == pytest.approx((0.02, 0.025))
    for name in ('0.weight', '0.bias', '2.bias', '2.awn_gain'):
        assert g[name] == pytest.approx((0.002, 0.05))
    bn_decay = 0. if extra else 0.05
    assert g['1.weight'] == pytest.approx((0.002, bn_decay))


def test_defaults_change_nothing():
    model = net()
    g = groups_by_param(model, None)
    assert all(v == pytest.approx((0.002, 0.05)) for v in g.values())
