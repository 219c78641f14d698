#!/usr/bin/env python
"""Two builds of the compiled op against each other, in alternated
processes.

A kernel change that the extension compiles in (a tile's code, not a
switch that tools/benchmark_cpu_modes.py can flip in one process) is timed
before and after in separate processes, and on a shared host one layer's
time moves by up to 2x between processes a minute apart. This runs each
build in a child process, alternating OLD, NEW, OLD, NEW... for --rounds
rounds, and prints per layer the fastest of every child's fastest call
(the host's quietest moment for each build) and the median over rounds of
NEW / OLD from the same round; then the sums. Each build is a copy of the
extension file (`adder_det/_C*.so`, e.g. saved with `cp` before
rebuilding), loaded with this checkout's Python package.

    cp adder_det/_C*.so /tmp/old.so    # then change csrc/, rebuild
    python tools/compare_builds.py /tmp/old.so adder_det/_C*.so --layers s1,s2
    python tools/compare_builds.py A.so B.so --pass fwdbwd --input-grad hardtanh
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PASSES = ('forward', 'input_grad', 'fwdbwd')


def child(args):
    """Times the layers with the adder_det under args.child (a package
    copy holding one build); prints {layer: {pass: fastest ms}}."""
    sys.path.insert(0, args.child)
    import torch
    from adder_det.ops import _backend, adder2d
    ext = _backend.load_extension()
    if not os.path.abspath(ext.__file__).startswith(args.child):
        sys.exit(f'compare_builds: loaded {ext.__file__}, not the build '
                 f'copied under {args.child}')
    sys.path.insert(1, ROOT)
    from tools.benchmark_op import LAYER_SETS, scaled_size
    torch.set_num_threads(args.threads)
    base, layers = LAYER_SETS[args.set]
    sign = args.input_grad == 'sign'
    backward_input = torch.ops.adder_det.adder2d_backward_input
    out = {}
    for name, cin, cout, k, stride, size in select(layers, args.layers):
        size = scaled_size(size, args.size or base, base)
        g = torch.Generator().manual_seed(0)
        x = torch.randn(args.batch, cin, size, size, generator=g)
        w = torch.randn(cout, cin, k, k, generator=g)
        hout = (size + 2 * (k // 2) - k) // stride + 1
        go = torch.randn(args.batch, cout, hout, hout, generator=g)
        xg, wg = x.clone().requires_grad_(), w.clone().requires_grad_()
        conf = ([stride] * 2, [k // 2] * 2, [1, 1], 1)
        fns = dict(
            forward=lambda: adder2d(x, w, None, stride, k // 2),
            input_grad=lambda: backward_input(go, x, w, *conf, sign),
            fwdbwd=lambda: adder2d(xg, wg, None, stride, k // 2,
                                   input_grad=args.input_grad).backward(go))
        out[name] = {}
        for p in args.passes:
            fn = fns[p]
            with torch.set_grad_enabled(p == 'fwdbwd'):
                fn()
                best = float('inf')
                for _ in range(args.calls):
                    t0 = time.perf_counter()
                    fn()
                    best = min(best, time.perf_counter() - t0)
            out[name][p] = best * 1e3
    print(json.dumps(out))


def select(layers, keys):
    if not keys:
        return layers
    keys = keys.split(',')
    return [lay for lay in layers if any(k in lay[0] for k in keys)]


def package_copy(so, where):
    """The checkout's adder_det package without its extension, plus `so`
    as its extension; returns the folder to put on sys.path."""
    if not os.path.isfile(so):
        sys.exit(f'compare_builds: no extension file {so}')
    dst = os.path.join(where, 'adder_det')
    shutil.copytree(os.path.join(ROOT, 'adder_det'), dst,
                    ignore=shutil.ignore_patterns('_C*.so', '__pycache__'))
    shutil.copy(so, os.path.join(
        dst, '_C' + sysconfig.get_config_var('EXT_SUFFIX')))
    return where


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('old', help='the reference build\'s extension file')
    p.add_argument('new', help='the other build\'s extension file')
    p.add_argument('--set', default='resnet50',
                   choices=['resnet50', 'fcos', 'all', 'small'])
    p.add_argument('--size', type=int,
                   help='network input size (layer maps scale with it; '
                   'default: the set\'s own)')
    p.add_argument('--layers', default='',
                   help='comma-separated substrings of layer names to run')
    p.add_argument('--pass', dest='passes', default='forward,input_grad',
                   help=f'comma-separated, of {", ".join(PASSES)}')
    p.add_argument('--input-grad', default='sign',
                   choices=['sign', 'hardtanh'])
    p.add_argument('--rounds', type=int, default=8)
    p.add_argument('--calls', type=int, default=30,
                   help='timed calls per layer and pass in each child')
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--batch', type=int, default=2)
    p.add_argument('--child', help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.passes = args.passes.split(',')
    bad = [q for q in args.passes if q not in PASSES]
    if bad:
        sys.exit(f'compare_builds: unknown --pass {",".join(bad)} (choose '
                 f'from {", ".join(PASSES)})')
    if args.rounds < 1 or args.calls < 1:
        sys.exit('compare_builds: --rounds and --calls must be at least 1')
    if args.child:
        return child(args)
    sys.path.insert(0, ROOT)
    from tools.benchmark_op import LAYER_SETS
    if not select(LAYER_SETS[args.set][1], args.layers):
        sys.exit(f'compare_builds: no layer of --set {args.set} matches '
                 f'--layers {args.layers}')
    forwarded = ['--set', args.set, '--layers', args.layers, '--pass',
                 ','.join(args.passes), '--input-grad', args.input_grad,
                 '--calls', str(args.calls), '--threads', str(args.threads),
                 '--batch', str(args.batch)]
    if args.size:
        forwarded += ['--size', str(args.size)]
    runs = {'old': [], 'new': []}
    with tempfile.TemporaryDirectory() as tmp:
        dirs = {b: package_copy(so, os.path.join(tmp, b))
                for b, so in (('old', args.old), ('new', args.new))}
        for _ in range(args.rounds):
            for b in ('old', 'new'):
                out = subprocess.run(
                    [sys.executable, os.path.abspath(__file__), 'OLD', 'NEW',
                     *forwarded, '--child', dirs[b]],
                    capture_output=True, text=True, cwd=tmp)
                if out.returncode:
                    sys.exit(f'compare_builds: the {b} build\'s run '
                             f'failed:\n{out.stderr}')
                runs[b].append(json.loads(out.stdout))
    print(f'old={args.old} new={args.new} threads={args.threads} '
          f'batch={args.batch} size={args.size or LAYER_SETS[args.set][0]} '
          f'rounds={args.rounds} calls={args.calls} '
          f'input_grad={args.input_grad}')
    print(f'{"layer":20} {"pass":10} {"old ms":>8} {"new ms":>8} '
          f'{"new/old":>8}')
    totals = {b: {q: 0.0 for q in args.passes} for b in runs}
    for name in runs['old'][0]:
        for q in args.passes:
            best = {b: min(r[name][q] for r in runs[b]) for b in runs}
            ratio = statistics.median(
                n[name][q] / o[name][q]
                for o, n in zip(runs['old'], runs['new']))
            for b in runs:
                totals[b][q] += best[b]
            print(f'{name:20} {q:10} {best["old"]:8.2f} {best["new"]:8.2f} '
                  f'{ratio:8.3f}')
    for q in args.passes:
        print(f'summed {q}: old {totals["old"][q]:.2f} ms, new '
              f'{totals["new"][q]:.2f} ms, new/old '
              f'{totals["new"][q] / totals["old"][q]:.3f}')


if __name__ == '__main__':
    main()
