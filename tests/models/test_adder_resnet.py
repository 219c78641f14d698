"""AdderResNet: mmdet's ResNet with adder convs, conv stem, live BN."""
import pytest
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

import adder_det.models  # noqa: F401
from adder_det.ops import Adder2d
from mmdet.registry import MODELS

# Adder layers per depth: 2 (basic) or 3 (bottleneck) per block, plus one
# downsample 1x1 per stage that changes shape.
EXPECTED_ADDERS = {18: 16 + 3, 34: 32 + 3, 50: 48 + 4, 101: 99 + 4,
                   152: 150 + 4}


def count(model, cls):
    return sum(isinstance(m, cls) for m in model.modules())


@pytest.mark.parametrize('depth', sorted(EXPECTED_ADDERS))
def test_every_residual_conv_is_adder_and_stem_is_conv(depth):
    model = MODELS.build(dict(type='AdderResNet', depth=depth,
                              base_channels=8))
    assert count(model, Adder2d) == EXPECTED_ADDERS[depth]
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert convs == [model.conv1]  # only the stem multiplies
    # Every adder layer is followed by BN: one BN per adder plus the stem's.
    assert count(model, _BatchNorm) == EXPECTED_ADDERS[depth] + 1
    assert all(m.input_grad == 'sign' for m in model.modules()
               if isinstance(m, Adder2d))


def test_forward_shapes_and_backward():
    model = MODELS.build(dict(type='AdderResNet', depth=18, base_channels=8,
                              out_indices=(1, 2, 3)))
    model.init_weights()
    x = torch.randn(2, 3, 64, 64, requires_grad=True)
    outs = model(x)
    assert [o.shape for o in outs] == [(2, 16, 8, 8), (2, 32, 4, 4),
                                       (2, 64, 2, 2)]
    sum(o.sum() for o in outs).backward()
    assert all(m.weight.grad is not None for m in model.modules()
               if isinstance(m, Adder2d))


def test_adder_init_survives_mmdet_init():
    """ResNet's Kaiming init targets Conv2d; adder filters stay N(0, 1)."""
    torch.manual_seed(0)
    model = MODELS.build(dict(type='AdderResNet', depth=18, base_channels=16))
    model.init_weights()
    stds = [m.weight.std().item() for m in model.modules()
            if isinstance(m, Adder2d)]
    assert min(stds) > 0.8 and max(stds) < 1.2, stds
    assert model.conv1.weight.std().item() < 0.5  # the stem got Kaiming


def test_norm_eval_false_keeps_bn_training():
    model = MODELS.build(dict(type='AdderResNet', depth=18, base_channels=8))
    model.train()
    assert all(m.training for m in model.modules()
               if isinstance(m, _BatchNorm))
    frozen = MODELS.build(dict(type='AdderResNet', depth=18, base_channels=8,
                               norm_eval=True))
    frozen.train()
    assert not any(m.training for m in frozen.modules()
                   if isinstance(m, _BatchNorm))


def test_frozen_stages_freeze_like_mmdet():
    model = MODELS.build(dict(type='AdderResNet', depth=18, base_channels=8,
                              frozen_stages=1))
    model.train()
    for m in (model.conv1, model.norm1, model.layer1):
        assert not any(p.requires_grad for p in m.parameters())
    assert not model.layer1.training and not model.norm1.training
    assert all(p.requires_grad for p in model.layer2.parameters())
    assert model.layer2.training


def test_conv_cfg_options_and_rejects_conv():
    model = MODELS.build(dict(type='AdderResNet', depth=18, base_channels=8,
                              conv_cfg=dict(type='Adder',
                                            input_grad='hardtanh', eta=None)))
    adders = [m for m in model.modules() if isinstance(m, Adder2d)]
    assert all(m.input_grad == 'hardtanh' and m.eta is None for m in adders)
    with pytest.raises(ValueError, match='adder conv_cfg'):
        MODELS.build(dict(type='AdderResNet', depth=18, conv_cfg=None))


def test_with_cp_runs():
    model = MODELS.build(dict(type='AdderResNet', depth=18, base_channels=8,
                              with_cp=True))
    x = torch.randn(2, 3, 64, 64, requires_grad=True)
    sum(o.sum() for o in model(x)).backward()
    assert x.grad is not None
