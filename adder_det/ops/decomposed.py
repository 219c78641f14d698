"""adder2d written with standard tensor operations only, for graph export.

To an exporter (ONNX) the compiled op is one opaque node no runtime knows.
Here the same sum is spelled out tap by tap: the zero-padded input is sliced
once per filter tap (i, j) with the layer's stride and dilation, compared with
that tap of every filter, and the absolute differences are summed over the
input channels of the group and over the taps. In ONNX that is Pad, Slice,
Reshape, Sub, Abs, ReduceSum and Add. Forward only, and memory-hungry (one
(N, Cout, Cin/groups, Hout, Wout) intermediate per tap): for export and for
checking exported graphs, not for training.

    with adder2d_decomposed():   # every adder2d / Adder2d call in the block
        torch.onnx.export(model, ...)
"""
import contextlib

import torch
import torch.nn.functional as F

from .reference import output_size

_active = 0


def decomposition_active() -> bool:
    """True inside ``with adder2d_decomposed():``."""
    return _active > 0


@contextlib.contextmanager
def adder2d_decomposed():
    """Within the block, ``adder2d`` (and so every ``Adder2d``) computes its
    forward with :func:`adder2d_standard_ops` instead of the compiled op."""
    global _active
    _active += 1
    try:
        yield
    finally:
        _active -= 1


def adder2d_standard_ops(input: torch.Tensor, weight: torch.Tensor,
                         stride, padding, dilation,
                         groups: int) -> torch.Tensor:
    """Y = -sum |X_patch - F| from pad, strided slices, abs and sums
    (arguments already checked and normalized to pairs by ``adder2d``)."""
    if torch.is_grad_enabled() and (input.requires_grad
                                    or weight.requires_grad):
        raise RuntimeError(
            'adder2d_decomposed() is forward-only (for export): its autograd '
            'would give calculus gradients, not the papers\' rules; run it '
            'under torch.no_grad()')
    n, c = input.shape[:2]
    cout, cin_g, kh, kw = weight.shape
    hout, wout = output_size(input.shape[-2:], (kh, kw), stride, padding,
                             dilation)
    x = F.pad(input, (padding[1], padding[1], padding[0], padding[0]))
    x = x.reshape(n, groups, 1, cin_g, x.shape[-2], x.shape[-1])
    w = weight.reshape(groups, cout // groups, cin_g, kh, kw)
    out = None
    for i in range(kh):
        r0 = i * dilation[0]
        rows = slice(r0, r0 + stride[0] * (hout - 1) + 1, stride[0])
        for j in range(kw):
            c0 = j * dilation[1]
            cols = slice(c0, c0 + stride[1] * (wout - 1) + 1, stride[1])
            tap = x[..., rows, cols]                   # (N, G, 1, Cg, Ho, Wo)
            f = w[None, :, :, :, i, j, None, None]     # (1, G, Tg, Cg, 1, 1)
            term = (tap - f).abs().sum(3)              # (N, G, Tg, Ho, Wo)
            out = term if out is None else out + term
    return -out.reshape(n, cout, hout, wout)
