#!/usr/bin/env python
"""Feature statistics of a trained detector on its test split.

    python tools/feature_stats.py CONFIG CHECKPOINT [--max-images N]
        [--out stats.json] [--cfg-options k=v ...]

Prints, over the images of the config's ``test_dataloader``:
* the fraction of exactly-zero activations after each backbone stage and in
  each neck output level (the detection paper reports over 92% zeros in an
  adder ResNet-50's last stage against 63% for a conv one, its reason for
  the neck shortcuts);
* the mean and variance of every adder (and conv) layer's output in the
  backbone and neck, i.e. before its batch norm (adder outputs are all
  negative and their variance grows with fan-in: what AWN steadies).
"""
import argparse
import json
import os.path as osp
import sys
from collections import OrderedDict

import torch

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))


class Moments:
    """Running count / zero count / sum / sum of squares, in float64."""

    def __init__(self):
        self.n = self.zeros = 0
        self.s = self.s2 = 0.0

    def add(self, t: torch.Tensor):
        t = t.detach().double()
        self.n += t.numel()
        self.zeros += int((t == 0).sum())
        self.s += float(t.sum())
        self.s2 += float(t.square().sum())

    def summary(self) -> dict:
        mean = self.s / max(self.n, 1)
        return dict(zero_fraction=self.zeros / max(self.n, 1), mean=mean,
                    var=max(self.s2 / max(self.n, 1) - mean * mean, 0.0),
                    count=self.n)


def collect(model, loader, max_images=None) -> dict:
    """Run backbone and neck over ``loader``; return the statistics."""
    from torch import nn

    from adder_det.ops import Adder2d
    stages, levels, layers = OrderedDict(), OrderedDict(), OrderedDict()
    handles = []

    def record(store, name):
        def hook(module, args, output):
            store.setdefault(name, Moments()).add(output)
        return hook

    backbone = model.backbone
    for i, name in enumerate(getattr(backbone, 'res_layers', [])):
        handles.append(getattr(backbone, name).register_forward_hook(
            record(stages, f'stage{i + 1}')))
    for part in ('backbone', 'neck'):
        for name, m in getattr(model, part).named_modules():
            if isinstance(m, (Adder2d, nn.Conv2d)):
                kind = 'adder' if isinstance(m, Adder2d) else 'conv'
                handles.append(m.register_forward_hook(
                    record(layers, f'{part}.{name} ({kind})')))
    seen = 0
    with torch.no_grad():
        for batch in loader:
            data = model.data_preprocessor(batch, False)
            feats = model.extract_feat(data['inputs'])
            for i, f in enumerate(feats):
                levels.setdefault(f'P{i}', Moments()).add(f)
            seen += data['inputs'].shape[0]
            if max_images is not None and seen >= max_images:
                break
    for h in handles:
        h.remove()
    out = dict(images=seen)
    for key, store in (('backbone_stages', stages), ('neck_levels', levels),
                       ('layers_before_bn', layers)):
        out[key] = {k: v.summary() for k, v in store.items()}
    return out


def print_stats(stats: dict):
    print(f"{stats['images']} images")
    for key in ('backbone_stages', 'neck_levels'):
        print(f'\n{key}: fraction of exact zeros')
        for name, s in stats[key].items():
            print(f"  {name:8s} {s['zero_fraction']:.3f}")
    print('\nlayer outputs before batch norm: mean, variance')
    for name, s in stats['layers_before_bn'].items():
        print(f"  {name:48s} {s['mean']:12.4g} {s['var']:12.4g}")


def main(argv=None):
    from mmengine.config import DictAction
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('config')
    p.add_argument('checkpoint')
    p.add_argument('--max-images', type=int, default=None,
                   help='stop after this many images (default: all)')
    p.add_argument('--out', help='also write the statistics as JSON')
    p.add_argument('--cfg-options', nargs='+', action=DictAction)
    args = p.parse_args(argv)
    from adder_det.engine import load_config, setup_mmdet
    setup_mmdet()
    from mmdet.apis import init_detector
    from mmengine.runner import Runner
    if not osp.isfile(args.checkpoint):
        raise FileNotFoundError(f'feature_stats: no checkpoint '
                                f'{args.checkpoint}')
    cfg = load_config(args.config, args.cfg_options, tool='feature_stats')
    model = init_detector(cfg, args.checkpoint, device='cpu')
    loader = Runner.build_dataloader(cfg.test_dataloader)
    stats = collect(model, loader, args.max_images)
    print_stats(stats)
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(stats, f, indent=1)


if __name__ == '__main__':
    main()
