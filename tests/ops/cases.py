"""Random adder2d cases shared by the CPU and CUDA tests."""
import random
from dataclasses import dataclass
from typing import Tuple

import torch

from adder_det.ops import reference as ref


@dataclass
class Case:
    seed: int
    n: int
    c: int
    h: int
    w: int
    cout: int
    kernel: Tuple[int, int]
    stride: Tuple[int, int]
    padding: Tuple[int, int]
    dilation: Tuple[int, int]
    groups: int
    bias: bool
    eta: object
    input_grad: str

    def conf(self):
        return self.stride, self.padding, self.dilation, self.groups

    def tensors(self, dtype, device='cpu'):
        g = torch.Generator().manual_seed(self.seed)
        x = torch.randn(self.n, self.c, self.h, self.w, generator=g,
                        dtype=torch.float64)
        w = torch.randn(self.cout, self.c // self.groups, *self.kernel,
                        generator=g, dtype=torch.float64)
        b = torch.randn(self.cout, generator=g, dtype=torch.float64)
        return [t.to(device=device, dtype=dtype) for t in (x, w, b)]


def random_case(seed: int, max_c: int = 40, max_hw: int = 15) -> Case:
    r = random.Random(seed)
    while True:
        groups = r.choice([1, 1, 1, 2, 4, 'dw'])
        if groups == 'dw':
            c = r.randint(1, max_c)
            groups, cout = c, c * r.choice([1, 2])
        else:
            c = groups * r.randint(1, max(1, max_c // groups))
            cout = groups * r.randint(1, max(1, max_c // groups))
        kernel = (r.choice([1, 3, 5, 7]), r.choice([1, 3, 5, 7]))
        if r.random() < 0.5:
            kernel = (kernel[0], kernel[0])
        stride = (r.randint(1, 3), r.randint(1, 3))
        padding = (r.randint(0, 3), r.randint(0, 3))
        dilation = (r.randint(1, 2), r.randint(1, 2))
        h, w = r.randint(1, max_hw), r.randint(1, max_hw)
        if r.random() < 0.7:  # mostly odd sizes
            h, w = h | 1, w | 1
        hout, wout = ref.output_size((h, w), kernel, stride, padding,
                                     dilation)
        if hout >= 1 and wout >= 1:
            return Case(seed, r.randint(1, 3), c, h, w, cout, kernel, stride,
                        padding, dilation, groups, r.random() < 0.5,
                        r.choice([None, 0.2, 1.0]),
                        r.choice(['hardtanh', 'sign']))


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b| (0 when both are zero)."""
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    scale = b.abs().max().item() if b.numel() else 0.
    err = (a - b).abs().max().item() if b.numel() else 0.
    return err / scale if scale > 0 else err


def reference_grads(case: Case, x, w, b, grad_out):
    """Expected (y, dx, dw, db) from the reference primitives + the rules."""
    from adder_det.ops import scale_filter_grad
    conf = case.conf()
    y = ref.adder2d_forward(x, w, *conf)
    if case.bias:
        y = y + b.view(1, -1, 1, 1)
    dx = ref.adder2d_backward_input(grad_out, x, w, *conf,
                                    case.input_grad == 'sign')
    dw = ref.adder2d_backward_weight(grad_out, x, w, *conf)
    if case.eta is not None:
        dw = scale_filter_grad(dw, case.eta)
    db = grad_out.sum((0, 2, 3)) if case.bias else None
    return y, dx, dw, db
