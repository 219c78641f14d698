"""The adder layer: functional ``adder2d`` and the ``Adder2d`` module.

Output = minus the L1 distance between each input patch and each filter
(AdderNet, ../../README.md). Backward follows the papers, not calculus:

* filters get the full-precision gradient (X - F), not sign(X - F);
* inputs get ``'hardtanh'``: HT(F - X) (AdderNet classification) or
  ``'sign'``: sign(F - X) (the detection paper's L1 rule, which is the true
  derivative of the forward);
* the filter gradient is rescaled per layer to norm eta * sqrt(numel)
  (adaptive learning rate); ``eta=None`` turns that off.

Arguments are checked here, up front, so that bad input fails with a message
naming the problem instead of deep inside a kernel.
"""
import math
from typing import Optional, Tuple, Union

import torch
from torch import nn

from . import _backend
from .reference import output_size

IntPair = Union[int, Tuple[int, int]]
INPUT_GRADS = ('hardtanh', 'sign')
_CPU_DTYPES = (torch.float32, torch.float64)
_CUDA_DTYPES = _CPU_DTYPES + (torch.float16, torch.bfloat16)


def _pair(value, name: str, minimum: int) -> Tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if (not isinstance(value, (tuple, list)) or len(value) != 2 or
            not all(isinstance(v, int) and not isinstance(v, bool)
                    for v in value)):
        raise ValueError(f'adder2d: {name} must be an int or a pair of ints, '
                         f'got {value!r}')
    if min(value) < minimum:
        raise ValueError(f'adder2d: {name} must be >= {minimum}, got '
                         f'{tuple(value)}')
    return tuple(value)


def check_arguments(input, weight, bias, stride, padding, dilation, groups):
    """Validate and normalize; returns (stride, padding, dilation, groups)."""
    for name, t in (('input', input), ('weight', weight)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f'adder2d: {name} must be a Tensor, got '
                            f'{type(t).__name__}')
        if t.dim() != 4:
            raise ValueError(f'adder2d: {name} must be 4-D, got shape '
                             f'{tuple(t.shape)}')
    if input.device != weight.device:
        raise ValueError(f'adder2d: input is on {input.device} but weight on '
                         f'{weight.device}')
    if input.dtype != weight.dtype:
        raise ValueError(f'adder2d: input dtype {input.dtype} differs from '
                         f'weight dtype {weight.dtype}')
    allowed = _CUDA_DTYPES if input.device.type == 'cuda' else _CPU_DTYPES
    if input.dtype not in allowed:
        raise ValueError(f'adder2d: dtype {input.dtype} is not supported on '
                         f'{input.device.type}; use one of {allowed}')
    stride = _pair(stride, 'stride', 1)
    padding = _pair(padding, 'padding', 0)
    dilation = _pair(dilation, 'dilation', 1)
    if not isinstance(groups, int) or groups < 1:
        raise ValueError(f'adder2d: groups must be a positive int, got '
                         f'{groups!r}')
    n, c, h, w = input.shape
    cout, cin_g, kh, kw = weight.shape
    if min(cout, cin_g, kh, kw) < 1:
        raise ValueError(f'adder2d: weight has an empty dimension: shape '
                         f'{tuple(weight.shape)}')
    if c % groups or cout % groups:
        raise ValueError(f'adder2d: groups={groups} must divide input '
                         f'channels ({c}) and output channels ({cout})')
    if c != cin_g * groups:
        raise ValueError(f'adder2d: input has {c} channels but weight '
                         f'{tuple(weight.shape)} with groups={groups} '
                         f'expects {cin_g * groups}')
    for a, axis in enumerate(('height', 'width')):
        span = dilation[a] * (weight.shape[2 + a] - 1) + 1
        if input.shape[2 + a] + 2 * padding[a] < span:
            raise ValueError(
                f'adder2d: kernel {axis} {weight.shape[2 + a]} (dilated '
                f'{span}) is larger than the padded input {axis} '
                f'{input.shape[2 + a] + 2 * padding[a]}')
    if bias is not None:
        if not isinstance(bias, torch.Tensor) or bias.shape != (cout, ):
            raise ValueError(f'adder2d: bias must have shape ({cout},), got '
                             f'{getattr(bias, "shape", bias)}')
        if bias.device != input.device or bias.dtype != input.dtype:
            raise ValueError(f'adder2d: bias is {bias.dtype} on '
                             f'{bias.device}, input {input.dtype} on '
                             f'{input.device}')
    return stride, padding, dilation, groups


def check_gradient_rule(input_grad: str, eta, who: str):
    """Validate the papers' gradient options (``who`` prefixes errors)."""
    if input_grad not in INPUT_GRADS:
        raise ValueError(f'{who}: input_grad must be one of {INPUT_GRADS}, '
                         f'got {input_grad!r}')
    if eta is not None and not eta > 0:
        raise ValueError(f'{who}: eta must be positive or None, got {eta}')


class Adder2dFunction(torch.autograd.Function):
    """Autograd with the papers' gradient rules (see module docstring)."""

    @staticmethod
    def forward(ctx, input, weight, stride, padding, dilation, groups,
                input_grad, eta):
        forward, ctx.backward_input, ctx.backward_weight = \
            _backend.primitives(input.device.type)
        ctx.conf = (stride, padding, dilation, groups)
        ctx.sign_grad = input_grad == 'sign'
        ctx.eta = eta
        ctx.save_for_backward(input, weight)
        return forward(input, weight, *ctx.conf)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output):
        input, weight = ctx.saved_tensors
        grad_input = grad_weight = None
        if ctx.needs_input_grad[0]:
            grad_input = ctx.backward_input(grad_output, input, weight,
                                            *ctx.conf, ctx.sign_grad)
        if ctx.needs_input_grad[1]:
            grad_weight = ctx.backward_weight(grad_output, input, weight,
                                              *ctx.conf)
            if ctx.eta is not None:
                grad_weight = scale_filter_grad(grad_weight, ctx.eta)
        return grad_input, grad_weight, None, None, None, None, None, None


def scale_filter_grad(grad: torch.Tensor, eta: float) -> torch.Tensor:
    """AdderNet's adaptive learning rate: rescale to norm eta*sqrt(numel).

    A zero gradient stays zero (no direction to rescale)."""
    acc = torch.promote_types(grad.dtype, torch.float32)  # half: in float
    norm = grad.to(acc).norm()
    scale = eta * math.sqrt(grad.numel()) / norm.clamp_min(1e-30)
    return (grad.to(acc) * torch.where(norm > 0, scale, 0.)).to(grad.dtype)


def adder2d(input: torch.Tensor,
            weight: torch.Tensor,
            bias: Optional[torch.Tensor] = None,
            stride: IntPair = 1,
            padding: IntPair = 0,
            dilation: IntPair = 1,
            groups: int = 1,
            input_grad: str = 'hardtanh',
            eta: Optional[float] = 0.2) -> torch.Tensor:
    """Adder convolution, arguments as ``F.conv2d`` plus the gradient rules.

    Y(n, t, m, p) = -sum_{k,i,j} |X(n, k, m*s + i*d - pad, p*s + j*d - pad)
    - F(t, k, i, j)| (+ bias(t)); zero padding, so a padded tap adds -|F|.
    """
    stride, padding, dilation, groups = check_arguments(
        input, weight, bias, stride, padding, dilation, groups)
    check_gradient_rule(input_grad, eta, 'adder2d')
    if input.shape[0] == 0:
        hout, wout = output_size(input.shape[-2:], weight.shape[-2:], stride,
                                 padding, dilation)
        # Keep the graph so that backward gives zero gradients.
        out = (input.sum() + weight.sum()) * 0 + input.new_zeros(
            0, weight.shape[0], hout, wout)
    else:
        out = Adder2dFunction.apply(input, weight, stride, padding, dilation,
                                    groups, input_grad, eta)
    if bias is not None:
        out = out + bias.view(1, -1, 1, 1)
    return out


class Adder2d(nn.Module):
    """Drop-in replacement for ``nn.Conv2d`` computing ``adder2d``.

    It mirrors Conv2d's arguments and attributes (mmcv's ConvModule reads
    them) but is not a Conv2d subclass on purpose: mmdet's initializers
    select layers by class name, and a conv init (Kaiming, Normal(0.01))
    makes adder filters near zero, which turns every output channel into
    nearly the same -sum|x|. Filters start from N(0, ``init_std``**2) like
    the official AdderNet (std 1); ``init_weights`` re-applies that, so
    ConvModule does not Kaiming-initialize it.
    """

    transposed = False
    output_padding = (0, 0)
    padding_mode = 'zeros'

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 kernel_size: IntPair,
                 stride: IntPair = 1,
                 padding: IntPair = 0,
                 dilation: IntPair = 1,
                 groups: int = 1,
                 bias: bool = False,
                 input_grad: str = 'hardtanh',
                 eta: Optional[float] = 0.2,
                 init_std: float = 1.0,
                 device=None,
                 dtype=None):
        super().__init__()
        if in_channels % groups or out_channels % groups:
            raise ValueError(f'Adder2d: groups={groups} must divide '
                             f'in_channels={in_channels} and '
                             f'out_channels={out_channels}')
        check_gradient_rule(input_grad, eta, 'Adder2d')
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = _pair(kernel_size, 'kernel_size', 1)
        self.stride = _pair(stride, 'stride', 1)
        self.padding = _pair(padding, 'padding', 0)
        self.dilation = _pair(dilation, 'dilation', 1)
        self.groups = groups
        self.input_grad = input_grad
        self.eta = eta
        self.init_std = init_std
        factory = dict(device=device, dtype=dtype)
        self.weight = nn.Parameter(
            torch.empty(out_channels, in_channels // groups,
                        *self.kernel_size, **factory))
        if bias:
            self.bias = nn.Parameter(torch.empty(out_channels, **factory))
        else:
            self.register_parameter('bias', None)
        self.reset_parameters()

    def reset_parameters(self):
        nn.init.normal_(self.weight, 0., self.init_std)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def init_weights(self):
        """Called by mmengine/ConvModule instead of their conv inits."""
        self.reset_parameters()

    def forward(self, x):
        return adder2d(x, self.weight, self.bias, self.stride, self.padding,
                       self.dilation, self.groups, self.input_grad, self.eta)

    def extra_repr(self):
        s = (f'{self.in_channels}, {self.out_channels}, '
             f'kernel_size={self.kernel_size}, stride={self.stride}')
        if self.padding != (0, 0):
            s += f', padding={self.padding}'
        if self.dilation != (1, 1):
            s += f', dilation={self.dilation}'
        if self.groups != 1:
            s += f', groups={self.groups}'
        if self.bias is None:
            s += ', bias=False'
        return s + f', input_grad={self.input_grad!r}, eta={self.eta}'
