#!/usr/bin/env python
"""Export a training checkpoint as a slim inference checkpoint.

    python tools/export.py work_dirs/x/epoch_12.pth out/adder_fcos.pth

Keeps the weights (``state_dict``) and the metadata inference needs
(``dataset_meta``: class names and palette; the config text), drops the
optimizer, scheduler and message-hub state, and names the file like mmdet's
publish_model: ``out/adder_fcos-<first 8 hex digits of its sha256>.pth``.
The result loads with ``tools/test.py`` and ``mmdet.apis.init_detector``,
weights-only, with no allow-list needed.
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


def export(src: str, dst: str) -> str:
    """Write the slim checkpoint; returns its final (hashed) path."""
    from adder_det.engine import allow_mmengine_checkpoints
    allow_mmengine_checkpoints()
    if not osp.isfile(src):
        raise FileNotFoundError(f'export: no checkpoint {src}')
    ckpt = torch.load(src, map_location='cpu')
    if not isinstance(ckpt, dict) or 'state_dict' not in ckpt:
        raise ValueError(f'export: {src} has no state_dict')
    meta = {k: v for k, v in ckpt.get('meta', {}).items() if k in KEEP_META}
    slim = {'state_dict': {k: v.detach().clone()
                           for k, v in ckpt['state_dict'].items()},
            'meta': meta}
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
    args = p.parse_args(argv)
    final = export(args.checkpoint, args.out)
    print(f'{final}: {osp.getsize(final) / 2**20:.1f} MiB (from '
          f'{osp.getsize(args.checkpoint) / 2**20:.1f} MiB)')


if __name__ == '__main__':
    main()
