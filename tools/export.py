#!/usr/bin/env python
"""Export a training checkpoint as a slim inference checkpoint.

    python tools/export.py work_dirs/x/epoch_12.pth out/adder_fcos.pth

Keeps the weights (``state_dict``) and the metadata inference needs
(``dataset_meta``: class names and palette; the config text), drops the
optimizer, scheduler and message-hub state, and names the file like mmdet's
publish_model: ``out/adder_fcos-<first 8 hex digits of its sha256>.pth``.
The result loads with ``tools/test.py`` and ``mmdet.apis.init_detector``,
weights-only, with no allow-list needed.

Adder layers trained with AWN (``weight_norm=dict(type='AWN')``) are folded:
the standardized filters are written into ``weight`` and the gain dropped,
so inference does no normalization. Folding builds the model from the config
stored in the checkpoint (or ``--config``); the folded checkpoint loads into
a model built from the same config (its layers switch to folded on load).
"""
import argparse
import hashlib
import os
import os.path as osp
import sys

import torch

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

KEEP_META = ('dataset_meta', 'cfg', 'epoch', 'iter', 'mmengine_version',
             'experiment_name', 'seed')


def fold_awn(state_dict: dict, config) -> dict:
    """The state dict with every AWN adder layer folded (see module doc)."""
    from mmengine.config import Config

    from adder_det.engine import setup_mmdet
    from adder_det.ops import fold_weight_norms
    if config is None:
        raise ValueError('export: the checkpoint has AWN adder layers to fold'
                         ' but stores no config; pass --config')
    if not isinstance(config, Config):
        config = (Config.fromfile(config) if osp.isfile(config) else
                  Config.fromstring(config, '.py'))
    setup_mmdet()
    from mmdet.registry import MODELS
    model = MODELS.build(config.model)
    model.load_state_dict(state_dict, strict=True)
    n = fold_weight_norms(model)
    print(f'export: folded AWN into {n} adder layers')
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def export(src: str, dst: str, config=None) -> str:
    """Write the slim checkpoint; returns its final (hashed) path.
    ``config`` (path, text or Config) is only needed to fold AWN layers of
    a checkpoint that stores no config."""
    from adder_det.engine import allow_mmengine_checkpoints
    allow_mmengine_checkpoints()
    if not osp.isfile(src):
        raise FileNotFoundError(f'export: no checkpoint {src}')
    ckpt = torch.load(src, map_location='cpu')
    if not isinstance(ckpt, dict) or 'state_dict' not in ckpt:
        raise ValueError(f'export: {src} has no state_dict')
    meta = {k: v for k, v in ckpt.get('meta', {}).items() if k in KEEP_META}
    state = {k: v.detach().clone() for k, v in ckpt['state_dict'].items()}
    if any(k.endswith('.awn_gain') for k in state):
        state = fold_awn(state, config if config is not None
                         else meta.get('cfg'))
    slim = {'state_dict': state, 'meta': meta}
    os.makedirs(osp.dirname(osp.abspath(dst)) or '.', exist_ok=True)
    tmp = dst + '.tmp'
    torch.save(slim, tmp)
    with open(tmp, 'rb') as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:8]
    stem = dst[:-4] if dst.endswith('.pth') else dst
    final = f'{stem}-{digest}.pth'
    os.replace(tmp, final)
    return final


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('checkpoint')
    p.add_argument('out', help='output path; the sha256 prefix is appended')
    p.add_argument('--config', help='config of the checkpoint, to fold AWN '
                   'layers (default: the config stored in the checkpoint)')
    args = p.parse_args(argv)
    final = export(args.checkpoint, args.out, args.config)
    print(f'{final}: {osp.getsize(final) / 2**20:.1f} MiB (from '
          f'{osp.getsize(args.checkpoint) / 2**20:.1f} MiB)')


if __name__ == '__main__':
    main()
