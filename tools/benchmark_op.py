#!/usr/bin/env python
"""Benchmark adder2d against F.conv2d and the official-style unfold code.

For the 3x3 and 1x1 convolution shapes of a ResNet-50 and of the FCOS neck
and head (batch 2, 224x224 by default; --set picks), prints the time of
adder2d forward and forward+backward, of F.conv2d on the same shape, device
and threads, and of the official AdderNet-style unfold implementation
(which materializes a Cout x K x N*L tensor; skipped where that exceeds
--unfold-limit-gb), as ratios, the adder forward's MAC rate against the
device's measured ceiling (the MAC rate of a large float32 matrix product
in the same run, TF32 off: a conv MAC is one FMA, an adder MAC needs two
add-class instructions), plus peak extra memory of each forward+backward.
--network adds a whole AdderResNet-50 forward+backward against the conv
ResNet-50: mmdet's ResNet/AdderResNet where mmdet is installed, else the same
network from plain torch modules with adder_det.ops.Adder2d (torch only).
The layers' inputs are standard normal (--input randn, the default) or its
ReLU (--input relu: half zeros, what ResNet-50's adder layers see; the CPU
forward skips zeros, --sparse-forward never turns that off); the network's
layers see their real activations either way.

    python tools/benchmark_op.py --device cpu [--set all] [--network]
    python tools/benchmark_op.py --device cuda --json > bench.json

Times: medians over --repeat rounds, in each of which the conv and adder
calls being compared run one after the other (so that a slow spell of a
shared machine hits both sides of a ratio). The unfold reference likewise:
min(3, --repeat) rounds of one unfold call followed by --repeat adder
forwards, the median of the rounds' ratios.

Memory: on CUDA the peak of torch.cuda.max_memory_allocated above the
inputs; on CPU the peak growth of the process RSS (its high-water mark,
reset before each measured call through /proc/self/clear_refs; where that
is refused, the RSS sampled every ~0.2 ms: `cpu_peak_memory` in the
report says which), measured in a child process in which glibc maps every
block over 64 KiB (MALLOC_MMAP_THRESHOLD_) so that freed memory leaves the
RSS (timings are taken in the parent, with the allocator as users have
it).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from adder_det.ops import adder2d, backend  # noqa: E402
from adder_det.ops._backend import load_extension  # noqa: E402

# (name, cin, cout, kernel, stride, input size at 224) of ResNet-50's
# distinct 3x3 and 1x1 convs (torchvision/mmdet 'pytorch' style: the
# stride on each stage's first 3x3). conv1/conv2/conv3/down: a stage's first
# block; in: conv1 of its other blocks.
RESNET50_LAYERS = [
    ('s1.conv1 1x1', 64, 64, 1, 1, 56),
    ('s1.conv2 3x3', 64, 64, 3, 1, 56),
    ('s1.conv3 1x1', 64, 256, 1, 1, 56),
    ('s1.in 1x1', 256, 64, 1, 1, 56),
    ('s2.conv1 1x1', 256, 128, 1, 1, 56),
    ('s2.conv2 3x3/2', 128, 128, 3, 2, 56),
    ('s2.conv2 3x3', 128, 128, 3, 1, 28),
    ('s2.conv3 1x1', 128, 512, 1, 1, 28),
    ('s2.down 1x1/2', 256, 512, 1, 2, 56),
    ('s2.in 1x1', 512, 128, 1, 1, 28),
    ('s3.conv1 1x1', 512, 256, 1, 1, 28),
    ('s3.conv2 3x3/2', 256, 256, 3, 2, 28),
    ('s3.conv2 3x3', 256, 256, 3, 1, 14),
    ('s3.conv3 1x1', 256, 1024, 1, 1, 14),
    ('s3.down 1x1/2', 512, 1024, 1, 2, 28),
    ('s3.in 1x1', 1024, 256, 1, 1, 14),
    ('s4.conv1 1x1', 1024, 512, 1, 1, 14),
    ('s4.conv2 3x3/2', 512, 512, 3, 2, 14),
    ('s4.conv2 3x3', 512, 512, 3, 1, 7),
    ('s4.conv3 1x1', 512, 2048, 1, 1, 7),
    ('s4.down 1x1/2', 1024, 2048, 1, 2, 14),
    ('s4.in 1x1', 2048, 512, 1, 1, 7),
]


# FCOS R-50 neck (256 channels, levels at strides 8..128) and head convs:
# the distinct shapes of the Adder FCOS R-50 with R-PAFPN and adder head
# (its Adder2d layers hooked on a 224x224 forward, session 14); sizes at a
# 224 input like the list above (ceil at the small levels).
FCOS_LAYERS = [
    ('neck.lat3 1x1', 512, 256, 1, 1, 28),
    ('neck.lat4 1x1', 1024, 256, 1, 1, 14),
    ('neck.lat5 1x1', 2048, 256, 1, 1, 7),
    ('neck.fpn3 3x3', 256, 256, 3, 1, 28),
    ('neck.fpn4 3x3', 256, 256, 3, 1, 14),
    ('neck.fpn5 3x3', 256, 256, 3, 1, 7),
    ('neck.down3 3x3/2', 256, 256, 3, 2, 28),
    ('neck.down4 3x3/2', 256, 256, 3, 2, 14),
    ('neck.extra6 3x3/2', 256, 256, 3, 2, 7),
    ('neck.extra7 3x3/2', 256, 256, 3, 2, 4),
    ('head P3 3x3', 256, 256, 3, 1, 28),
    ('head P4 3x3', 256, 256, 3, 1, 14),
    ('head P5 3x3', 256, 256, 3, 1, 7),
    ('head P6 3x3', 256, 256, 3, 1, 4),
    ('head P7 3x3', 256, 256, 3, 1, 2),
]
# The main job's small Adder FCOS (quarter-width ResNet-18, 64-channel
# R-PAFPN): every distinct Adder2d shape (hooked on a 256x256 forward,
# session 14), sizes at that input (run with --size 256 --batch 8).
SMALL_LAYERS = [
    ('r18q.s1 3x3', 16, 16, 3, 1, 64),
    ('r18q.s2 3x3/2', 16, 32, 3, 2, 64),
    ('r18q.down2 1x1/2', 16, 32, 1, 2, 64),
    ('r18q.s2 3x3', 32, 32, 3, 1, 32),
    ('r18q.s3 3x3/2', 32, 64, 3, 2, 32),
    ('r18q.down3 1x1/2', 32, 64, 1, 2, 32),
    ('r18q.s3 3x3', 64, 64, 3, 1, 16),
    ('r18q.s4 3x3/2', 64, 128, 3, 2, 16),
    ('r18q.s4 3x3', 128, 128, 3, 1, 8),
    ('r18q.down4 1x1/2', 64, 128, 1, 2, 16),
    ('neck64.lat3 1x1', 32, 64, 1, 1, 32),
    ('neck64.lat4 1x1', 64, 64, 1, 1, 16),
    ('neck64.lat5 1x1', 128, 64, 1, 1, 8),
    ('neck64.fpn3 3x3', 64, 64, 3, 1, 32),
    ('neck64.down3 3x3/2', 64, 64, 3, 2, 32),
    ('neck64.fpn4 3x3', 64, 64, 3, 1, 16),
    ('neck64.down4 3x3/2', 64, 64, 3, 2, 16),
    ('neck64.fpn5 3x3', 64, 64, 3, 1, 8),
    ('neck64.extra6 3x3/2', 64, 64, 3, 2, 8),
    ('neck64.extra7 3x3/2', 64, 64, 3, 2, 4),
]
# name -> (input size the layer sizes are given at, layers)
LAYER_SETS = dict(resnet50=(224, RESNET50_LAYERS), fcos=(224, FCOS_LAYERS),
                  all=(224, RESNET50_LAYERS + FCOS_LAYERS),
                  small=(256, SMALL_LAYERS))


def scaled_size(layer_size, size, base):
    """A layer's map size at network input `size`, from its size at the
    set's `base` input (rounded up, at least 1)."""
    return max(1, -(-layer_size * size // base))


def mac_ceiling(device, repeat=3):
    """MAC/s of a large float32 matrix product (BLAS / cuBLAS, TF32 off)."""
    n = 2048 if device.type == 'cuda' else 1024
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    t = timeit(lambda: torch.mm(a, b), device, repeat)
    return n ** 3 / t


def plain_resnet50(conv):
    """ResNet-50 up to its last stage from plain torch modules, in the
    layout of mmdet's and torchvision's (stride on the 3x3, 1x1 projection
    shortcuts), every conv but the 7x7 stem built by conv(cin, cout, k,
    stride): the network benchmark where mmdet is not installed (the GPU
    machine). Returns a module whose output is the four stages' maps."""
    nn = torch.nn

    def unit(cin, cout, k, stride):
        return [conv(cin, cout, k, stride), nn.BatchNorm2d(cout)]

    class Bottleneck(nn.Module):
        def __init__(self, cin, mid, stride):
            super().__init__()
            self.body = nn.Sequential(
                *unit(cin, mid, 1, 1), nn.ReLU(inplace=True),
                *unit(mid, mid, 3, stride), nn.ReLU(inplace=True),
                *unit(mid, 4 * mid, 1, 1))
            self.shortcut = (nn.Sequential(*unit(cin, 4 * mid, 1, stride))
                             if stride != 1 or cin != 4 * mid else
                             nn.Identity())

        def forward(self, x):
            return torch.relu(self.body(x) + self.shortcut(x))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False),
                                      nn.BatchNorm2d(64), nn.ReLU(inplace=True),
                                      nn.MaxPool2d(3, 2, 1))
            stages, cin = [], 64
            for mid, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2),
                                        (512, 3, 2)):
                stages.append(nn.Sequential(*[
                    Bottleneck(cin if b == 0 else 4 * mid, mid,
                               stride if b == 0 else 1)
                    for b in range(blocks)]))
                cin = 4 * mid
            self.stages = nn.ModuleList(stages)

        def forward(self, x):
            x, outs = self.stem(x), []
            for stage in self.stages:
                x = stage(x)
                outs.append(x)
            return outs
    return Net()


def network_pair(impl, input_grad='sign'):
    """(conv ResNet-50, AdderResNet-50) builders for --network-impl."""
    if impl in ('auto', 'mmdet'):
        try:
            import adder_det.models  # noqa: F401
            from mmdet.registry import MODELS
            from mmdet.utils import register_all_modules
        except ImportError as e:
            if impl == 'mmdet':
                raise SystemExit(f'benchmark_op: --network-impl mmdet needs '
                                 f'mmdet ({e})')
        else:
            register_all_modules()
            adder = dict(type='AdderResNet', depth=50,
                         conv_cfg=dict(type='Adder', input_grad=input_grad))

            def build(cfg):
                return MODELS.build(dict(cfg, norm_eval=False,
                                         frozen_stages=-1,
                                         out_indices=(0, 1, 2, 3)))
            return 'mmdet', (lambda: build(dict(type='ResNet', depth=50)),
                             lambda: build(adder))
    from adder_det.ops import Adder2d

    def conv(cin, cout, k, stride):
        return torch.nn.Conv2d(cin, cout, k, stride, k // 2, bias=False)

    def adder(cin, cout, k, stride):
        return Adder2d(cin, cout, k, stride, k // 2, input_grad=input_grad)
    return 'plain', (lambda: plain_resnet50(conv),
                     lambda: plain_resnet50(adder))


def network_steps(args, device):
    """The conv ResNet-50 and the AdderResNet-50, each as one
    forward+backward step on the same input: (impl, {name: step})."""
    impl, builders = network_pair(args.network_impl, args.input_grad)
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)
    steps = {}
    for name, build in zip(('conv', 'adder'), builders):
        torch.manual_seed(0)
        net = build().to(device)
        net.train()

        def fwdbwd(net=net):
            sum(f.mean() for f in net(x)).backward()
        steps[name] = fwdbwd
    return impl, steps


def peak_memory(steps, device):
    """{name}_fwdbwd_peak_mb: each step's peak extra memory the second time
    it runs (the first allocates the gradients)."""
    out = {}
    for name, fwdbwd in steps.items():
        fwdbwd()
        with PeakMemory(device) as mem:
            fwdbwd()
        out[f'{name}_fwdbwd_peak_mb'] = mem.bytes / 2**20
    return out


def bench_network(args, device, memory=None):
    """Whole AdderResNet-50 vs the conv ResNet-50: forward+backward time,
    and peak memory (measured here unless `memory` brings it from the CPU
    memory child process)."""
    impl, steps = network_steps(args, device)
    out = dict(impl=impl)
    out.update(memory or peak_memory(steps, device))
    times = timeit_interleaved(list(steps.values()), device, args.repeat)
    for name, t in zip(steps, times):
        out[f'{name}_fwdbwd_ms'] = t * 1e3
    out['fwdbwd_vs_conv'] = out['adder_fwdbwd_ms'] / out['conv_fwdbwd_ms']
    return out


def official_unfold_adder(x, w, stride, padding):
    """AdderNet's published algorithm: unfold, broadcast |X - W|, sum."""
    n, _, h, wd = x.shape
    cout, _, k, _ = w.shape
    hout = (h + 2 * padding - k) // stride + 1
    wout = (wd + 2 * padding - k) // stride + 1
    cols = F.unfold(x, k, padding=padding, stride=stride)  # N, K, L
    cols = cols.permute(1, 2, 0).reshape(cols.shape[1], -1)  # K, L*N
    out = -(w.view(cout, -1, 1) - cols.unsqueeze(0)).abs().sum(1)
    return out.view(cout, hout, wout, n).permute(3, 0, 1, 2)


def reset_rss_peak():
    """Resets this process's RSS high-water mark (VmHWM) to its RSS; False
    where the kernel refuses (/proc/self/clear_refs: Linux 4.0 on)."""
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return True
    except OSError:
        return False


class PeakMemory:
    """Peak extra memory of a block: the CUDA allocator's peak; on CPU the
    RSS high-water mark over the block (exact however short the block is),
    or, where it cannot be reset, the RSS sampled every ~0.2 ms (which
    misses blocks shorter than that: small layers had read 0.0 MB)."""

    def __init__(self, device):
        self.device = device

    def __enter__(self):
        if self.device.type == 'cuda':
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        elif reset_rss_peak():
            self.method = 'VmHWM'
            self.base = self._status('VmRSS')
        else:
            self.method = 'sampled RSS'
            self.base = self.peak = self._status('VmRSS')
            self.stop = False
            self.thread = threading.Thread(target=self._sample, daemon=True)
            self.thread.start()
        return self

    def __exit__(self, *exc):
        if self.device.type == 'cuda':
            torch.cuda.synchronize()
            self.bytes = torch.cuda.max_memory_allocated() - self.base
        elif self.method == 'VmHWM':
            self.bytes = self._status('VmHWM') - self.base
        else:
            self.stop = True
            self.thread.join()
            self.bytes = self.peak - self.base

    @staticmethod
    def _status(key):
        """A /proc/self/status size (kB there), in bytes."""
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith(key + ':'):
                    return int(line.split()[1]) * 1024
        raise RuntimeError(f'benchmark_op: no {key} in /proc/self/status')

    def _sample(self):
        while not self.stop:
            self.peak = max(self.peak, self._status('VmRSS'))
            time.sleep(0.0002)


def timeit(fn, device, repeat, warmup=1):
    return timeit_interleaved([fn], device, repeat, warmup)[0]


def timeit_interleaved(fns, device, repeat, warmup=1):
    """Median time of each of fns, called in turn within every repeat: a
    slow spell of a shared machine then hits all of them, not one, so the
    ratios between them hold."""
    for fn in fns:
        for _ in range(warmup):
            fn()
    times = [[] for _ in fns]
    for _ in range(repeat):
        for fn, ts in zip(fns, times):
            if device.type == 'cuda':
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            fn()
            if device.type == 'cuda':
                torch.cuda.synchronize()
            ts.append(time.perf_counter() - t0)
    return [statistics.median(ts) for ts in times]


def unfold_vs_adder(unfold_fwd, adder_fwd, device, rounds, calls):
    """The unfold reference against the adder forward, paired like the
    conv ratios: in each round one unfold call (tens to hundreds of ms),
    then the median of ``calls`` adder calls right after it; returns the
    unfold's median ms and the median of the rounds' ratios. (A single
    unfold call against the adder's median from other seconds made the
    ratio depend on the host's speed at two different moments.)"""
    unfold_fwd()
    unfold_ms, ratios = [], []
    for _ in range(rounds):
        t_unfold = timeit(unfold_fwd, device, 1, warmup=0)
        t_adder = timeit(adder_fwd, device, calls, warmup=1)
        unfold_ms.append(t_unfold * 1e3)
        ratios.append(t_unfold / t_adder)
    return statistics.median(unfold_ms), statistics.median(ratios)


def bench_layer(spec, args, device):
    name, cin, cout, k, stride, size = spec
    pad = k // 2
    x = torch.randn(args.batch, cin, size, size, device=device)
    if args.input == 'relu':
        x = torch.relu(x)
    w_conv = torch.randn(cout, cin, k, k, device=device) * 0.05
    w_add = torch.randn(cout, cin, k, k, device=device)
    xg = x.clone().requires_grad_()
    wcg = w_conv.clone().requires_grad_()
    wag = w_add.clone().requires_grad_()

    def conv_fwd():
        with torch.no_grad():
            F.conv2d(x, w_conv, None, stride, pad)

    def adder_fwd():
        with torch.no_grad():
            adder2d(x, w_add, None, stride, pad, input_grad=args.input_grad)

    def conv_fwdbwd():
        F.conv2d(xg, wcg, None, stride, pad).sum().backward()

    def adder_fwdbwd():
        adder2d(xg, wag, None, stride, pad,
                input_grad=args.input_grad).sum().backward()

    hout = (size + 2 * pad - k) // stride + 1
    macs = args.batch * cout * cin * k * k * hout * hout
    r = dict(layer=name, cin=cin, cout=cout, kernel=k, stride=stride,
             size=size, gmac=macs / 1e9,
             input_zeros=(x == 0).float().mean().item())
    if args.memory_only:
        r.update(peak_memory(dict(conv=conv_fwdbwd, adder=adder_fwdbwd),
                             device))
        return r
    times = timeit_interleaved(
        [conv_fwd, adder_fwd, conv_fwdbwd, adder_fwdbwd], device, args.repeat)
    for key, t in zip(('conv_fwd_ms', 'adder_fwd_ms', 'conv_fwdbwd_ms',
                       'adder_fwdbwd_ms'), times):
        r[key] = t * 1e3
    if device.type == 'cuda':
        for key, fn in (('conv', conv_fwdbwd), ('adder', adder_fwdbwd)):
            with PeakMemory(device) as mem:
                fn()
            r[f'{key}_fwdbwd_peak_mb'] = mem.bytes / 2**20
    unfold_bytes = cout * cin * k * k * args.batch * hout * hout * 4
    if unfold_bytes <= args.unfold_limit_gb * 2**30:
        def unfold_fwd():
            with torch.no_grad():
                official_unfold_adder(x, w_add, stride, pad)
        r['unfold_fwd_ms'], r['unfold_vs_adder_fwd'] = unfold_vs_adder(
            unfold_fwd, adder_fwd, device, min(3, args.repeat), args.repeat)
    else:
        r['unfold_fwd_ms'] = r['unfold_vs_adder_fwd'] = None
    r['fwd_vs_conv'] = r['adder_fwd_ms'] / r['conv_fwd_ms']
    r['fwdbwd_vs_conv'] = r['adder_fwdbwd_ms'] / r['conv_fwdbwd_ms']
    r['adder_gmac_per_s'] = macs / 1e9 / (r['adder_fwd_ms'] / 1e3)
    r['conv_gmac_per_s'] = macs / 1e9 / (r['conv_fwd_ms'] / 1e3)
    return r


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--device', default='cpu')
    p.add_argument('--batch', type=int, default=2)
    p.add_argument('--size', type=int, default=224,
                   help='network input size; layer sizes scale with it')
    p.add_argument('--repeat', type=int, default=3)
    p.add_argument('--threads', type=int, default=None)
    p.add_argument('--unfold-limit-gb', type=float, default=4.0)
    p.add_argument('--set', choices=sorted(LAYER_SETS), default='resnet50',
                   help='layer shapes: ResNet-50, FCOS neck/head, both, or '
                   "the main job's small model (at --size 256 --batch 8)")
    p.add_argument('--layers', default='',
                   help='comma-separated substrings of layer names to run')
    p.add_argument('--network', action='store_true',
                   help='also time a whole AdderResNet-50 fwd+bwd vs the '
                   'conv ResNet-50')
    p.add_argument('--network-impl', choices=['auto', 'mmdet', 'plain'],
                   default='auto',
                   help="the networks: mmdet's ResNet/AdderResNet, or a "
                   'plain-torch ResNet-50 with Adder2d (auto: mmdet where '
                   'installed)')
    p.add_argument('--cpu-isa', choices=['avx512', 'avx2', 'generic'],
                   help='run the CPU kernels with this instruction set '
                   '(default: the best this CPU has)')
    p.add_argument('--input', choices=['randn', 'relu'], default='randn',
                   help="the layers' inputs: standard normal, or its ReLU "
                   "(half zeros, as ResNet-50's adder layers see them after "
                   'BN and ReLU in training; the CPU forward skips zeros)')
    p.add_argument('--sparse-forward', choices=['auto', 'always', 'never'],
                   help="the CPU forward's zero skipping (default: auto)")
    p.add_argument('--min-add', choices=['auto', 'always', 'never'],
                   help="whether the CPU forward's min form (and the sparse "
                   "forward's min terms) accumulate by adds instead of FMAs "
                   '(default: auto, adds on AMD Zen 1 and in the baseline '
                   'build)')
    p.add_argument('--half-width-tile', choices=['auto', 'always', 'never'],
                   help="whether the AVX-512 CPU forward tiles compute in "
                   '256-bit vectors (default: auto, on AMD Zen 4)')
    p.add_argument('--rows', choices=['auto', 'always', 'never'],
                   help='whether the CPU forward and input gradient run by '
                   'rows (vectors along the reduction; default: auto, on '
                   'maps of few positions)')
    p.add_argument('--input-grad', choices=['sign', 'hardtanh'],
                   default='sign', help="the adder layers' input-gradient "
                   "rule (default: sign, the paper configs'; hardtanh is "
                   "Adder2d's own default, AdderNet's rule)")
    p.add_argument('--matmul-filter-grad', choices=['auto', 'always', 'never'],
                   help='whether the CPU filter gradient of unpadded 1x1 '
                   'layers runs as matmuls instead of the convolution '
                   'weight gradient (default: auto)')
    p.add_argument('--json', action='store_true', help='print JSON only')
    p.add_argument('--memory-only', action='store_true',
                   help=argparse.SUPPRESS)  # the CPU memory child process
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    base, specs = LAYER_SETS[args.set]
    layers = [(n, ci, co, k, s, scaled_size(sz, args.size, base))
              for n, ci, co, k, s, sz in specs]
    if args.layers:
        keys = args.layers.split(',')
        layers = [lay for lay in layers if any(kk in lay[0] for kk in keys)]
        if not layers and not args.network:
            raise SystemExit(f'benchmark_op: no layer of --set {args.set} '
                             f'matches --layers {args.layers}')
    info = dict(device=str(device), backend=backend(), batch=args.batch,
                size=args.size, threads=torch.get_num_threads(),
                torch=torch.__version__, input=args.input,
                input_grad=args.input_grad)
    for flag in ('cpu_isa', 'sparse_forward', 'min_add',
                 'half_width_tile', 'rows', 'matmul_filter_grad'):
        if getattr(args, flag) and (device.type != 'cpu' or
                                    info['backend'] != 'compiled'):
            raise SystemExit(f"benchmark_op: --{flag.replace('_', '-')} is "
                             'for the compiled CPU kernels (--device cpu, '
                             'extension built)')
    if device.type == 'cpu' and info['backend'] == 'compiled':
        ext = load_extension()
        if args.cpu_isa:
            ext.set_cpu_isa(args.cpu_isa)  # a clear error if the CPU lacks it
        if args.sparse_forward:
            ext.set_sparse_forward_mode(args.sparse_forward)
        if args.min_add:
            ext.set_min_add_mode(args.min_add)
        info['cpu_isa'] = ext.cpu_isa()
        info['sparse_forward'] = ext.sparse_forward_mode()
        if args.half_width_tile:
            ext.set_half_width_tile_mode(args.half_width_tile)
        if args.rows:
            ext.set_rows_mode(args.rows)
        info['min_adds'] = ext.min_adds()
        info['half_width_tile'] = ext.half_width_tile()
        info['rows'] = ext.rows_mode()
        if args.matmul_filter_grad:
            ext.set_matmul_filter_grad_mode(args.matmul_filter_grad)
        info['matmul_filter_grad'] = ext.matmul_filter_grad_mode()
    if device.type == 'cuda':
        info['gpu'] = torch.cuda.get_device_name(device)
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.benchmark = True
    if args.memory_only:
        print(json.dumps(dict(
            layers=[bench_layer(spec, args, device) for spec in layers],
            network=peak_memory(network_steps(args, device)[1], device)
            if args.network else None,
            method='VmHWM' if reset_rss_peak() else 'sampled RSS')))
        return
    cpu_memory, network_memory = {}, None
    if device.type == 'cpu':  # peak memory from a child process, see doc
        env = dict(os.environ, MALLOC_MMAP_THRESHOLD_='65536')
        out = subprocess.run([sys.executable] + sys.argv + ['--memory-only'],
                             env=env, capture_output=True, text=True,
                             check=True)
        child = json.loads(out.stdout)
        cpu_memory = {r['layer']: r for r in child['layers']}
        network_memory = child['network']
        info['cpu_peak_memory'] = child['method']
    rows = []
    info['ceiling_gmac_per_s'] = mac_ceiling(device) / 1e9
    if not args.json:
        print(' '.join(f'{k}={v:.1f}' if isinstance(v, float) else f'{k}={v}'
                       for k, v in info.items()))
        print(f"{'layer':20s} {'GMAC':>6s} {'conv ms':>8s} {'fwd/conv':>8s} "
              f"{'f+b/conv':>8s} {'unfold/adder':>12s} {'adder GMAC/s':>12s} "
              f"{'%ceil':>5s} {'peak MB adder/conv':>18s}")
    for spec in layers:
        r = bench_layer(spec, args, device)
        for key in ('conv_fwdbwd_peak_mb', 'adder_fwdbwd_peak_mb'):
            r.setdefault(key, cpu_memory.get(r['layer'], {}).get(key))
        r['adder_fraction_of_ceiling'] = (r['adder_gmac_per_s'] /
                                          info['ceiling_gmac_per_s'])
        rows.append(r)
        if not args.json:
            uf = (f"{r['unfold_vs_adder_fwd']:12.1f}"
                  if r['unfold_vs_adder_fwd'] else f"{'(too big)':>12s}")
            print(f"{r['layer']:20s} {r['gmac']:6.3f} {r['conv_fwd_ms']:8.2f} "
                  f"{r['fwd_vs_conv']:8.2f} {r['fwdbwd_vs_conv']:8.2f} {uf} "
                  f"{r['adder_gmac_per_s']:12.1f} "
                  f"{100 * r['adder_fraction_of_ceiling']:5.0f} "
                  f"{r['adder_fwdbwd_peak_mb']:8.1f}/"
                  f"{r['conv_fwdbwd_peak_mb']:.1f}", flush=True)
    total = {k: sum(r[k] for r in rows) for k in
             ('conv_fwd_ms', 'adder_fwd_ms', 'conv_fwdbwd_ms',
              'adder_fwdbwd_ms')}
    summary = dict(fwd_vs_conv_total=total['adder_fwd_ms'] /
                   total['conv_fwd_ms'],
                   fwdbwd_vs_conv_total=total['adder_fwdbwd_ms'] /
                   total['conv_fwdbwd_ms']) if rows else {}
    uf = [r['unfold_vs_adder_fwd'] for r in rows if r['unfold_vs_adder_fwd']]
    if uf:
        summary['unfold_vs_adder_fwd_min'] = min(uf)
    network = (bench_network(args, device, network_memory)
               if args.network else None)
    if args.json:
        print(json.dumps(dict(info=info, layers=rows, summary=summary,
                              network=network), indent=1))
    else:
        if summary:
            print('summed over layers: ' + ', '.join(
                f'{k}={v:.2f}' for k, v in summary.items()))
        if network:
            print('whole ResNet-50 forward+backward: ' + ', '.join(
                f'{k}={v:.2f}' if isinstance(v, float) else f'{k}={v}'
                for k, v in network.items()))


if __name__ == '__main__':
    main()
