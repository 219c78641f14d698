#!/usr/bin/env python
"""Does AWN make an adder classifier more robust? A small FGSM study.

    python tools/awn_robustness.py [--epochs 30] [--seeds 0 1 2]
        [--eps 0.02 0.05 0.1 0.2] [--json out.json]

Data: scikit-learn's bundled digits (1797 8x8 grey images, 10 classes; ships
with the package, nothing downloaded), pixels scaled to [0, 1], a fixed
stratified 80/20 split. Model: a conv stem, two adder residual stages built
from mmdet's ``BasicBlock`` with ``conv_cfg=dict(type='Adder', ...)`` (batch
norm after every adder layer, adder 1x1 shortcut), global pooling and a
linear classifier; the first and last layers stay multiplicative as in the
AdderNet papers. Trained with SGD (momentum 0.9, cosine decay, eta scaling,
hard-tanh input gradient) without and with AWN (per filter, gain 1).

Attack: FGSM, x' = clip(x + eps * sign(grad_x loss), 0, 1), white box. The
attack uses the true input derivative of the adder layers (the 'sign'
rule), not the clipped hard-tanh surrogate used for training, which would
understate the attack. Accuracy is reported per seed and as mean/std.
"""
import argparse
import json
import math
import os.path as osp
import sys
import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))


def load_digits(seed: int = 0):
    """(x_train, y_train, x_test, y_test): float tensors in [0, 1]."""
    from sklearn.datasets import load_digits as sk_digits
    from sklearn.model_selection import train_test_split
    d = sk_digits()
    x = torch.tensor(d.images / 16.0, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(d.target, dtype=torch.long)
    idx_tr, idx_te = train_test_split(np.arange(len(y)), test_size=0.2,
                                      random_state=seed, stratify=d.target)
    return x[idx_tr], y[idx_tr], x[idx_te], y[idx_te]


def build_classifier(weight_norm=None, width: int = 16,
                     input_grad: str = 'hardtanh') -> nn.Module:
    import adder_det.models  # noqa: F401  (registers the 'Adder' conv type)
    from mmcv.cnn import build_conv_layer
    from mmdet.models.backbones.resnet import BasicBlock
    adder = dict(type='Adder', input_grad=input_grad, eta=0.2,
                 weight_norm=weight_norm)
    bn = dict(type='BN')

    def stage(cin, cout, stride):
        down = None
        if stride != 1 or cin != cout:
            down = nn.Sequential(
                build_conv_layer(adder, cin, cout, 1, stride=stride),
                nn.BatchNorm2d(cout))
        return nn.Sequential(
            BasicBlock(cin, cout, stride, downsample=down, conv_cfg=adder,
                       norm_cfg=bn),
            BasicBlock(cout, cout, conv_cfg=adder, norm_cfg=bn))

    net = nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
        nn.ReLU(inplace=True),
        stage(width, width, 1), stage(width, 2 * width, 2),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, 10))
    return net


def set_input_grad(net: nn.Module, rule: str):
    from adder_det.ops import Adder2d
    for m in net.modules():
        if isinstance(m, Adder2d):
            m.input_grad = rule


def train(net, x, y, epochs: int, seed: int, lr: float = 0.1,
          batch_size: int = 64):
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9,
                          weight_decay=5e-4)
    steps = epochs * math.ceil(len(y) / batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    net.train()
    for _ in range(epochs):
        perm = torch.randperm(len(y), generator=g)
        for i in range(0, len(y), batch_size):
            b = perm[i:i + batch_size]
            opt.zero_grad()
            loss = F.cross_entropy(net(x[b]), y[b])
            if not torch.isfinite(loss):
                raise FloatingPointError(f'loss became {loss.item()}')
            loss.backward()
            opt.step()
            sched.step()
    return loss.item()


def accuracy(net, x, y) -> float:
    net.eval()
    with torch.no_grad():
        return (net(x).argmax(1) == y).float().mean().item()


def fgsm(net, x, y, eps: float) -> torch.Tensor:
    net.eval()
    set_input_grad(net, 'sign')  # the true derivative of -|x - w|
    x = x.clone().requires_grad_()
    F.cross_entropy(net(x), y).backward()
    set_input_grad(net, 'hardtanh')
    return (x + eps * x.grad.sign()).clamp(0, 1).detach()


def run(epochs=30, seeds=(0, 1, 2), eps=(0.02, 0.05, 0.1, 0.2), width=16,
        log=print) -> dict:
    x_tr, y_tr, x_te, y_te = load_digits()
    variants = {'plain': None,
                'awn': dict(type='AWN', per='filter', gain=1.0)}
    results = {}
    for name, wn in variants.items():
        rows = []
        for seed in seeds:
            torch.manual_seed(seed)
            t0 = time.time()
            net = build_classifier(wn, width)
            final_loss = train(net, x_tr, y_tr, epochs, seed)
            row = dict(seed=seed, train_loss=final_loss,
                       clean=accuracy(net, x_te, y_te))
            for e in eps:
                row[f'fgsm_{e:g}'] = accuracy(net, fgsm(net, x_te, y_te, e),
                                              y_te)
            row['seconds'] = time.time() - t0
            log(f'{name:5s} seed {seed}: ' + '  '.join(
                f'{k} {v:.3f}' for k, v in row.items() if k != 'seed'))
            rows.append(row)
        keys = [k for k in rows[0] if k not in ('seed', 'seconds')]
        results[name] = dict(
            runs=rows,
            mean={k: float(np.mean([r[k] for r in rows])) for k in keys},
            std={k: float(np.std([r[k] for r in rows])) for k in keys})
    return results


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--epochs', type=int, default=30)
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    p.add_argument('--eps', type=float, nargs='+',
                   default=[0.02, 0.05, 0.1, 0.2])
    p.add_argument('--width', type=int, default=16)
    p.add_argument('--json', help='also write the results as JSON')
    args = p.parse_args(argv)
    results = run(args.epochs, args.seeds, args.eps, args.width)
    keys = list(results['plain']['mean'])
    print('\naccuracy on the 360 test digits, mean (std) over seeds '
          f'{args.seeds}, {args.epochs} epochs')
    print(f"{'':6s}" + ''.join(f'{k:>16s}' for k in keys))
    for name, r in results.items():
        print(f'{name:6s}' + ''.join(
            f"{r['mean'][k]:>9.3f} ({r['std'][k]:.3f})" for k in keys))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(results, f, indent=1)


if __name__ == '__main__':
    main()
