"""AdderFCOSHead and whole Adder FCOS detectors: loss and predict."""
import math

import pytest
import torch
from torch import nn

import adder_det.models  # noqa: F401
from adder_det.models.layers import LevelNorms
from adder_det.ops import Adder2d
from mmdet.registry import MODELS
from mmdet.utils import register_all_modules

from .detector_cfgs import run_loss_and_predict, small_fcos

register_all_modules()


def test_adder_fcos_head_towers_are_adder_predictors_conv():
    head = MODELS.build(small_fcos(head_type='AdderFCOSHead')['bbox_head'])
    head.init_weights()
    for tower in (head.cls_convs, head.reg_convs):
        for m in tower:
            assert isinstance(m.conv, Adder2d) and m.conv.input_grad == 'sign'
            # one BN per pyramid level, the adder filters shared
            assert isinstance(m.norm, LevelNorms) and len(m.norm.norms) == 5
            assert all(type(n) is nn.BatchNorm2d for n in m.norm.norms)
    for pred in (head.conv_cls, head.conv_reg, head.conv_centerness):
        assert type(pred) is nn.Conv2d
    # mmdet's prior-probability init still reaches the classifier bias...
    assert abs(head.conv_cls.bias.mean().item() -
               -math.log((1 - 0.01) / 0.01)) < 1e-4
    # ...and the Normal(0.01) conv init does not hit the adder filters.
    assert all(0.8 < m.conv.weight.std().item() < 1.2
               for m in head.cls_convs)
    with pytest.raises(ValueError, match='adder conv_cfg'):
        MODELS.build(dict(small_fcos()['bbox_head'], type='AdderFCOSHead',
                          conv_cfg=None))


@pytest.mark.parametrize('per_level', [True, False])
def test_adder_fcos_head_inference_norms_fit_every_level(per_level):
    """After a training-mode forward over levels of different scales, the
    head in eval mode (running statistics) gives what it gave in training
    mode (batch statistics) on every level, so the model validated is the
    model trained. One BN shared by the levels cannot: its running
    statistics mix levels of different scales."""
    head = MODELS.build(dict(small_fcos(head_type='AdderFCOSHead')[
        'bbox_head'], norm_per_level=per_level))
    head.init_weights()
    for m in head.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = 1.0  # running statistics = the last batch's
    torch.manual_seed(0)
    # levels of different scales, each with >= 512 values per channel, so
    # that BN's biased (batch) and unbiased (running) variances agree
    feats = [torch.randn(8, 16, s, s) * 3**i + i
             for i, s in enumerate((16, 8, 8, 8, 8))]
    head.train()
    with torch.no_grad():
        trained = head(feats)
        evaluated = head.eval()(feats)
    # largest difference per output, relative to that output's spread
    diffs = [((t - e).abs().max() / t.std()).item()
             for kind_t, kind_e in zip(trained, evaluated)
             for t, e in zip(kind_t, kind_e)]
    if per_level:
        assert max(diffs) < 0.05, diffs
        with pytest.raises(ValueError, match='4 feature levels for 5 strides'):
            head(feats[:4])
    else:
        assert max(diffs) > 1.0, diffs


@pytest.mark.parametrize('variant', ['conv', 'B', 'B+N', 'B+N+H'])
def test_detector_variants_loss_and_predict(variant):
    backbone = 'ResNet' if variant == 'conv' else 'AdderResNet'
    neck = dict(type='FPN') if variant in ('conv', 'B') else None
    head = 'AdderFCOSHead' if variant == 'B+N+H' else 'FCOSHead'
    model = MODELS.build(small_fcos(backbone, neck, head))
    model.init_weights()
    expect_adders = {'conv': 0, 'B': 19}.get(variant)
    n_adders = sum(isinstance(m, Adder2d) for m in model.modules())
    if expect_adders is not None:
        assert n_adders == expect_adders
    else:
        assert n_adders > 19
    losses, preds = run_loss_and_predict(model)
    assert {'loss_cls', 'loss_bbox', 'loss_centerness'} <= set(losses)
    assert all(torch.isfinite(v).all() for v in losses.values())
    assert len(preds) == 2
    for p in preds:
        assert p.pred_instances.bboxes.shape[-1] == 4
        assert len(p.pred_instances.scores) == len(p.pred_instances.labels)
    grads = [m.weight.grad for m in model.modules() if isinstance(m, Adder2d)]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.filterwarnings('ignore:Adder2d under autocast')
def test_adder_fcos_under_cpu_autocast():
    """Mixed precision (what AmpOptimWrapper and the test loops' fp16 do):
    the convolutions run in bfloat16, the adder layers widen their input
    and compute in float32; losses, gradients and predictions come out."""
    model = MODELS.build(small_fcos('AdderResNet', None, 'AdderFCOSHead'))
    model.init_weights()
    seen = []

    def record(module, args, out):
        seen.append((args[0].dtype, out.dtype))

    for m in model.modules():
        if isinstance(m, Adder2d):
            m.register_forward_hook(record)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        losses, preds = run_loss_and_predict(model)
    assert all(torch.isfinite(v).all() for v in losses.values())
    grads = [m.weight.grad for m in model.modules() if isinstance(m, Adder2d)]
    assert all(g is not None and g.dtype == torch.float32
               and torch.isfinite(g).all() for g in grads)
    assert {out for _, out in seen} == {torch.float32}
    assert torch.bfloat16 in {inp for inp, _ in seen}  # after the conv stem
    assert len(preds) == 2
    assert all(torch.isfinite(p.pred_instances.bboxes).all() for p in preds)
