"""tools/benchmark_op.py runs and reports every field (tiny shapes; the
numbers themselves are benchmarks, not tested)."""
import json
import subprocess
import sys

from . import ROOT


def test_benchmark_op_json_tiny():
    out = subprocess.run(
        [sys.executable, 'tools/benchmark_op.py', '--device', 'cpu', '--set',
         'all', '--layers', 's4.conv2,head P6', '--size', '64', '--repeat',
         '1', '--network', '--json'],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    r = json.loads(out.stdout)
    assert r['info']['ceiling_gmac_per_s'] > 0
    assert [row['layer'] for row in r['layers']] == ['s4.conv2 3x3',
                                                     'head P6 3x3']
    for row in r['layers']:
        for key in ('conv_fwd_ms', 'adder_fwd_ms', 'conv_fwdbwd_ms',
                    'adder_fwdbwd_ms', 'unfold_fwd_ms', 'adder_gmac_per_s',
                    'adder_fraction_of_ceiling', 'adder_fwdbwd_peak_mb',
                    'conv_fwdbwd_peak_mb'):
            assert row[key] is not None and row[key] >= 0, (key, row)
    assert r['summary']['fwd_vs_conv_total'] > 0
    net = r['network']
    assert net['adder_fwdbwd_ms'] > 0 and net['conv_fwdbwd_ms'] > 0
    assert net['fwdbwd_vs_conv'] > 0


def test_benchmark_op_layer_filter_matching_nothing_is_an_error():
    out = subprocess.run(
        [sys.executable, 'tools/benchmark_op.py', '--device', 'cpu',
         '--layers', 'no-such-layer'],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    assert 'no layer of --set resnet50 matches --layers no-such-layer' in \
        out.stderr
