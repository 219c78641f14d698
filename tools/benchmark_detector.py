#!/usr/bin/env python
"""Time a whole detector training iteration: an adder model against conv.

    python tools/benchmark_detector.py CONFIG [--conv-config CONFIG2]
        [--device cuda] [--size 800 1333] [--batch 2] [--repeat 5] [--json]

An iteration is what mmengine's Runner runs each training step:
``model.train_step`` (data preprocessing, forward, losses, backward and the
optimizer step of the config's ``optim_wrapper``) on one synthetic batch of
--batch images of --size H W (mmdet.testing's demo inputs: random pixels,
--boxes random boxes an image). Both models are built from their configs
with random weights (``init_weights``; no checkpoint is loaded, so none is
needed), and the step is taken with learning rate 0: every timed iteration
then sees the same weights (a random model fitted to noise may diverge, and
non-finite values would change the kernels' paths), while the optimizer
still does all of its arithmetic.

The conv model is --conv-config, else CONFIG's own conv twin: its model
with every adder ``conv_cfg`` replaced by a convolution, AdderResNet by
mmdet's ResNet and AdderFCOSHead by mmdet's FCOSHead with the same
arguments (one tower norm for all levels instead of one a level: the same
arithmetic). Same architecture, norms and losses; convolutions instead of
adder layers. The number of adder layers of each model is printed.

Times are medians over --repeat rounds, each running both models one after
the other (so a slow spell of a shared machine hits both); TF32 is off on
CUDA (issue 5's target is against FP32 convolution); cuDNN's autotuner
follows the config's ``env_cfg.cudnn_benchmark`` (mmdet's default: off).
Peak memory, on CUDA only: the allocator's peak during one iteration above
what was allocated before it.
"""
import argparse
import copy
import json
import os
import sys

import torch

TOOLS = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(TOOLS))
sys.path.insert(0, TOOLS)
from benchmark_op import PeakMemory, timeit_interleaved  # noqa: E402

# adder module -> the mmdet module it extends, and the arguments only the
# adder module takes.
CONV_MODULES = {'AdderResNet': ('ResNet', ()),
                'AdderFCOSHead': ('FCOSHead', ('norm_per_level',))}


def conv_twin(model_cfg):
    """A copy of a model config with convolutions for its adder layers."""
    from adder_det.models.layers import is_adder_cfg
    cfg = copy.deepcopy(model_cfg)

    def walk(node):
        if isinstance(node, dict):
            for key, value in list(node.items()):
                if key == 'conv_cfg' and is_adder_cfg(value):
                    node[key] = None
                else:
                    walk(value)
            if node.get('type') in CONV_MODULES:
                if node['type'] == 'AdderResNet':
                    node.setdefault('norm_eval', False)  # AdderResNet's
                node['type'], adder_only = CONV_MODULES[node['type']]
                for key in adder_only:
                    node.pop(key, None)
        elif isinstance(node, (list, tuple)):
            for value in node:
                walk(value)
    walk(cfg)
    return cfg


def load(path):
    from adder_det.engine import load_config
    try:
        cfg = load_config(path, tool='benchmark_detector')
    except FileNotFoundError as e:
        raise SystemExit(str(e))
    if cfg.model.get('backbone', {}).get('init_cfg'):
        cfg.model.backbone.init_cfg = None  # random weights, see the doc
    return cfg


def build(cfg, model_cfg, device):
    """(model, optim_wrapper) of a config, on device, learning rate 0."""
    from mmengine.optim import build_optim_wrapper
    from mmdet.registry import MODELS
    torch.manual_seed(0)
    model = MODELS.build(model_cfg)
    model.init_weights()
    model.to(device).train()
    optim_cfg = copy.deepcopy(cfg.optim_wrapper)
    optim_cfg.optimizer.lr = 0.0
    return model, build_optim_wrapper(model, optim_cfg)


def count_adder_layers(model):
    from adder_det.ops import Adder2d
    return sum(isinstance(m, Adder2d) for m in model.modules())


def demo_batch(batch, size, boxes, num_classes):
    from mmdet.testing import demo_mm_inputs
    torch.manual_seed(0)
    return demo_mm_inputs(batch, [[3, *size]] * batch,
                          num_items=[boxes] * batch,
                          num_classes=max(num_classes, 2))


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('config', help='the adder detector config')
    p.add_argument('--conv-config', default=None,
                   help="the conv model's config (default: CONFIG's conv "
                   'twin)')
    p.add_argument('--device', default='cpu')
    p.add_argument('--size', type=int, nargs=2, default=[800, 1333],
                   metavar=('H', 'W'), help='image size (default 800 1333)')
    p.add_argument('--batch', type=int, default=2)
    p.add_argument('--boxes', type=int, default=5,
                   help='ground-truth boxes an image (default 5)')
    p.add_argument('--repeat', type=int, default=5)
    p.add_argument('--warmup', type=int, default=2)
    p.add_argument('--threads', type=int, default=None)
    p.add_argument('--json', action='store_true', help='print JSON only')
    args = p.parse_args()
    for name in ('batch', 'repeat', 'boxes'):
        if getattr(args, name) < 1:
            raise SystemExit(f'benchmark_detector: --{name} must be >= 1')
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise SystemExit('benchmark_detector: --device cuda, but this torch '
                         'sees no CUDA device')
    from mmengine.logging import MMLogger
    from adder_det.engine import setup_mmdet
    # The current logger: keeps init_weights' per-parameter report and the
    # optimizer's notes on frozen parameters off stdout (--json).
    MMLogger.get_instance('benchmark_detector', log_level='ERROR')
    setup_mmdet()
    adder_cfg = load(args.config)
    if args.conv_config:
        conv_cfg = load(args.conv_config)
        conv_model_cfg = conv_cfg.model
    else:
        conv_cfg, conv_model_cfg = adder_cfg, conv_twin(adder_cfg.model)
    cudnn_benchmark = adder_cfg.get('env_cfg', {}).get('cudnn_benchmark',
                                                       False)
    info = dict(device=str(device), torch=torch.__version__,
                threads=torch.get_num_threads(), batch=args.batch,
                size=list(args.size), boxes=args.boxes, config=args.config,
                conv=args.conv_config or 'twin')
    if device.type == 'cuda':
        info['gpu'] = torch.cuda.get_device_name(device)
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.benchmark = bool(cudnn_benchmark)
        info['cudnn_benchmark'] = bool(cudnn_benchmark)
    steps, result = [], dict(info=info)
    for key, cfg, model_cfg in (('conv', conv_cfg, conv_model_cfg),
                                ('adder', adder_cfg, adder_cfg.model)):
        model, optim = build(cfg, model_cfg, device)
        data = demo_batch(args.batch, args.size, args.boxes,
                          model.bbox_head.num_classes)

        def step(model=model, optim=optim, data=data, key=key):
            losses = model.train_step(data, optim)
            bad = [k for k, v in losses.items() if not torch.isfinite(v)]
            if bad:
                raise RuntimeError(f'benchmark_detector: {key} model: '
                                   f'non-finite {bad}')
        row = dict(adder_layers=count_adder_layers(model))
        if key == 'adder' and row['adder_layers'] == 0:
            raise SystemExit(f'benchmark_detector: {args.config} has no '
                             'adder layer')
        step()
        if device.type == 'cuda':
            with PeakMemory(device) as mem:
                step()
            row['peak_mb'] = mem.bytes / 2**20
        result[key] = row
        steps.append(step)
    times = timeit_interleaved(steps, device, args.repeat, args.warmup)
    for key, t in zip(('conv', 'adder'), times):
        result[key]['iter_ms'] = t * 1e3
    result['adder_vs_conv'] = times[1] / times[0]
    if args.json:
        print(json.dumps(result))
        return
    print(' '.join(f'{k}={v}' for k, v in info.items()))
    print(f"{'model':6s} {'adder layers':>12s} {'iter ms':>9s} "
          f"{'peak MB':>8s}")
    for key in ('conv', 'adder'):
        r = result[key]
        peak = f"{r['peak_mb']:8.1f}" if 'peak_mb' in r else f"{'-':>8s}"
        print(f"{key:6s} {r['adder_layers']:12d} {r['iter_ms']:9.1f} {peak}")
    print(f"training iteration, adder/conv: {result['adder_vs_conv']:.2f}")


if __name__ == '__main__':
    main()
