#!/usr/bin/env python
"""The ablation study of docs/ablations.md: train and evaluate each row.

    python tools/run_ablations.py --data synthetic|raccoon [--rows NAME ...]
        [--epochs N] [--seed S] [--jobs 2] [--work-dir work_dirs/ablations]

Every row is the data set's small Adder FCOS config (or its conv twin) with
one change, trained from scratch with the same schedule (the config's, or
--epochs) and evaluated on the val split (synthetic: CocoMetric mAP@0.5 and
mAP; raccoon: VOC mAP@0.5). The exact config of each row is written to
WORK/DATA/ROW/config.py, its log next to it. For the conv row and the
default adder row, tools/feature_stats.py adds the fraction of exact zeros
after the last backbone stage. Results: WORK/DATA/results.json and a
Markdown table on stdout (rows of earlier invocations with the same recipe,
i.e. the same base configs and epochs, stay in results.json unless rerun). --seed fixes mmengine's seed for every row, so rows differ by
their change and not by the draw. --jobs 2 runs two rows at a time, one
thread each.
"""
import argparse
import json
import os
import os.path as osp
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIGS = {
    'synthetic': dict(
        adder='configs/synthetic/adder-fcos_adder-r18-quarter_adder-rpafpn_20e_synthetic-coco.py',
        conv='configs/synthetic/fcos_r18-quarter_rpafpn_20e_synthetic-coco.py',
        metric=r'coco/bbox_mAP_50: ([\d.]+)', extra=r'coco/bbox_mAP: ([\d.]+)'),
    'raccoon': dict(
        adder='configs/raccoon/adder-fcos_adder-r18-quarter_adder-rpafpn_24e_raccoon.py',
        conv='configs/raccoon/fcos_r18-quarter_rpafpn_24e_raccoon.py',
        metric=r'pascal_voc/mAP: ([\d.]+)', extra=None),
}


def adder(**kw):
    return dict(dict(type='Adder', input_grad='sign', eta=0.2), **kw)


def both(conv_cfg):
    return {'model.backbone.conv_cfg': conv_cfg, 'model.neck.conv_cfg': conv_cfg}


# name -> (base, changes as mmengine merge_from_dict options)
ROWS = {
    'conv FCOS (conv twin)': ('conv', {}),
    'Adder FCOS B (adder backbone, conv R-PAFPN)': (
        'adder', {'model.neck.conv_cfg': None}),
    'Adder FCOS B+N (adder R-PAFPN; the default)': ('adder', {}),
    'Adder FCOS B+N+H (adder head towers)': ('adder', {
        'model.bbox_head': dict(type='AdderFCOSHead', conv_cfg=adder(),
                                norm_cfg=dict(_delete_=True, type='BN',
                                              requires_grad=True))}),
    'frozen backbone BN (norm_eval=True)': (
        'adder', {'model.backbone.norm_eval': True}),
    'hardtanh input gradient': ('adder', both(adder(input_grad='hardtanh'))),
    'eta off': ('adder', both(adder(eta=None))),
    'neck FPN': ('adder', {'model.neck.fusion': 'fpn',
                           'model.neck.shortcut': False}),
    'neck PAFPN': ('adder', {'model.neck.fusion': 'pafpn',
                             'model.neck.shortcut': False}),
    'neck PAFPN + shortcuts': ('adder', {'model.neck.fusion': 'pafpn',
                                         'model.neck.shortcut': True}),
    'AWN (per filter)': ('adder', both(adder(
        weight_norm=dict(type='AWN', per='filter')))),
}
SPARSITY_ROWS = ('conv FCOS (conv twin)',
                 'Adder FCOS B+N (adder R-PAFPN; the default)')


def recipe_id(data, epochs=None) -> str:
    """Digest of what every row shares (the data set's two base configs
    and the epochs): rows merge into one results.json only when it agrees."""
    import hashlib
    h = hashlib.sha256(str(epochs).encode())
    for base in ('adder', 'conv'):
        with open(osp.join(ROOT, CONFIGS[data][base]), 'rb') as f:
            h.update(f.read())
    return h.hexdigest()[:12]


def slug(name):
    return re.sub(r'[^a-z0-9]+', '-', name.lower()).strip('-')[:48]


def write_config(data, name, epochs, out_dir, data_root=None, seed=None):
    from mmengine.config import Config
    base, changes = ROWS[name]
    cfg = Config.fromfile(osp.join(ROOT, CONFIGS[data][base]))
    if changes:
        cfg.merge_from_dict(changes)
    if epochs:
        cfg.train_cfg.max_epochs = cfg.train_cfg.val_interval = epochs
        for s in cfg.param_scheduler:
            if s.get('type') == 'CosineAnnealingLR':
                s.T_max = s.end = epochs
    if seed is not None:
        cfg.randomness = dict(seed=seed)
    if data_root:
        for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
            cfg[key].dataset.data_root = data_root
        if cfg.val_evaluator.get('ann_file'):
            ann = osp.join(data_root, 'annotations/instances_val.json')
            cfg.val_evaluator.ann_file = cfg.test_evaluator.ann_file = ann
    os.makedirs(out_dir, exist_ok=True)
    path = osp.join(out_dir, 'config.py')
    cfg.dump(path)
    return path


def run_row(data, name, args):
    out_dir = osp.join(args.work_dir, data, slug(name))
    config = write_config(data, name, args.epochs, out_dir, args.data_root,
                          args.seed)
    env = dict(os.environ)
    if args.jobs > 1:
        env['OMP_NUM_THREADS'] = '1'
    t0 = time.time()
    log_path = osp.join(out_dir, 'train.log')
    with open(log_path, 'w') as log:
        rc = subprocess.run([sys.executable, 'tools/train.py', config,
                             '--work-dir', out_dir], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT).returncode
    text = open(log_path).read()
    spec = CONFIGS[data]
    found = re.findall(spec['metric'], text)
    row = dict(row=name, config=config, seed=args.seed,
               recipe=recipe_id(data, args.epochs),
               minutes=(time.time() - t0) / 60,
               returncode=rc, map50=float(found[-1]) if found else None)
    if spec['extra']:
        extra = re.findall(spec['extra'], text)
        row['map'] = float(extra[-1]) if extra else None
    losses = re.findall(r'\bloss: ([\d.naif]+)', text)
    row['final_loss'] = losses[-1] if losses else None
    ckpt_file = osp.join(out_dir, 'last_checkpoint')
    if name in SPARSITY_ROWS and rc == 0 and osp.isfile(ckpt_file):
        stats = osp.join(out_dir, 'feature_stats.json')
        subprocess.run([sys.executable, 'tools/feature_stats.py', config,
                        open(ckpt_file).read().strip(), '--out', stats],
                       cwd=ROOT, env=env, capture_output=True)
        if osp.isfile(stats):
            st = json.load(open(stats))['backbone_stages']
            row['last_stage_zero_fraction'] = list(st.values())[-1][
                'zero_fraction']
    print(f"[{data}] {name}: mAP@0.5 {row['map50']} ({row['minutes']:.1f} "
          f'min, rc {rc})', flush=True)
    return row


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--data', choices=sorted(CONFIGS), required=True)
    p.add_argument('--rows', nargs='+', choices=sorted(ROWS),
                   default=list(ROWS), metavar='ROW')
    p.add_argument('--epochs', type=int, default=None,
                   help="override the configs' number of epochs")
    p.add_argument('--data-root', default=None,
                   help="override the configs' data root")
    p.add_argument('--seed', type=int, default=None,
                   help="mmengine's random seed for every row (default: "
                   'drawn per run)')
    p.add_argument('--jobs', type=int, default=1)
    p.add_argument('--work-dir', default='work_dirs/ablations')
    p.add_argument('--list', action='store_true', help='print the rows')
    args = p.parse_args(argv)
    if args.list:
        print('\n'.join(ROWS))
        return
    sys.path.insert(0, ROOT)
    from adder_det.engine import setup_mmdet
    setup_mmdet()
    with ThreadPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(lambda n: run_row(args.data, n, args),
                             args.rows))
    out = osp.join(args.work_dir, args.data, 'results.json')
    if osp.isfile(out):  # keep the rows of earlier invocations
        recipe, rerun = recipe_id(args.data, args.epochs), {
            r['row'] for r in rows}
        earlier = json.load(open(out))
        kept = [r for r in earlier
                if r.get('recipe') == recipe and r['row'] not in rerun]
        dropped = [r['row'] for r in earlier if r.get('recipe') != recipe]
        if dropped:
            print(f'{out}: dropping rows of another recipe: {dropped}')
        rows = kept + rows
    with open(out, 'w') as f:
        json.dump(rows, f, indent=1)
    print(f'\n| row | mAP@0.5 | mAP | last-stage zeros | seed | minutes |\n'
          f'|---|---|---|---|---|---|')
    for r in rows:
        z = r.get('last_stage_zero_fraction')
        print(f"| {r['row']} | {r['map50']} | {r.get('map', '')} | "
              f"{'' if z is None else f'{z:.2f}'} | {r.get('seed')} | "
              f"{r['minutes']:.1f} |")


if __name__ == '__main__':
    main()
