"""AdderFPN: FPN / PAFPN / R-PAFPN, with and without shortcuts."""
import itertools

import pytest
import torch
from torch import nn

import adder_det.models  # noqa: F401
from adder_det.models.necks.adder_fpn import Shortcut
from adder_det.ops import Adder2d
from mmdet.registry import MODELS

IN_CHANNELS = [8, 16, 32, 64]
SIZES = [32, 16, 8, 4]


def inputs(batch=2):
    torch.manual_seed(0)
    return [torch.randn(batch, c, s, s, requires_grad=True)
            for c, s in zip(IN_CHANNELS, SIZES)]


def build(**kwargs):
    cfg = dict(type='AdderFPN', in_channels=IN_CHANNELS, out_channels=16,
               num_outs=5, add_extra_convs='on_output')
    cfg.update(kwargs)
    neck = MODELS.build(cfg)
    neck.init_weights()
    return neck


@pytest.mark.parametrize('fusion,shortcut',
                         list(itertools.product(('fpn', 'pafpn', 'rpafpn'),
                                                (False, True))))
def test_shapes_and_gradient_reaches_every_level(fusion, shortcut):
    neck = build(fusion=fusion, shortcut=shortcut)
    xs = inputs()
    outs = neck(xs)
    assert [tuple(o.shape) for o in outs] == [(2, 16, s, s) for s in
                                              (32, 16, 8, 4, 2)]
    sum(o.pow(2).sum() for o in outs).backward()
    for level, x in enumerate(xs):
        assert x.grad is not None and x.grad.abs().sum() > 0, level
    for name, p in neck.named_parameters():
        assert p.grad is not None, name


def test_fpn_xavier_init_leaves_adder_filters_alone():
    torch.manual_seed(0)
    neck = build()
    stds = [m.weight.std().item() for m in neck.modules()
            if isinstance(m, Adder2d)]
    assert min(stds) > 0.8 and max(stds) < 1.2, stds


def test_module_counts_per_fusion():
    n = len(IN_CHANNELS)
    for fusion, extra in (('fpn', 0), ('pafpn', 2 * (n - 1)),
                          ('rpafpn', 2 * (n - 1))):
        neck = build(fusion=fusion, shortcut=False)
        adders = sum(isinstance(m, Adder2d) for m in neck.modules())
        # laterals (n) + output 3x3 (n) + one extra level conv + PA convs
        assert adders == 2 * n + 1 + extra, fusion
        assert not any(isinstance(m, nn.Conv2d) for m in neck.modules())


def test_every_3x3_conv_gets_a_shortcut():
    neck = build(fusion='rpafpn', shortcut=True)
    for m in neck.modules():
        if isinstance(m, Adder2d) and m.kernel_size == (3, 3):
            parents = [p for p in neck.modules() if isinstance(p, Shortcut)
                       and p.conv.conv is m]
            assert len(parents) == 1
    # laterals are 1x1 and change channels: no shortcut
    assert all(not isinstance(c, Shortcut) for c in neck.lateral_convs)


def test_on_input_extra_conv_changes_channels_so_no_shortcut():
    neck = build(fusion='rpafpn', shortcut=True, add_extra_convs='on_input',
                 num_outs=6)
    assert not isinstance(neck.fpn_convs[len(IN_CHANNELS)], Shortcut)
    assert isinstance(neck.fpn_convs[len(IN_CHANNELS) + 1], Shortcut)
    assert len(neck(inputs())) == 6


def test_shortcut_is_identity_add():
    """Zeroing the adder branch (its BN scale and shift) leaves the input."""
    neck = build(fusion='rpafpn', shortcut=True)
    for sc in (neck.fpn_convs[0], neck.downsample_convs[0],
               neck.bottom_up_convs[0]):
        sc.conv.bn.weight.data.zero_()
        sc.conv.bn.bias.data.zero_()
        x = torch.randn(2, 16, 9, 9)
        y = sc(x)
        expect = x if sc.stride == 1 else x[:, :, ::2, ::2]
        torch.testing.assert_close(y, expect)


def test_rpafpn_runs_bottom_up_before_top_down():
    """In R-PAFPN the finest input reaches the coarsest output through the
    bottom-up path, before any output conv; in FPN it cannot at all."""
    for fusion, reaches in (('fpn', False), ('rpafpn', True),
                            ('pafpn', True)):
        neck = build(fusion=fusion, shortcut=False, num_outs=4,
                     add_extra_convs=False).eval()
        xs = inputs()
        neck(xs)[3].sum().backward()
        reached = xs[0].grad is not None and xs[0].grad.abs().sum() > 0
        assert reached == reaches, fusion


def test_conv_ablation_and_fpn_options():
    neck = build(conv_cfg=None, fusion='pafpn')
    assert not any(isinstance(m, Adder2d) for m in neck.modules())
    assert len(neck(inputs())) == 5
    neck = build(start_level=1, num_outs=3, add_extra_convs=False)
    assert [o.shape[-1] for o in neck(inputs())] == [16, 8, 4]
    neck = build(relu_before_extra_convs=True, num_outs=6)
    assert len(neck(inputs())) == 6
    with pytest.raises(ValueError, match='fusion'):
        build(fusion='bifpn')
