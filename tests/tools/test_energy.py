"""tools/energy.py reproduces the paper's Table 5 by counting hooks."""
import json
import subprocess
import sys

import pytest

from . import ROOT, load_tool

energy = load_tool('energy')

# Table 5 (COCO, 1333x800): #Mul (G), #Add (G), energy (mJ).
TABLE5 = {
    'fcos/fcos_r50_fpn_gn-head_1x_coco.py': (214.7, 214.7, 987.7),
    'adder_fcos/adder-fcos_adder-r50_fpn_gn-head_1x_coco.py':
    (129.9, 299.5, 750.2),
    # B+N: the paper counts the neck at the cost of a plain (adder) FPN.
    'adder_fcos/ablations/adder-fcos_adder-r50_adder-fpn_gn-head_1x_coco.py':
    (112.9, 316.5, 702.7),
}


@pytest.mark.parametrize('config', sorted(TABLE5))
def test_table5_rows_within_2_percent(config):
    r = energy.detector_energy(str(ROOT / 'configs' / config))
    for key, paper in zip(('mul_g', 'add_g', 'energy_mj'), TABLE5[config]):
        assert abs(r[key] - paper) / paper < 0.02, (key, r[key], paper)
    for key in ('mul_g', 'add_g', 'energy_mj'):
        parts = sum(p[key] for p in r['parts'].values())
        assert abs(parts - r[key]) < 1e-9 * max(1, r[key])
    assert set(r['parts']) == {'backbone', 'neck', 'bbox_head'}


def test_energy_ratio_and_int8():
    conv = energy.detector_energy(
        str(ROOT / 'configs/fcos/fcos_r50_fpn_gn-head_1x_coco.py'),
        precision='int8')
    assert abs(conv['energy_mj'] - (0.2 * conv['mul_g'] +
                                    0.03 * conv['add_g'])) < 1e-6


def test_cli_json_and_bad_path():
    cfg = ROOT / 'configs/adder_fcos/adder-fcos_adder-r50_fpn_gn-head_1x_coco.py'
    out = subprocess.run([sys.executable, str(ROOT / 'tools/energy.py'),
                          str(cfg), '--shape', '320', '320', '--json'],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert {'mul_g', 'add_g', 'energy_mj', 'parts'} <= set(r)
    assert r['shape'] == [320, 320] and r['add_g'] > r['mul_g']
    out = subprocess.run([sys.executable, str(ROOT / 'tools/energy.py'),
                          'no/such/config.py'], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode != 0 and 'no config file' in out.stderr
