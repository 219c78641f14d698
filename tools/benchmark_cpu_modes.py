#!/usr/bin/env python
"""One CPU kernel switch's settings against each other, alternated in one
process.

The compiled CPU kernels pick some paths by the CPU and by thresholds
(csrc/cpu/adder2d_cpu.cpp): the instruction set, the sparse forward of a
ReLU output, the min form by adds (AMD Zen 1 and the baseline build; the
sparse forward's min terms too), the AVX-512 tiles in 256-bit vectors (AMD
Zen 4), the forward and input gradient by rows of maps with few
positions, the filter gradient of 1x1 layers by matmuls. Each has a setter that forces it, so a new host can be asked
which setting pays, layer by layer: this times the forward (or the
sign rule's input gradient, or the filter gradient) of a
tools/benchmark_op.py layer set under each
setting in turn, round after round (so a slow spell of a shared host hits
every setting), and prints median milliseconds and each setting's time over
the first one's; then the sums. Inputs: N(0, 1), or its ReLU shifted so
that a given fraction is zero (`--zeros 0.45`).

    python tools/benchmark_cpu_modes.py half_width_tile never,always
    python tools/benchmark_cpu_modes.py sparse_forward never,always --zeros 0.45
    python tools/benchmark_cpu_modes.py cpu_isa avx512,avx2 --layers 1x1
    python tools/benchmark_cpu_modes.py rows never,always --set fcos --layers P6,P7,extra
    python tools/benchmark_cpu_modes.py matmul_filter_grad never,auto --op filter_grad --layers 1x1
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from adder_det.ops import _backend  # noqa: E402
from tools.benchmark_op import (LAYER_SETS, scaled_size,  # noqa: E402
                                 timeit_interleaved)

# switch name -> the extension's setter (each returns the previous value).
SETTERS = dict(half_width_tile='set_half_width_tile_mode',
               rows='set_rows_mode',
               matmul_filter_grad='set_matmul_filter_grad_mode',
               sparse_forward='set_sparse_forward_mode',
               min_add='set_min_add_mode',
               sign_fast='set_sign_fast_mode',
               cpu_isa='set_cpu_isa')


def layer_input(cin, size, batch, zeros, gen):
    x = torch.randn(batch, cin, size, size, generator=gen)
    if zeros is None:
        return x
    shift = torch.distributions.Normal(0., 1.).icdf(torch.tensor(zeros))
    return torch.relu(x - shift)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('switch', choices=sorted(SETTERS))
    p.add_argument('values', help='comma-separated settings, e.g. '
                   'never,always (the first is the reference)')
    p.add_argument('--set', choices=sorted(LAYER_SETS), default='resnet50')
    p.add_argument('--layers', help='comma-separated substrings of names')
    p.add_argument('--size', type=int, help='input size (default: the '
                   "set's own, 224 for resnet50)")
    p.add_argument('--batch', type=int, default=2)
    p.add_argument('--zeros', type=float, help='ReLU inputs with this '
                   'fraction of zeros (default: N(0, 1) inputs)')
    p.add_argument('--op', choices=['forward', 'input_grad', 'filter_grad'],
                   default='forward', help='input_grad: the sign rule; '
                   'filter_grad: the filter gradient (without eta)')
    p.add_argument('--rounds', type=int, default=9)
    p.add_argument('--threads', type=int)
    p.add_argument('--cpu-isa', choices=['avx512', 'avx2', 'generic'],
                   help='the kernels of this instruction set for every '
                   'setting (default: the best this CPU has; not with the '
                   'cpu_isa switch)')
    args = p.parse_args()
    if args.zeros is not None and not 0 < args.zeros < 1:
        p.error(f'--zeros {args.zeros}: a fraction strictly between 0 and 1')
    if not _backend.extension_available():
        raise SystemExit('benchmark_cpu_modes: the compiled extension is '
                         'not built')
    ext = _backend.load_extension()
    if args.cpu_isa:
        if args.switch == 'cpu_isa':
            p.error('--cpu-isa with the cpu_isa switch: give the ISAs as '
                    'its values')
        try:
            isa_before = ext.set_cpu_isa(args.cpu_isa)
        except RuntimeError as e:  # names an ISA this CPU lacks
            raise SystemExit(f'benchmark_cpu_modes: {e}')
    setter = getattr(ext, SETTERS[args.switch])
    values = args.values.split(',')
    if len(values) < 2:
        p.error('give two settings or more, comma-separated')
    try:
        previous = setter(values[0])
        for v in values[1:]:
            setter(v)
    except RuntimeError as e:  # the setter names the unknown value
        raise SystemExit(f'benchmark_cpu_modes: {e}')
    if args.threads:
        torch.set_num_threads(args.threads)
    base, specs = LAYER_SETS[args.set]
    size = args.size or base
    layers = [s for s in specs if not args.layers or
              any(k in s[0] for k in args.layers.split(','))]
    if not layers:
        raise SystemExit(f'benchmark_cpu_modes: no layer of --set {args.set} '
                         f'matches --layers {args.layers}')
    print(f'switch={args.switch} values={args.values} cpu_isa={ext.cpu_isa()} '
          f'op={args.op} zeros={args.zeros} batch={args.batch} size={size} '
          f'threads={torch.get_num_threads()}')
    gen = torch.Generator().manual_seed(0)
    totals = dict.fromkeys(values, 0.0)
    try:
        for name, cin, cout, k, stride, sz in layers:
            hw = scaled_size(sz, size, base)
            x = layer_input(cin, hw, args.batch, args.zeros, gen)
            w = torch.randn(cout, cin, k, k, generator=gen)
            conf = ([stride, stride], [k // 2, k // 2], [1, 1], 1)
            if args.op == 'forward':
                def call():
                    torch.ops.adder_det.adder2d(x, w, *conf)
            else:
                ho = (hw + 2 * (k // 2) - k) // stride + 1
                g = torch.randn(args.batch, cout, ho, ho, generator=gen)
                op = (torch.ops.adder_det.adder2d_backward_input
                      if args.op == 'input_grad' else
                      torch.ops.adder_det.adder2d_backward_weight)
                extra = (True,) if args.op == 'input_grad' else ()

                def call():
                    op(g, x, w, *conf, *extra)
            def under(v, call=call):  # the setter (~1 us) is timed too
                def run():
                    setter(v)
                    call()
                return run
            med = dict(zip(values, (t * 1e3 for t in timeit_interleaved(
                [under(v) for v in values], torch.device('cpu'),
                args.rounds))))
            for v in values:
                totals[v] += med[v]
            print(f'{name:18s} ' + '  '.join(
                f'{v} {med[v]:7.2f} ms ({med[v] / med[values[0]]:.2f})'
                for v in values), flush=True)
    finally:
        setter(previous)
        if args.cpu_isa:
            ext.set_cpu_isa(isa_before)
    print('summed: ' + '  '.join(
        f'{v} {totals[v]:.1f} ms ({totals[v] / totals[values[0]]:.2f})'
        for v in values))


if __name__ == '__main__':
    main()
