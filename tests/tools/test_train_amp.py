"""tools/train.py --amp: the eta scaling moves after the loss scaler."""
import subprocess
import sys

import pytest
import torch

from . import ROOT, load_tool

train = load_tool('train')
ADDER_COCO = (ROOT / 'configs' / 'synthetic' /
              'adder-fcos_adder-r18-quarter_adder-rpafpn_20e_synthetic-coco.py')


def hook_types(cfg):
    return [h['type'] for h in cfg.get('custom_hooks', [])]


def build(tmp_path, *extra):
    return train.build_cfg(train.parse_args(
        [str(ADDER_COCO), '--work-dir', str(tmp_path), *extra]))


def test_amp_adds_deferred_eta_hook_once(tmp_path):
    cfg = build(tmp_path, '--amp', '--cfg-options', 'custom_hooks=[]')
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    assert hook_types(cfg) == ['DeferredEtaHook']
    # The adder configs list it already: kept, not doubled.
    cfg = build(tmp_path, '--amp')
    assert hook_types(cfg) == ['RNGStateHook', 'DeferredEtaHook']
    # AMP from the config itself counts too.
    cfg = build(tmp_path, '--cfg-options', 'custom_hooks=[]',
                'optim_wrapper.type=AmpOptimWrapper')
    assert hook_types(cfg) == ['DeferredEtaHook']


def test_no_amp_no_hook_added(tmp_path):
    cfg = build(tmp_path, '--cfg-options', 'custom_hooks=[]')
    assert cfg.optim_wrapper.type != 'AmpOptimWrapper'
    assert hook_types(cfg) == []


@pytest.mark.skipif(torch.cuda.is_available(), reason='a GPU is present')
def test_amp_without_a_gpu_is_named(tmp_path):
    out = subprocess.run(
        [sys.executable, 'tools/train.py', str(ADDER_COCO), '--amp',
         '--work-dir', str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    assert 'AMP (--amp, or AmpOptimWrapper in the config) needs a GPU' in \
        out.stderr, out.stderr[-2000:]
