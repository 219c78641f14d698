#!/usr/bin/env python
"""The sign-rule input gradient's two CPU tiles (or CUDA kernels), timed in
one process.

The CPU kernels compute sum g * sign(w - x) with a cheaper tile where no
input value of a (sample, channel) equals one of its filter values (AVX2:
3 operations a term against the exact tile's 5; AVX-512: 2 against 3),
after a per-(sample, channel) tie check, on layers with enough terms and
positions for the check to pay (csrc/cpu/adder2d_cpu.cpp, sign_fast_ties;
the thresholds depend on the instruction set, --cpu-isa, and on the CPU).
This times the compiled op on the layers of a tools/benchmark_op.py set
(default `small`, the main job's model at 256x256, batch 8; `resnet50` at
224x224, batch 2) on post-ReLU random inputs (no ties) twice per layer:
with the fast tile forced (`_C.set_sign_fast_mode('always')`: the check
plus the fast tile) and with it off ('never': the exact tile, no check).
Best of interleaved runs; the ratio is exact time / fast time (> 1: the
fast tile, check included, pays on this machine). `auto` says which tile
the thresholds give the layer (`_C.sign_fast_cpu_runs`). Not told apart:
with AVX-512, small maps whose input gradient runs "by input channels"
(the fast tile with its own check; 'never' turns it off, 'always' keeps
its own size limits), which in auto mode includes strided layers that
`auto` here calls exact (csrc/cpu/adder2d_cpu.cpp, use_backward_by_channels
and use_phases_by_channels).

With --device cuda the same on the GPU: the fast kernel (about 2.5
instructions a term against 5) and the tie kernel after it
(csrc/cuda/adder2d_tiles.cuh, sign_ties_kernel: it finds and takes back
the terms whose input value equals a filter value), against the exact
kernel; `auto` is `_C.sign_fast_cuda_runs`.

    python tools/benchmark_sign_rule.py [--threads 1] [--batch 8]
    python tools/benchmark_sign_rule.py --device cuda --set resnet50 --size 800
"""
import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from adder_det.ops import _backend  # noqa: E402
from tools.benchmark_op import LAYER_SETS, scaled_size  # noqa: E402


def best_time(fn, rounds=6, secs=0.3, sync=lambda: None):
    best = float('inf')
    for _ in range(rounds):
        sync()
        t0, it = time.perf_counter(), 0
        while time.perf_counter() - t0 < secs:
            fn()
            it += 1
        sync()
        best = min(best, (time.perf_counter() - t0) / it)
    return best


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    p.add_argument('--set', choices=['small', 'resnet50', 'fcos'],
                   default='small')
    p.add_argument('--size', type=int,
                   help='network input size (layer maps scale with it; '
                   'default: the set\'s own)')
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--batch', type=int,
                   help='default: 8 for small, 2 for resnet50')
    p.add_argument('--layers', default='',
                   help='comma-separated substrings of layer names to run')
    p.add_argument('--cpu-isa', choices=['avx512', 'avx2', 'generic'],
                   help='the CPU kernels\' instruction set (default: the '
                   'best this CPU has)')
    args = p.parse_args(argv)
    args.batch = args.batch or (8 if args.set == 'small' else 2)
    base, layers = LAYER_SETS[args.set]
    size = args.size or base
    if args.layers:
        keys = args.layers.split(',')
        layers = [lay for lay in layers if any(k in lay[0] for k in keys)]
        if not layers:
            sys.exit(f'benchmark_sign_rule: no layer of --set {args.set} '
                     f'matches --layers {args.layers}')
    if not _backend.extension_available():
        sys.exit('adder_det._C is not built: run tools/install.sh')
    from adder_det import _C  # the rule the C++ applies, not a copy of it
    cuda = args.device == 'cuda'
    if cuda and not (torch.cuda.is_available() and _C.built_with_cuda()):
        sys.exit('benchmark_sign_rule: --device cuda needs a GPU and '
                 'adder_det._C built with CUDA')
    torch.set_num_threads(args.threads)
    op = torch.ops.adder_det.adder2d_backward_input
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    if args.cpu_isa:
        _C.set_cpu_isa(args.cpu_isa)
    where = (f'gpu={torch.cuda.get_device_name()}' if cuda
             else f'threads={args.threads} cpu_isa={_C.cpu_isa()}')
    print(f'device={args.device} {where} batch={args.batch} size={size} '
          f'torch={torch.__version__}')
    print(f'{"layer":20} {"terms":>5} {"fast ms":>8} {"exact ms":>8} '
          f'{"exact/fast":>10} auto')
    try:
        for name, cin, cout, k, stride, lsize in layers:
            lsize = scaled_size(lsize, size, base)
            g = torch.Generator().manual_seed(0)
            x = torch.randn(args.batch, cin, lsize, lsize,
                            generator=g).clamp_min(0)
            w = torch.randn(cout, cin, k, k, generator=g)
            conf = ([stride] * 2, [k // 2] * 2, [1, 1], 1, True)
            out = (lsize + 2 * (k // 2) - k) // stride + 1
            go = torch.randn(args.batch, cout, out, out, generator=g)
            x, w, go = (t.to(args.device) for t in (x, w, go))

            def timed(mode):
                _C.set_sign_fast_mode(mode)
                return best_time(lambda: op(go, x, w, *conf), rounds=2,
                                 secs=0.05 if cuda else 0.3, sync=sync)

            timed('always'), timed('never')  # warm-up
            tf = te = float('inf')
            for _ in range(3):  # interleaved against drifting machine speed
                tf = min(tf, timed('always'))
                te = min(te, timed('never'))
            _C.set_sign_fast_mode('auto')
            runs = _C.sign_fast_cuda_runs if cuda else _C.sign_fast_cpu_runs
            fast = runs(x, w, *conf[:4])
            tile = 'fast' if fast else 'exact'
            print(f'{name:20} {cout * k * k:5d} {tf * 1e3:8.2f} '
                  f'{te * 1e3:8.2f} {te / tf:10.2f} {tile}')
    finally:
        _C.set_sign_fast_mode('auto')


if __name__ == '__main__':
    main()
