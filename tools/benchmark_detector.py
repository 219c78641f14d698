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

Where mmdet/mmcv are not installed (the lent GPU machine), time the
networks instead of the iteration: here, with mmdet,

    python tools/benchmark_detector.py CONFIG [--conv-config C] \
        --save-graphs FILE

traces both models' backbone, neck and head (image in, head outputs out)
into torch.fx graphs of torch modules and Adder2d layers and saves them
without weights (meta tensors, a few hundred kB); there, with torch and
adder_det.ops only,

    python tools/benchmark_detector.py --graphs FILE --device cuda

gives them fresh random weights, each module in the train/eval mode
the detector had it in (frozen BN stays frozen), and times forward and
backward of a loss that sums the outputs' means. Without the real loss,
target assignment and optimizer step, which cost both models the same,
the network's ratio is an upper bound on the iteration's.
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


def build(cfg, model_cfg, device, amp=False):
    """(model, optim_wrapper) of a config, on device, learning rate 0;
    amp: mmengine's AmpOptimWrapper (what tools/train.py --amp sets)."""
    from mmengine.optim import build_optim_wrapper
    from mmdet.registry import MODELS
    torch.manual_seed(0)
    model = MODELS.build(model_cfg)
    model.init_weights()
    model.to(device).train()
    optim_cfg = copy.deepcopy(cfg.optim_wrapper)
    optim_cfg.optimizer.lr = 0.0
    if amp:
        optim_cfg.type, optim_cfg.loss_scale = 'AmpOptimWrapper', 'dynamic'
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


class DetectorNetwork(torch.nn.Module):
    """A detector's backbone, neck and head as one module (image in, the
    head's outputs as one flat tuple out): what --save-graphs traces."""

    def __init__(self, model):
        super().__init__()
        self.backbone, self.neck = model.backbone, model.neck
        self.bbox_head = model.bbox_head

    def forward(self, img):
        outs = self.bbox_head(self.neck(self.backbone(img)))
        return tuple(t for per_level in outs for t in per_level)


def trace_network(model):
    """torch.fx graph of DetectorNetwork(model): torch modules and Adder2d
    layers only (mmdet's and mmcv's modules are traced through, so loading
    it needs neither)."""
    import torch.fx
    from adder_det.ops import Adder2d

    class Tracer(torch.fx.Tracer):
        def is_leaf_module(self, m, name):
            return isinstance(m, Adder2d) or super().is_leaf_module(m, name)

    tracer = Tracer()
    graph = tracer.trace(DetectorNetwork(model))
    gm = torch.fx.GraphModule(tracer.root, graph)

    def portable(module_name):
        return (module_name or '').startswith('adder_det.ops') or (
            module_name or '').split('.')[0] in ('torch', '_operator',
                                                 'builtins', 'math')
    used = {type(m) for m in gm.modules()} | {
        n.target for n in graph.nodes if n.op == 'call_function'}
    foreign = sorted(f'{getattr(t, "__module__", None)}.{t.__name__}'
                     for t in used if not portable(getattr(t, '__module__',
                                                           None)))
    if foreign:
        raise SystemExit('benchmark_detector: the traced network still '
                         f'needs {foreign}')
    return gm


def save_graphs(path, models, info):
    """Trace each of models ({key: detector}) and save the graphs with
    meta tensors for weights."""
    graphs = {}
    for key, model in models.items():
        # A copy: the graph shares its modules with the model. The modules
        # keep their train/eval modes (containers, new, compute nothing).
        graphs[key] = copy.deepcopy(trace_network(model)).to('meta')
    torch.save(dict(format=1, info=info, graphs=graphs), path)


def load_graphs(path, device):
    """The graphs of save_graphs on device, with fresh random weights
    (seed 0: each module's reset_parameters, 1 for any other parameter),
    each module in the train/eval mode it had; and the saved info."""
    if not os.path.isfile(path):
        raise SystemExit(f'benchmark_detector: no graphs file {path}')
    # Our own file of torch.fx graphs: not loadable with weights_only.
    payload = torch.load(path, map_location='meta', weights_only=False)
    if payload.get('format') != 1:
        raise SystemExit(f'benchmark_detector: {path} is not a graphs file '
                         'of this version (--save-graphs)')
    torch.manual_seed(0)
    graphs = {}
    for key, gm in payload['graphs'].items():
        gm = gm.to_empty(device=device)
        with torch.no_grad():
            for p in gm.parameters():
                p.fill_(1.0)
            for m in gm.modules():
                if m is not gm and hasattr(m, 'reset_parameters'):
                    m.reset_parameters()
        graphs[key] = gm
    return graphs, payload['info']


def graph_step(gm, img, amp_dtype=None):
    """One forward and backward of a traced network (loss: the sum of its
    outputs' means), gradients reset first as an optimizer's zero_grad;
    the forward under autocast to amp_dtype if given."""
    def step():
        gm.zero_grad(set_to_none=True)
        with torch.autocast(img.device.type, dtype=amp_dtype,
                            enabled=amp_dtype is not None):
            outs = gm(img)
            loss = sum(o.float().mean() for o in outs)
        if not torch.isfinite(loss):
            raise RuntimeError('benchmark_detector: non-finite network '
                               'output')
        loss.backward()
    return step


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('config', nargs='?',
                   help='the adder detector config (not with --graphs)')
    p.add_argument('--save-graphs', metavar='FILE',
                   help='trace both networks into FILE and stop')
    p.add_argument('--graphs', metavar='FILE',
                   help='time the networks of a --save-graphs FILE (needs '
                   'no mmdet)')
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
    p.add_argument('--amp', action='store_true',
                   help="mixed precision: the iteration with mmengine's "
                   'AmpOptimWrapper (CUDA only), the --graphs networks under '
                   'torch.autocast (float16 on CUDA, bfloat16 on CPU)')
    p.add_argument('--sparse-forward', choices=['auto', 'always', 'never'],
                   help="the CPU forward's skipping of a ReLU output's zeros "
                   '(default auto)')
    p.add_argument('--json', action='store_true', help='print JSON only')
    args = p.parse_args()
    for name in ('batch', 'repeat', 'boxes'):
        if getattr(args, name) < 1:
            raise SystemExit(f'benchmark_detector: --{name} must be >= 1')
    if (args.config is None) == (args.graphs is None):
        raise SystemExit('benchmark_detector: give a CONFIG or --graphs FILE')
    if args.graphs and (args.conv_config or args.save_graphs):
        raise SystemExit('benchmark_detector: --graphs takes no config '
                         'options')
    if args.save_graphs and (args.amp or args.device != 'cpu'):
        raise SystemExit('benchmark_detector: --save-graphs traces on the '
                         'CPU and times nothing; give --amp and --device '
                         'to --graphs FILE')
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise SystemExit('benchmark_detector: --device cuda, but this torch '
                         'sees no CUDA device')
    if args.sparse_forward:
        if device.type != 'cpu' or cpu_kernels() is None:
            raise SystemExit('benchmark_detector: --sparse-forward is for the '
                             'compiled CPU kernels (--device cpu, extension '
                             'built)')
        cpu_kernels().set_sparse_forward_mode(args.sparse_forward)
    if args.graphs:
        return bench_graphs(args, device)
    if args.amp and device.type != 'cuda':
        raise SystemExit("benchmark_detector: --amp needs --device cuda "
                         "(mmengine's AmpOptimWrapper); --graphs --amp runs "
                         'on the CPU too')
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
    cudnn_benchmark = bool(adder_cfg.get('env_cfg', {}).get(
        'cudnn_benchmark', False))
    if args.save_graphs:
        models = {key: build(cfg, model_cfg, 'cpu')[0] for key, cfg, model_cfg
                  in (('conv', conv_cfg, conv_model_cfg),
                      ('adder', adder_cfg, adder_cfg.model))}
        if count_adder_layers(models['adder']) == 0:
            raise SystemExit(f'benchmark_detector: {args.config} has no '
                             'adder layer')
        save_graphs(args.save_graphs, models,
                    dict(config=args.config, conv=args.conv_config or 'twin',
                         cudnn_benchmark=cudnn_benchmark,
                         saved_with=torch.__version__))
        print(f'saved the networks of {args.config} and its conv model '
              f'({args.conv_config or "twin"}) to {args.save_graphs}')
        return
    info = run_info(args, device, cudnn_benchmark, boxes=args.boxes,
                    config=args.config, conv=args.conv_config or 'twin',
                    amp='float16' if args.amp else False)
    steps, result = [], dict(info=info)
    for key, cfg, model_cfg in (('conv', conv_cfg, conv_model_cfg),
                                ('adder', adder_cfg, adder_cfg.model)):
        model, optim = build(cfg, model_cfg, device, args.amp)
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
        result[key] = row
        steps.append(step)
    report(args, device, result, steps, 'training iteration' +
           (' (AmpOptimWrapper)' if args.amp else ''))


def cpu_kernels():
    """The compiled extension where the ops run on it, else None."""
    from adder_det.ops import backend
    if backend() != 'compiled':
        return None
    from adder_det.ops._backend import load_extension
    return load_extension()


def run_info(args, device, autotune, **extra):
    """What a timing run prints about itself; on CUDA it also turns TF32
    off (the target is against FP32 convolution) and sets cuDNN's
    autotuner as the config has it."""
    info = dict(device=str(device), torch=torch.__version__,
                threads=torch.get_num_threads(), batch=args.batch,
                size=list(args.size), **extra)
    if device.type == 'cpu' and cpu_kernels() is not None:
        info['sparse_forward'] = cpu_kernels().sparse_forward_mode()
    if device.type == 'cuda':
        info['gpu'] = torch.cuda.get_device_name(device)
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.benchmark = autotune
        info['cudnn_benchmark'] = autotune
    return info


def bench_graphs(args, device):
    graphs, saved = load_graphs(args.graphs, device)
    amp_dtype = None
    if args.amp:
        amp_dtype = torch.float16 if device.type == 'cuda' else torch.bfloat16
    info = run_info(args, device, saved['cudnn_benchmark'],
                    graphs=args.graphs,
                    amp=str(amp_dtype)[6:] if amp_dtype else False, **saved)
    torch.manual_seed(0)
    img = torch.randn(args.batch, 3, *args.size, device=device)
    result, steps = dict(info=info), []
    for key in ('conv', 'adder'):
        result[key] = dict(adder_layers=count_adder_layers(graphs[key]))
        steps.append(graph_step(graphs[key], img, amp_dtype))
    report(args, device, result, steps,
           'network forward+backward (no loss, assignment or optimizer' +
           (f', autocast {info["amp"]})' if amp_dtype else ')'))


def report(args, device, result, steps, what):
    """Peak memory (CUDA) and interleaved times of the conv and adder
    steps, printed as a table or JSON."""
    for key, step in zip(('conv', 'adder'), steps):
        step()
        if device.type == 'cuda':
            with PeakMemory(device) as mem:
                step()
            result[key]['peak_mb'] = mem.bytes / 2**20
    times = timeit_interleaved(steps, device, args.repeat, args.warmup)
    for key, t in zip(('conv', 'adder'), times):
        result[key]['iter_ms'] = t * 1e3
    result['adder_vs_conv'] = times[1] / times[0]
    result['what'] = what
    if args.json:
        print(json.dumps(result))
        return
    print(' '.join(f'{k}={v}' for k, v in result['info'].items()))
    print(f"{'model':6s} {'adder layers':>12s} {'iter ms':>9s} "
          f"{'peak MB':>8s}")
    for key in ('conv', 'adder'):
        r = result[key]
        peak = f"{r['peak_mb']:8.1f}" if 'peak_mb' in r else f"{'-':>8s}"
        print(f"{key:6s} {r['adder_layers']:12d} {r['iter_ms']:9.1f} {peak}")
    print(f"{what}, adder/conv: {result['adder_vs_conv']:.2f}")


if __name__ == '__main__':
    main()
