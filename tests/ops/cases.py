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
    # 'randn'; 'relu' (a ReLU output: half zeros, the CPU forward skips
    # them); 'ints' (small integers: inputs equal to filter values, the
    # sign rule's ties); 'offset' (+50 on both: the min form's shift).
    values: str = 'randn'
    # 'contiguous', 'channels_last', or 'sliced' (a view with a row pitch
    # of w + 2).
    layout: str = 'contiguous'

    def conf(self):
        return self.stride, self.padding, self.dilation, self.groups

    def tensors(self, dtype, device='cpu'):
        g = torch.Generator().manual_seed(self.seed)
        pad = 2 if self.layout == 'sliced' else 0
        x = torch.randn(self.n, self.c, self.h, self.w + pad, generator=g,
                        dtype=torch.float64)
        w = torch.randn(self.cout, self.c // self.groups, *self.kernel,
                        generator=g, dtype=torch.float64)
        b = torch.randn(self.cout, generator=g, dtype=torch.float64)
        if self.values == 'relu':
            x = x.relu()
        elif self.values == 'ints':
            x, w = x.mul(2).round().relu(), w.mul(2).round()
        elif self.values == 'offset':
            x, w = x + 50, w + 50
        elif self.values != 'randn':
            raise ValueError(f'unknown values {self.values!r}')
        x, w, b = (t.to(device=device, dtype=dtype) for t in (x, w, b))
        if self.layout == 'sliced':
            x = x[..., 1:-1]
        elif self.layout == 'channels_last':
            x = x.contiguous(memory_format=torch.channels_last)
        elif self.layout != 'contiguous':
            raise ValueError(f'unknown layout {self.layout!r}')
        return [x, w, b]


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


def random_layer_case(seed: int, max_macs: float = 40e6) -> Case:
    """Larger layers than random_case, where the CPU paths' thresholds lie
    (up to 320 filters, 192 channels, 40 x 40 maps; grouped and depthwise;
    mostly 1x1 and 3x3, padded to keep the size, stride 1 or 2), with random
    input values and layout; at most max_macs multiply-adds, so the
    reference stays quick."""
    r = random.Random(seed)
    while True:
        groups = r.choice([1, 1, 1, 1, 2, 4, 'dw'])
        wide = r.random() < 0.5
        if groups == 'dw':
            c = r.randint(1, 96)
            groups, cout = c, c * r.choice([1, 2])
        else:
            c = groups * r.randint(1, (192 if wide else 40) // groups)
            cout = groups * r.randint(1, (320 if wide else 72) // groups)
        k = r.choice([1, 1, 3, 3, 3, 5, 7])
        kernel = (k, k) if r.random() < 0.8 else (r.choice([1, 3, 5]),
                                                  r.choice([1, 3, 5]))
        if r.random() < 0.5:
            stride = (1, 1)
        elif r.random() < 0.6:
            stride = (2, 2)
        else:
            stride = (r.randint(1, 3), r.randint(1, 3))
        if r.random() < 0.7:
            padding = (kernel[0] // 2, kernel[1] // 2)
        else:
            padding = (r.randint(0, 3), r.randint(0, 3))
        dilation = (1, 1) if r.random() < 0.8 else (r.randint(1, 2),
                                                     r.randint(1, 2))
        h = r.randint(1, 40)
        w = h if r.random() < 0.6 else r.randint(1, 40)
        n = r.randint(1, 4)
        hout, wout = ref.output_size((h, w), kernel, stride, padding,
                                     dilation)
        macs = n * cout * (c // groups) * kernel[0] * kernel[1] * hout * wout
        if hout >= 1 and wout >= 1 and macs <= max_macs:
            return Case(seed, n, c, h, w, cout, kernel, stride, padding,
                        dilation, groups, r.random() < 0.3,
                        r.choice([None, 0.2]), r.choice(['hardtanh', 'sign']),
                        r.choice(['randn', 'relu', 'relu', 'ints', 'offset']),
                        r.choice(['contiguous', 'contiguous', 'channels_last',
                                  'sliced']))


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
