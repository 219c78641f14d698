#!/usr/bin/env python
"""Count a detector's multiplications and additions and estimate its energy.

    python tools/energy.py CONFIG [--shape H W] [--precision fp32|int8] [--json]

Builds the model of CONFIG (no checkpoint needed: counts depend on shapes
only), runs one forward of a (1, 3, H, W) input (default 800x1333, the
paper's 1333x800) on the 'meta' device, and counts with forward hooks:

* nn.Conv2d / nn.Linear: one multiply and one add per MAC, plus one add per
  output element for a bias;
* Adder2d: two adds per MAC (a subtraction and the accumulation of the
  absolute value), plus one add per output element for a bias;
* norm layers (BN, GN, LN, IN): one multiply and one add per element (the
  affine transform BN folds into at inference).

Every call of a module is counted, so the FCOS head's convs count once per
pyramid level. Element-wise additions of residual and FPN paths, ReLU,
pooling and upsampling are not counted (no multiplications, and under 0.1%
of the adds). Energy follows PAPERS.md: 3.7 pJ per multiply and 0.9 pJ per
add in 32-bit float (45 nm), 0.2 pJ and 0.03 pJ in INT8. Parts: the model's
top-level children (backbone, neck, bbox_head).
"""
import argparse
import json
import os
import sys
from collections import defaultdict

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.instancenorm import _InstanceNorm

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

#: pJ per operation, (multiply, add).
ENERGY_PJ = {'fp32': (3.7, 0.9), 'int8': (0.2, 0.03)}
NORMS = (_BatchNorm, nn.GroupNorm, nn.LayerNorm, _InstanceNorm)


def count_ops(model: nn.Module, inputs: torch.Tensor, forward=None):
    """Return {part: [muls, adds]} for one forward of ``inputs``."""
    from adder_det.ops import Adder2d
    counts = defaultdict(lambda: [0, 0])
    handles = []

    def hook_for(part):
        def hook(module, args, output):
            c = counts[part]
            out = output.numel()
            if isinstance(module, Adder2d):
                k = module.in_channels // module.groups * \
                    module.kernel_size[0] * module.kernel_size[1]
                c[1] += 2 * out * k + (out if module.bias is not None else 0)
            elif isinstance(module, (nn.Conv2d, nn.Linear)):
                if isinstance(module, nn.Conv2d):
                    k = module.in_channels // module.groups * \
                        module.kernel_size[0] * module.kernel_size[1]
                else:
                    k = module.in_features
                c[0] += out * k
                c[1] += out * k + (out if module.bias is not None else 0)
            elif isinstance(module, NORMS):
                c[0] += out
                c[1] += out
        return hook

    for part, child in model.named_children():
        for m in child.modules():
            if isinstance(m, (Adder2d, nn.Conv2d, nn.Linear) + NORMS):
                handles.append(m.register_forward_hook(hook_for(part)))
    try:
        with torch.no_grad():
            (forward or model)(inputs)
    finally:
        for h in handles:
            h.remove()
    return dict(counts)


def report(counts, precision):
    pj_mul, pj_add = ENERGY_PJ[precision]

    def row(muls, adds):
        return dict(mul_g=muls / 1e9, add_g=adds / 1e9,
                    energy_mj=(muls * pj_mul + adds * pj_add) / 1e9)

    parts = {p: row(*c) for p, c in counts.items()}
    total = row(sum(c[0] for c in counts.values()),
                sum(c[1] for c in counts.values()))
    return dict(total, parts=parts)


def build_detector(config):
    from mmengine.config import Config
    from mmengine.utils import import_modules_from_strings
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    register_all_modules()
    if not os.path.isfile(config):
        raise FileNotFoundError(f'energy: no config file {config}')
    cfg = Config.fromfile(config)
    if cfg.get('custom_imports'):
        import_modules_from_strings(**cfg.custom_imports)
    cfg.model.backbone.init_cfg = None  # shapes only: no checkpoint
    return MODELS.build(cfg.model)


def detector_energy(config, shape=(800, 1333), precision='fp32'):
    model = build_detector(config).eval().to('meta')
    x = torch.empty(1, 3, *shape, device='meta')
    counts = count_ops(model, x, forward=lambda t: model._forward(t))
    result = report(counts, precision)
    result.update(config=config, shape=list(shape), precision=precision)
    return result


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('config')
    p.add_argument('--shape', type=int, nargs=2, default=[800, 1333],
                   metavar=('H', 'W'), help='input size (default 800 1333)')
    p.add_argument('--precision', choices=sorted(ENERGY_PJ), default='fp32')
    p.add_argument('--json', action='store_true')
    args = p.parse_args()
    r = detector_energy(args.config, tuple(args.shape), args.precision)
    if args.json:
        print(json.dumps(r))
        return
    print(f"{args.config} at {args.shape[0]}x{args.shape[1]}, "
          f"{args.precision}")
    print(f"{'part':12s} {'#Mul (G)':>10s} {'#Add (G)':>10s} "
          f"{'energy (mJ)':>12s}")
    for name, v in list(r['parts'].items()) + [('total', r)]:
        print(f"{name:12s} {v['mul_g']:10.1f} {v['add_g']:10.1f} "
              f"{v['energy_mj']:12.1f}")


if __name__ == '__main__':
    main()
