"""tools/benchmark_detector.py: the conv twin is the adder model with
convolutions, and the tool times both (tiny run; the numbers themselves are
benchmarks, not tested)."""
import json
import subprocess
import sys

import pytest
import torch

from . import ROOT, load_tool

bench = load_tool('benchmark_detector')
R50_BNH = str(ROOT / 'configs/adder_fcos/'
              'adder-fcos_adder-r50_adder-rpafpn_adder-head_1x_coco.py')
SMALL = str(ROOT / 'configs/synthetic/'
            'adder-fcos_adder-r18-quarter_adder-rpafpn_20e_synthetic-coco.py')


def test_conv_twin_replaces_every_adder_layer_by_a_conv_of_its_shape():
    from adder_det.engine import setup_mmdet
    from adder_det.ops import Adder2d
    from mmdet.registry import MODELS
    setup_mmdet()
    cfg = bench.load(R50_BNH)
    twin_cfg = bench.conv_twin(cfg.model)
    assert cfg.model.backbone.type == 'AdderResNet'  # the original is kept
    assert twin_cfg.backbone.type == 'ResNet'
    assert twin_cfg.backbone.norm_eval is False
    assert twin_cfg.bbox_head.type == 'FCOSHead'
    assert 'norm_per_level' not in twin_cfg.bbox_head
    assert 'Adder' not in str(twin_cfg).replace('AdderFPN', '')
    adder, twin = MODELS.build(cfg.model), MODELS.build(twin_cfg)
    adders = {n: m for n, m in adder.named_modules()
              if isinstance(m, Adder2d)}
    convs = dict(twin.named_modules())
    assert len(adders) == 72  # backbone 52, head 8, neck 12
    for name, m in adders.items():
        c = convs[name]
        assert type(c) is torch.nn.Conv2d, name
        assert c.weight.shape == m.weight.shape, name
        assert (c.stride, c.padding, c.dilation, c.groups) == (
            m.stride, m.padding, m.dilation, m.groups), name
    assert not any(isinstance(m, Adder2d) for m in twin.modules())
    # Everything else is the same module tree, but for the head's per-level
    # norms (LevelNorms: one norm a level in .norms, one norm in the twin).
    def layout(model):
        return {n for n, _ in model.named_modules() if '.norms' not in n}
    assert layout(adder) == layout(twin)


@pytest.mark.parametrize('config, conv, adder_layers', [
    (SMALL, None, 31),
    # the conv config freezes stage 1: mmengine's notes about it must not
    # reach stdout, which --json keeps for the JSON
    (R50_BNH, 'configs/fcos/fcos_r50_fpn_gn-head_1x_coco.py', 72),
])
def test_benchmark_detector_json_tiny(config, conv, adder_layers):
    out = subprocess.run(
        [sys.executable, 'tools/benchmark_detector.py', config, '--size',
         '64', '64', '--repeat', '1', '--warmup', '0', '--json'] +
        (['--conv-config', conv] if conv else []),
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    r = json.loads(out.stdout)
    assert r['info']['size'] == [64, 64]
    assert r['info']['conv'] == (conv or 'twin')
    assert r['conv']['adder_layers'] == 0
    assert r['adder']['adder_layers'] == adder_layers
    assert r['conv']['iter_ms'] > 0 and r['adder']['iter_ms'] > 0
    assert r['adder_vs_conv'] == pytest.approx(
        r['adder']['iter_ms'] / r['conv']['iter_ms'])


@pytest.mark.parametrize('args, message', [
    (['configs/fcos/fcos_r50_fpn_gn-head_1x_coco.py'], 'has no adder layer'),
    ([SMALL, '--batch', '0'], '--batch must be >= 1'),
    (['configs/no_such.py'], 'no config file configs/no_such.py'),
    pytest.param([SMALL, '--device', 'cuda'], 'sees no CUDA device',
                 marks=pytest.mark.skipif(torch.cuda.is_available(),
                                          reason='a CUDA device is present')),
])
def test_benchmark_detector_bad_input(args, message):
    out = subprocess.run(
        [sys.executable, 'tools/benchmark_detector.py', *args, '--size', '64',
         '64', '--repeat', '1'],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode != 0
    assert message in out.stderr, out.stderr[-2000:]
