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


def test_benchmark_detector_sparse_forward_is_applied_and_reported():
    """--sparse-forward sets the CPU forward's mode (reported); auto by
    default."""
    for extra, mode in ((['--sparse-forward', 'never'], 'never'),
                        ([], 'auto')):
        out = subprocess.run(
            [sys.executable, 'tools/benchmark_detector.py', SMALL, '--size',
             '64', '64', '--repeat', '1', '--warmup', '0', '--json', *extra],
            cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr[-3000:]
        assert json.loads(out.stdout)['info']['sparse_forward'] == mode


@pytest.mark.parametrize('args, message', [
    (['configs/fcos/fcos_r50_fpn_gn-head_1x_coco.py'], 'has no adder layer'),
    ([SMALL, '--batch', '0'], '--batch must be >= 1'),
    (['configs/no_such.py'], 'no config file configs/no_such.py'),
    ([SMALL, '--amp'], '--amp needs --device cuda'),
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


FCOS_R50 = str(ROOT / 'configs/fcos/fcos_r50_fpn_gn-head_1x_coco.py')


@pytest.mark.parametrize('config, conv', [(SMALL, None), (R50_BNH, FCOS_R50)])
def test_saved_graphs_compute_the_detector_networks(tmp_path, config, conv):
    """--save-graphs / --graphs: each graph, given the detector's weights,
    computes its backbone+neck+head exactly, with every module in the
    train/eval mode the detector had (conv FCOS R-50: frozen BN)."""
    from adder_det.engine import setup_mmdet
    setup_mmdet()
    cfg = bench.load(config)
    conv_cfg = bench.load(conv) if conv else cfg
    models = {'conv': bench.build(conv_cfg, conv_cfg.model if conv else
                                  bench.conv_twin(cfg.model), 'cpu')[0],
              'adder': bench.build(cfg, cfg.model, 'cpu')[0]}
    path = tmp_path / 'graphs.pt'
    bench.save_graphs(path, models, dict(cudnn_benchmark=False))
    assert path.stat().st_size < 2**20  # no weights in it
    graphs, info = bench.load_graphs(str(path), torch.device('cpu'))
    assert info == dict(cudnn_benchmark=False)
    for key, model in models.items():
        gm = graphs[key]
        assert bench.count_adder_layers(gm) == bench.count_adder_layers(model)
        modules = dict(model.named_modules())
        modes = {name: m.training for name, m in gm.named_modules()
                 if not list(m.children())}  # the modules that compute
        assert modes == {name: modules[name].training for name in modes}
        if conv and key == 'conv':
            assert not all(modes.values())  # mmdet's frozen BN (norm_eval)
        missing, _ = gm.load_state_dict(model.state_dict(), strict=False)
        assert not missing
        img = torch.randn(2, 3, 64, 96)
        with torch.no_grad():
            expected = bench.DetectorNetwork(model)(img)
            got = gm(img)
        assert len(got) == len(expected) == 15  # 5 levels x 3 outputs
        for g, e in zip(got, expected):
            torch.testing.assert_close(g, e, rtol=0, atol=0)


@pytest.mark.parametrize('amp', [False, True])
def test_graphs_are_timed_without_mmdet(tmp_path, amp):
    """What the GPU machine does: mmdet, mmcv and mmengine unimportable;
    --amp: under autocast (bfloat16 on the CPU)."""
    path = tmp_path / 'graphs.pt'
    out = subprocess.run(
        [sys.executable, 'tools/benchmark_detector.py', SMALL,
         '--save-graphs', str(path)],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    blocked = ("import runpy, sys\n"
               "for m in ('mmdet', 'mmcv', 'mmengine'):\n"
               "    sys.modules[m] = None\n"
               "sys.argv = sys.argv[1:]\n"
               "runpy.run_path(sys.argv[0], run_name='__main__')\n")
    out = subprocess.run(
        [sys.executable, '-c', blocked, 'tools/benchmark_detector.py',
         '--graphs', str(path), '--size', '64', '64', '--repeat', '1',
         '--warmup', '0', '--json'] + (['--amp'] if amp else []),
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    r = json.loads(out.stdout)
    assert r['info']['config'] == SMALL and r['info']['conv'] == 'twin'
    assert (r['conv']['adder_layers'], r['adder']['adder_layers']) == (0, 31)
    assert r['adder_vs_conv'] == pytest.approx(
        r['adder']['iter_ms'] / r['conv']['iter_ms'])
    assert r['what'].startswith('network forward+backward')
    assert r['info']['amp'] == ('bfloat16' if amp else False)
    assert ('autocast bfloat16' in r['what']) == amp


@pytest.mark.parametrize('args, message', [
    (['--graphs', 'no/such.pt'], 'no graphs file no/such.pt'),
    ([], 'give a CONFIG or --graphs FILE'),
    ([SMALL, '--graphs', 'x.pt'], 'give a CONFIG or --graphs FILE'),
    ([SMALL, '--save-graphs', 'x.pt', '--amp'], 'give --amp and --device'),
])
def test_graphs_bad_input(args, message):
    out = subprocess.run(
        [sys.executable, 'tools/benchmark_detector.py', *args],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode != 0
    assert message in out.stderr, out.stderr[-2000:]



def _halve(x):
    return x / 2


torch.fx.wrap('_halve')  # traced as a call of this module's function


class _CallsHalve(torch.nn.Module):
    def forward(self, x):
        return _halve(x)


class _OneLevelHead(torch.nn.Module):
    def forward(self, x):
        return ((x, ), )


def test_trace_refuses_what_needs_more_than_torch():
    """A graph calling anything but torch and adder_det.ops would not load
    on the GPU machine: named at --save-graphs instead."""
    detector = torch.nn.Module()
    detector.backbone, detector.neck = _CallsHalve(), torch.nn.Identity()
    detector.bbox_head = _OneLevelHead()
    with pytest.raises(SystemExit, match=r'still needs .*\._halve'):
        bench.trace_network(detector)
