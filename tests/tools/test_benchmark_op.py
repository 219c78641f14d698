"""tools/benchmark_op.py runs and reports every field (tiny shapes; the
numbers themselves are benchmarks, not tested)."""
import json
import subprocess
import sys

import pytest

from . import ROOT, load_tool

bench = load_tool('benchmark_op')


def test_benchmark_op_json_tiny():
    out = subprocess.run(
        [sys.executable, 'tools/benchmark_op.py', '--device', 'cpu', '--set',
         'all', '--layers', 's4.conv2 3x3/2,head P6', '--size', '64',
         '--repeat', '1', '--network', '--json'],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    r = json.loads(out.stdout)
    assert r['info']['ceiling_gmac_per_s'] > 0
    # The CPU peaks are the RSS high-water mark where Linux lets it be
    # reset (exact), else sampled.
    assert r['info']['cpu_peak_memory'] == (
        'VmHWM' if bench.reset_rss_peak() else 'sampled RSS')
    assert [row['layer'] for row in r['layers']] == ['s4.conv2 3x3/2',
                                                     'head P6 3x3']
    for row in r['layers']:
        for key in ('conv_fwd_ms', 'adder_fwd_ms', 'conv_fwdbwd_ms',
                    'adder_fwdbwd_ms', 'unfold_fwd_ms', 'unfold_vs_adder_fwd',
                    'adder_gmac_per_s',
                    'adder_fraction_of_ceiling', 'adder_fwdbwd_peak_mb',
                    'conv_fwdbwd_peak_mb'):
            assert row[key] is not None and row[key] >= 0, (key, row)
    assert r['summary']['fwd_vs_conv_total'] > 0
    net = r['network']
    assert net['impl'] == 'mmdet'  # auto, mmdet installed
    assert net['adder_fwdbwd_ms'] > 0 and net['conv_fwdbwd_ms'] > 0
    assert net['fwdbwd_vs_conv'] > 0
    # Peak memory from the CPU child process, as the layers': the
    # activations the backward keeps, 31-33 MB for either net at 64x64
    # (measured in the parent, whose allocator keeps freed blocks, the
    # nets at 224x224 had shown 13-44 MB instead of 191).
    for key in ('adder_fwdbwd_peak_mb', 'conv_fwdbwd_peak_mb'):
        assert net[key] > 10, (key, net)


def test_benchmark_op_cpu_isa_is_applied_and_reported():
    """--cpu-isa runs the kernels of that ISA (the baseline one exists on
    every CPU) and the report says which ran; the best ISA by default."""
    from adder_det.ops._backend import load_extension
    best = load_extension().cpu_isas()[0]
    for extra, expect in ((['--cpu-isa', 'generic'], 'generic'), ([], best)):
        out = subprocess.run(
            [sys.executable, 'tools/benchmark_op.py', '--device', 'cpu',
             '--layers', 's4.conv2', '--size', '32', '--repeat', '1',
             '--json', *extra],
            cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-3000:]
        assert json.loads(out.stdout)['info']['cpu_isa'] == expect


def test_benchmark_op_input_and_cpu_modes_are_applied_and_reported():
    """--input relu feeds the layers ReLU outputs (half zeros, as reported
    per layer); --sparse-forward, --min-add and --half-width-tile set the
    CPU forward's modes (reported; min_adds and half_width_tile by the CPU
    in auto mode, the latter only with the AVX-512 kernels); --rows and
    --matmul-filter-grad theirs; --input-grad the adder layers' rule."""
    from adder_det.ops._backend import load_extension
    ext = load_extension()
    auto_adds, auto_half = ext.min_adds(), ext.half_width_tile()
    avx512 = ext.cpu_isa() == 'avx512'
    for extra, zeros, mode, adds, half in (
            (['--input', 'relu', '--sparse-forward', 'never', '--min-add',
              'always', '--half-width-tile', 'always', '--rows', 'always',
              '--matmul-filter-grad', 'never', '--input-grad', 'hardtanh'],
             0.5, 'never', True,
             avx512),
            (['--input', 'relu', '--min-add', 'never', '--half-width-tile',
              'never'], 0.5, 'auto', False, False),
            ([], 0.0, 'auto', auto_adds, auto_half)):
        out = subprocess.run(
            [sys.executable, 'tools/benchmark_op.py', '--device', 'cpu',
             '--layers', 's4.conv2', '--size', '64', '--repeat', '1',
             '--json', *extra],
            cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-3000:]
        r = json.loads(out.stdout)
        assert r['info']['sparse_forward'] == mode
        assert r['info']['min_adds'] == adds
        assert r['info']['half_width_tile'] == half
        forced = '--rows' in extra
        assert r['info']['rows'] == ('always' if forced else 'auto')
        assert r['info']['matmul_filter_grad'] == (
            'never' if forced else 'auto')
        assert r['info']['input_grad'] == ('hardtanh' if forced else 'sign')
        assert r['info']['input'] == (extra[1] if extra else 'randn')
        for row in r['layers']:
            assert abs(row['input_zeros'] - zeros) < 0.05, row


def test_benchmark_sign_rule_runs_and_names_the_isa():
    from adder_det.ops._backend import load_extension
    best = load_extension().cpu_isas()[0]
    out = subprocess.run(
        [sys.executable, 'tools/benchmark_sign_rule.py', '--set', 'resnet50',
         '--batch', '1', '--layers', 's4.in', '--cpu-isa', best],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert f'cpu_isa={best}' in lines[0]
    assert len(lines) == 3 and lines[-1].startswith('s4.in 1x1')
    # 512 terms, 49 positions: the fast tile by AVX2's thresholds, not by
    # AVX-512's (from 64 positions); the column asks _C.sign_fast_cpu_runs
    expect = 'exact' if best == 'avx512' else 'fast'
    assert lines[-1].split()[-1] == expect, lines[-1]


def test_benchmark_sign_rule_scales_maps_and_refuses_cuda_without_one():
    out = subprocess.run(
        [sys.executable, 'tools/benchmark_sign_rule.py', '--set', 'fcos',
         '--size', '64', '--batch', '1', '--layers', 'P6'],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert 'size=64' in lines[0] and lines[-1].startswith('head P6 3x3')
    import torch
    from adder_det.ops._backend import load_extension
    if torch.cuda.is_available() and load_extension().built_with_cuda():
        return
    out = subprocess.run(
        [sys.executable, 'tools/benchmark_sign_rule.py', '--device', 'cuda',
         '--layers', 'r18q.s1'],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode != 0
    assert 'needs a GPU and adder_det._C built with CUDA' in out.stderr


def _cpu_modes(*args):
    return subprocess.run(
        [sys.executable, 'tools/benchmark_cpu_modes.py', *args],
        cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_benchmark_cpu_modes_times_each_setting():
    """tools/benchmark_cpu_modes.py: one line per layer with each setting's
    time and ratio to the first, then the sums (the filter gradient too);
    an unknown setting is refused by name."""
    out = _cpu_modes('sparse_forward', 'never,always', '--layers',
                     's4.conv2 3x3/2', '--size', '64', '--zeros', '0.5',
                     '--rounds', '1')
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert lines[0].startswith('switch=sparse_forward values=never,always')
    assert len(lines) == 3 and lines[1].startswith('s4.conv2 3x3/2')
    assert 'never' in lines[1] and '(1.00)' in lines[1] and 'always' in lines[1]
    assert lines[2].startswith('summed: never')
    out = _cpu_modes('matmul_filter_grad', 'never,auto', '--op',
                     'filter_grad', '--layers', 's4.in', '--size', '64',
                     '--rounds', '1')
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert 'op=filter_grad' in lines[0]
    assert len(lines) == 3 and lines[1].startswith('s4.in 1x1')
    out = _cpu_modes('min_add', 'never,often', '--layers', 's4.in')
    assert out.returncode != 0
    assert "'often' is not one of auto, always, never" in out.stderr


def test_benchmark_op_layer_filter_matching_nothing_is_an_error():
    out = subprocess.run(
        [sys.executable, 'tools/benchmark_op.py', '--device', 'cpu',
         '--layers', 'no-such-layer'],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    assert 'no layer of --set resnet50 matches --layers no-such-layer' in \
        out.stderr


def test_plain_network_is_mmdets_resnet50():
    # --network-impl plain (the GPU machine has no mmdet) must time the same
    # network as mmdet's ResNet-50 / AdderResNet-50: same parameters, same
    # adder layers, same stage outputs.
    import importlib.util

    import torch
    from adder_det.ops import Adder2d
    spec = importlib.util.spec_from_file_location(
        'benchmark_op', ROOT / 'tools' / 'benchmark_op.py')
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    _, mmdet_nets = bench.network_pair('mmdet')
    _, plain_nets = bench.network_pair('plain')
    x = torch.randn(1, 3, 64, 64)
    for build_mmdet, build_plain in zip(mmdet_nets, plain_nets):
        a, b = build_mmdet(), build_plain()
        shapes = [sorted(tuple(p.shape) for p in m.parameters())
                  for m in (a, b)]
        assert shapes[0] == shapes[1]
        adders = [sum(isinstance(m, Adder2d) for m in net.modules())
                  for net in (a, b)]
        assert adders[0] == adders[1]
        a.eval()
        b.eval()
        assert [f.shape for f in a(x)] == [f.shape for f in b(x)]
    assert adders[0] == 52  # every conv but the stem: 16 blocks x 3 + 4
    r = subprocess.run(
        [sys.executable, 'tools/benchmark_op.py', '--device', 'cpu',
         '--layers', 'none', '--size', '64', '--batch', '1', '--repeat', '1',
         '--network', '--network-impl', 'plain', '--json'],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    net = json.loads(r.stdout)['network']
    assert net['impl'] == 'plain' and net['fwdbwd_vs_conv'] > 0


def test_cpu_peak_memory_sees_a_short_allocation():
    """The CPU peak (the RSS high-water mark, reset per block) sees 64 MB
    of fresh pages mapped, touched and unmapped within the block, which
    sampling every 0.2 ms could miss. (An anonymous map, not a tensor:
    glibc may serve a tensor from heap memory already resident, which
    earlier tests in this process leave behind.)"""
    import mmap

    import torch
    if not bench.reset_rss_peak():
        pytest.skip('this kernel refuses to reset the RSS high-water mark')
    size = 64 << 20
    with bench.PeakMemory(torch.device('cpu')) as mem:
        block = mmap.mmap(-1, size)
        for i in range(0, size, mmap.PAGESIZE):
            block[i] = 1
        block.close()
    # Within 2 MB: the process's other pages come and go meanwhile.
    assert size - (2 << 20) <= mem.bytes < size + (2 << 20), mem.bytes


def _compare_builds(*args):
    return subprocess.run(
        [sys.executable, 'tools/compare_builds.py', *args],
        cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_compare_builds_times_each_build_in_its_own_process():
    """tools/compare_builds.py: the same build as old and new gives one
    line per layer and pass with both times and their ratio, then the sums;
    each child imports the package copy holding its build (it exits
    otherwise). A missing build file, an unknown pass and zero rounds are
    refused by name."""
    from adder_det.ops._backend import load_extension
    so = load_extension().__file__
    out = _compare_builds(so, so, '--layers', 's4.conv2 3x3/2', '--size',
                          '64', '--pass', 'forward,input_grad,fwdbwd',
                          '--rounds', '1', '--calls', '1')
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert 'size=64' in lines[0] and 'rounds=1' in lines[0]
    rows = [line.split() for line in lines[2:5]]
    assert [r[2] for r in rows] == ['forward', 'input_grad', 'fwdbwd']
    for r in rows:
        assert ' '.join(r[:2]) == 's4.conv2 3x3/2'
        assert float(r[3]) > 0 and float(r[4]) > 0 and float(r[5]) > 0
    assert [line.split()[1] for line in lines[5:]] == [
        'forward:', 'input_grad:', 'fwdbwd:']
    out = _compare_builds('/no/such.so', so, '--layers', 's4.in')
    assert out.returncode != 0
    assert 'no extension file /no/such.so' in out.stderr
    out = _compare_builds(so, so, '--pass', 'forward,backward')
    assert out.returncode != 0 and 'unknown --pass backward' in out.stderr
    out = _compare_builds(so, so, '--rounds', '0')
    assert out.returncode != 0 and '--rounds and --calls' in out.stderr
