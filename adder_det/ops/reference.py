"""Pure-PyTorch adder2d: the executable specification.

Written for clarity, not speed: the input is unfolded into patches and the
L1 distance to every filter is taken literally, as in AdderNet's official
code, but in chunks so memory stays bounded (at most ``chunk_elems`` floats
of broadcast intermediate at a time) instead of Cout*K*N*L.

Every compiled kernel is tested against these three functions, and they are
also the fallback used when the compiled extension is not built.

Shapes: input (N, C, H, W); weight (Cout, C // groups, kh, kw);
output (N, Cout, Hout, Wout). K = C // groups * kh * kw, L = Hout * Wout.
"""
from typing import Tuple

import torch
import torch.nn.functional as F

Pair = Tuple[int, int]

#: Upper bound on the number of elements of one broadcast intermediate.
chunk_elems = 1 << 24


def output_size(in_hw, kernel_hw, stride: Pair, padding: Pair,
                dilation: Pair) -> Pair:
    """Spatial output size, as for ``F.conv2d``."""
    return tuple(
        (in_hw[a] + 2 * padding[a] - dilation[a] * (kernel_hw[a] - 1) - 1)
        // stride[a] + 1 for a in range(2))


def _unfold_groups(input, weight, stride, padding, dilation, groups):
    """Patches as (N, groups, K, L) and filters as (groups, Cout_g, K)."""
    n = input.shape[0]
    cout, cin_g, kh, kw = weight.shape
    cols = F.unfold(input, (kh, kw), dilation=dilation, padding=padding,
                    stride=stride)
    cols = cols.view(n, groups, cin_g * kh * kw, -1)
    return cols, weight.reshape(groups, cout // groups, cin_g * kh * kw)


def _column_chunk(rows: int, k: int) -> int:
    return max(1, chunk_elems // max(1, rows * k))


def adder2d_forward(input, weight, stride: Pair, padding: Pair,
                    dilation: Pair, groups: int):
    """Y(n, t, l) = -sum_k |X_col(n, k, l) - F(t, k)|."""
    n = input.shape[0]
    cout, _, kh, kw = weight.shape
    hout, wout = output_size(input.shape[-2:], (kh, kw), stride, padding,
                             dilation)
    cols, w = _unfold_groups(input, weight, stride, padding, dilation, groups)
    g, cout_g, k = w.shape
    out = input.new_empty(n, g, cout_g, hout * wout)
    step = _column_chunk(cout_g, k)
    for gi in range(g):
        wg = w[gi][:, :, None]                                   # (T, K, 1)
        for b in range(n):
            for l0 in range(0, hout * wout, step):
                c = cols[b, gi, None, :, l0:l0 + step]           # (1, K, l)
                out[b, gi, :, l0:l0 + step] = -(c - wg).abs().sum(1)
    return out.view(n, cout, hout, wout)


def adder2d_backward_input(grad_output, input, weight, stride: Pair,
                           padding: Pair, dilation: Pair, groups: int,
                           sign_grad: bool):
    """dX_col(n, k, l) = sum_t g(n, t, l) * G(F(t, k) - X_col(n, k, l)),
    G = sign (``sign_grad``, the true derivative) or hard tanh (AdderNet's
    clipped rule), then folded back onto the input (col2im)."""
    n, c, h, w_ = input.shape
    cout, _, kh, kw = weight.shape
    cols, w = _unfold_groups(input, weight, stride, padding, dilation, groups)
    g, cout_g, k = w.shape
    go = grad_output.reshape(n, g, cout_g, -1)
    dcols = torch.empty_like(cols)
    step = _column_chunk(cout_g, k)
    for gi in range(g):
        wg = w[gi][:, :, None]                                   # (T, K, 1)
        for b in range(n):
            for l0 in range(0, cols.shape[-1], step):
                d = wg - cols[b, gi, None, :, l0:l0 + step]      # (T, K, l)
                d = d.sign() if sign_grad else d.clamp(-1, 1)
                gb = go[b, gi, :, None, l0:l0 + step]            # (T, 1, l)
                dcols[b, gi, :, l0:l0 + step] = (d * gb).sum(0)
    return F.fold(dcols.view(n, g * k, -1), (h, w_), (kh, kw),
                  dilation=dilation, padding=padding, stride=stride)


def adder2d_backward_weight(grad_output, input, weight, stride: Pair,
                            padding: Pair, dilation: Pair, groups: int):
    """dF(t, k) = sum_{n, l} g(n, t, l) * (X_col(n, k, l) - F(t, k)): the
    full-precision AdderNet filter gradient (not the sign of the true one)."""
    n = input.shape[0]
    cols, w = _unfold_groups(input, weight, stride, padding, dilation, groups)
    g, cout_g, k = w.shape
    go = grad_output.reshape(n, g, cout_g, -1)
    dw = torch.zeros_like(w)
    step = _column_chunk(cout_g, k)
    for gi in range(g):
        wg = w[gi][:, :, None]
        for b in range(n):
            for l0 in range(0, cols.shape[-1], step):
                d = cols[b, gi, None, :, l0:l0 + step] - wg      # (T, K, l)
                gb = go[b, gi, :, None, l0:l0 + step]
                dw[gi] += (d * gb).sum(-1)
    return dw.view_as(weight)
