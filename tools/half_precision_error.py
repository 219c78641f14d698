#!/usr/bin/env python
"""What half precision costs an adder layer, against float64.

    python tools/half_precision_error.py [--seed 0]

An adder output is -sum_k |x_k - w_k|: a sum of K positive terms, so every
output shares a large offset that the following norm layer subtracts. For
each ResNet-50-like layer shape and each of float32, float16 and bfloat16
this rounds (a) only the inputs and filters, accumulating exactly, and
(b) the output too, normalizes both per channel as BatchNorm does, and
prints the error in units of the normalized output's standard deviation
(max and rms over all outputs); the next column does (b) for a convolution
with the same inputs and filters, whose output has no such offset. Inputs:
ReLU of N(0, 1); filters N(0.4, 0.5^2). This is why adder2d computes in
float32 under autocast (adder_det/ops/adder2d.py).

The last two columns are what packed half-precision adds (HADD2: two adder
MACs an instruction, twice the float32 rate) would cost: every difference
and every running sum rounded to the dtype, (c) all K terms in one half
sum, or (d) half sums of 16 consecutive terms (a reduction step of the
CUDA kernels) added up in float32.
"""
import argparse
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from adder_det.ops import adder2d  # noqa: E402

# (in channels, out channels, kernel, map size), batch 2.
SHAPES = [(64, 64, 3, 28), (256, 256, 3, 14), (512, 512, 3, 7),
          (1024, 256, 1, 14)]
DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def normalized(y):
    mean = y.mean((0, 2, 3), keepdim=True)
    return (y - mean) / y.std((0, 2, 3), keepdim=True)


def accumulated_in(x, w, k, dtype, block=None):
    """-sum_k |x - w| with each difference and each running sum rounded to
    dtype (in order of k), over blocks of `block` consecutive terms (all K
    if None) whose sums are then added exactly (float64)."""
    n, _, h, wd = x.shape
    cols = F.unfold(x, k, padding=k // 2).to(dtype)   # (N, K, L)
    filters = w.reshape(w.shape[0], -1).to(dtype)      # (T, K)
    terms = filters.shape[1]
    block = block or terms
    acc = cols.new_zeros(n, filters.shape[0], -(-terms // block),
                         cols.shape[2])
    for j in range(block):  # term j of every block at once
        d = (cols[:, None, j::block] - filters[None, :, j::block, None]).abs()
        acc[:, :, :d.shape[2]] += d
    return -acc.double().sum(2).view(n, -1, h, wd)


def layer_errors(cin, cout, k, size, seed=0):
    """{dtype: [(max, rms) with the inputs rounded, with the output rounded
    too, a convolution's with its output rounded, the adder's accumulated
    in dtype, and in dtype by blocks of 16]} in normalized-output std
    units, and the mean |adder output|."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, cin, size, size, generator=g, dtype=torch.float64)
    x = x.relu()
    w = torch.randn(cout, cin, k, k, generator=g, dtype=torch.float64)
    w = w * 0.5 + 0.4
    y = adder2d(x, w, padding=k // 2)
    conv = F.conv2d(x, w, padding=k // 2)

    def error(out, ref):
        e = (normalized(out) - normalized(ref)).abs()
        return e.max().item(), e.square().mean().sqrt().item()

    result = {}
    for dtype in DTYPES:
        xr, wr = x.to(dtype).double(), w.to(dtype).double()
        y_in = adder2d(xr, wr, padding=k // 2)
        conv_out = F.conv2d(xr, wr, padding=k // 2).to(dtype).double()
        result[dtype] = [error(y_in, y), error(y_in.to(dtype).double(), y),
                         error(conv_out, conv),
                         error(accumulated_in(x, w, k, dtype), y),
                         error(accumulated_in(x, w, k, dtype, 16), y)]
    return result, y.abs().mean().item()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--seed', type=int, default=0)
    args = p.parse_args(argv)
    print(f'torch={torch.__version__} seed={args.seed} batch=2; errors in '
          'units of the normalized output std (max / rms)')
    print(f'{"layer":22s} {"mean |y|":>8s} {"dtype":9s} '
          f'{"(a) inputs rounded":>18s} {"(b) output too":>18s} '
          f'{"conv, (b)":>18s} {"(c) half sums":>18s} '
          f'{"(d) blocks of 16":>18s}')
    for cin, cout, k, size in SHAPES:
        errors, mean_abs = layer_errors(cin, cout, k, size, args.seed)
        name = f'{cin}->{cout} {k}x{k} at {size}x{size}'
        for dtype, errs in errors.items():
            cells = ' '.join(f'{m:9.4f} / {r:6.4f}' for m, r in errs)
            print(f'{name:22s} {mean_abs:8.0f} {str(dtype)[6:]:9s} {cells}')


if __name__ == '__main__':
    main()
