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
import contextlib
import math
import warnings
from typing import Optional, Tuple, Union

import torch
from torch import nn

from . import _backend
from .awn import check_weight_norm, gain_shape, standardize
from .decomposed import adder2d_standard_ops, decomposition_active
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
                grad_weight = scale_filter_grad(grad_weight, ctx.eta,
                                                inplace=True)
        return grad_input, grad_weight, None, None, None, None, None, None


def scale_filter_grad(grad: torch.Tensor, eta: float,
                      inplace: bool = False) -> torch.Tensor:
    """AdderNet's adaptive learning rate: rescale to norm eta*sqrt(numel).

    A zero gradient stays zero (no direction to rescale). ``inplace``: the
    caller owns ``grad`` (a fresh filter gradient), so float32/64 ones are
    scaled in place instead of through a new buffer of the filters' size."""
    acc = torch.promote_types(grad.dtype, torch.float32)  # half: in float
    norm = grad.to(acc).norm()
    scale = torch.where(norm > 0,
                        eta * math.sqrt(grad.numel()) / norm.clamp_min(1e-30),
                        0.)
    if inplace and grad.dtype == acc:
        return grad.mul_(scale)
    return (grad.to(acc) * scale).to(grad.dtype)


class _ScaleFilterGrad(torch.autograd.Function):
    """Identity whose backward applies the eta scaling: puts it on the raw
    filters when the forward uses AWN-standardized ones."""

    @staticmethod
    def forward(ctx, weight, eta):
        ctx.eta = eta
        return weight.view_as(weight)

    @staticmethod
    def backward(ctx, grad):
        return scale_filter_grad(grad, ctx.eta), None


_HALF_DTYPES = (torch.float16, torch.bfloat16)


def _autocast_to_float32(input, weight, bias):
    """Under autocast, the layer runs in float32 (torch's policy for
    precision-sensitive ops such as sum and norm), not in the autocast dtype
    as a convolution would: an adder output is a sum of K absolute values
    sharing a large common offset, which the following norm layer removes,
    so rounding it to half precision is amplified. Measured against float64
    (docs/benchmarks.md, "Mixed precision"): rounding the output to float16
    leaves 0.6-1% of the normalized output's std as error (rms), bfloat16
    5-8%; rounding only the inputs at most 0.2% and 1.5%. Half inputs from
    the layers before (autocast convolutions) are therefore widened,
    exactly; the weight stays float32 and its gradient comes back float32."""
    def widen(t):
        return t.float() if t is not None and t.dtype in _HALF_DTYPES else t

    return widen(input), widen(weight), widen(bias)


def _autocast_enabled(input) -> bool:
    # The op runs on CPU and CUDA only (other devices fail its checks).
    return (isinstance(input, torch.Tensor)
            and input.device.type in ('cpu', 'cuda')
            and torch.is_autocast_enabled(input.device.type))


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
    Under ``torch.autocast`` (mmengine's AmpOptimWrapper, ``--amp``) it
    computes in float32: see ``_autocast_to_float32``.
    """
    autocast = _autocast_enabled(input)
    if autocast:
        input, weight, bias = _autocast_to_float32(input, weight, bias)
    stride, padding, dilation, groups = check_arguments(
        input, weight, bias, stride, padding, dilation, groups)
    check_gradient_rule(input_grad, eta, 'adder2d')
    # float32 whatever the implementation's ops (the reference's too).
    with (torch.autocast(input.device.type, enabled=False) if autocast
          else contextlib.nullcontext()):
        if decomposition_active():
            out = adder2d_standard_ops(input, weight, stride, padding,
                                       dilation, groups)
        elif input.shape[0] == 0:
            hout, wout = output_size(input.shape[-2:], weight.shape[-2:],
                                     stride, padding, dilation)
            # Keep the graph so that backward gives zero gradients.
            out = (input.sum() + weight.sum()) * 0 + input.new_zeros(
                0, weight.shape[0], hout, wout)
        else:
            out = Adder2dFunction.apply(input, weight, stride, padding,
                                        dilation, groups, input_grad, eta)
    if bias is not None:
        out = out + bias.view(1, -1, 1, 1)
    return out


_warned_data_parallel = False


def _warn_if_data_parallel():
    global _warned_data_parallel
    if (not _warned_data_parallel and torch.is_grad_enabled()
            and torch.distributed.is_available()
            and torch.distributed.is_initialized()
            and torch.distributed.get_world_size() > 1):
        _warned_data_parallel = True
        warnings.warn(
            'Adder2d: eta scaling runs in backward on each process, before '
            'the gradients are averaged, so the step differs from the '
            'single-process one; call adder_det.ops.defer_eta(model, '
            'optimizer) (mmengine: custom_hooks=[dict(type=\'DeferredEtaHook\')])',
            stacklevel=3)


_warned_loss_scaling = False


def _warn_if_autocast(x):
    global _warned_loss_scaling
    if (not _warned_loss_scaling and torch.is_grad_enabled()
            and _autocast_enabled(x)):
        _warned_loss_scaling = True
        warnings.warn(
            'Adder2d under autocast: eta scaling runs in backward, on the '
            'loss-scaled gradient (GradScaler, mmengine\'s AmpOptimWrapper), '
            'and rescales it to a fixed norm, so unscaling then shrinks the '
            'filter step by the loss scale; call adder_det.ops.defer_eta('
            'model, optimizer) (mmengine: custom_hooks=[dict(type='
            '\'DeferredEtaHook\')], which tools/train.py --amp adds)',
            stacklevel=3)


class Adder2d(nn.Module):
    """Drop-in replacement for ``nn.Conv2d`` computing ``adder2d``.

    It mirrors Conv2d's arguments and attributes (mmcv's ConvModule reads
    them) but is not a Conv2d subclass on purpose: mmdet's initializers
    select layers by class name, and a conv init (Kaiming, Normal(0.01))
    makes adder filters near zero, which turns every output channel into
    nearly the same -sum|x|. Filters start from N(``init_mean``,
    ``init_std``**2), by default N(0, 1) like the official AdderNet;
    ``init_weights`` re-applies that, so ConvModule does not
    Kaiming-initialize it. (A filter value below every input value, e.g.
    a negative one after a ReLU, only adds a constant to |x - w| = x - w:
    it matches no pattern until training moves it into the inputs' range.)

    ``weight_norm=dict(type='AWN', per='filter'|'layer', gain=1.0,
    eps=1e-5)`` standardizes the filters every forward and multiplies them
    by the learnable ``awn_gain`` (see ``adder_det.ops.awn``); the eta
    scaling then applies to the raw filters' gradient. ``fold_weight_norm``
    bakes the standardized filters into ``weight`` for deployment; a
    state dict saved after folding loads back into an AWN layer as folded.
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
                 init_mean: float = 0.0,
                 weight_norm: Optional[dict] = None,
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
        # Set by ``defer_eta``: the optimizer applies eta after all-reduce.
        self.eta_deferred = False
        self.init_std = init_std
        self.init_mean = init_mean
        self.weight_norm = check_weight_norm(weight_norm, 'Adder2d')
        factory = dict(device=device, dtype=dtype)
        self.weight = nn.Parameter(
            torch.empty(out_channels, in_channels // groups,
                        *self.kernel_size, **factory))
        if self.weight_norm is not None:
            self.awn_gain = nn.Parameter(torch.empty(
                gain_shape(self.weight.shape, self.weight_norm['per']),
                **factory))
        else:
            self.register_parameter('awn_gain', None)
        if bias:
            self.bias = nn.Parameter(torch.empty(out_channels, **factory))
        else:
            self.register_parameter('bias', None)
        self.reset_parameters()

    def reset_parameters(self):
        nn.init.normal_(self.weight, self.init_mean, self.init_std)
        if self.bias is not None:
            nn.init.zeros_(self.bias)
        if self.awn_gain is not None:
            nn.init.constant_(self.awn_gain, self.weight_norm['gain'])

    def init_weights(self):
        """Called by mmengine/ConvModule instead of their conv inits."""
        self.reset_parameters()

    def filters(self) -> torch.Tensor:
        """The filters the forward uses (AWN-standardized when on)."""
        if self.awn_gain is None:
            return self.weight
        return self._standardize(self.weight)

    def _standardize(self, weight: torch.Tensor) -> torch.Tensor:
        return standardize(weight, self.awn_gain, self.weight_norm['per'],
                           self.weight_norm['eps'])

    def forward(self, x):
        eta = self.eta
        if self.eta_deferred:
            eta = None
        elif eta is not None and self.training:
            _warn_if_data_parallel()
            _warn_if_autocast(x)
        weight = self.weight
        if self.awn_gain is not None:
            if eta is not None and weight.requires_grad:
                weight = _ScaleFilterGrad.apply(weight, eta)
            weight = self._standardize(weight)
            eta = None
        return adder2d(x, weight, self.bias, self.stride, self.padding,
                       self.dilation, self.groups, self.input_grad, eta)

    @property
    def weight_norm_folded(self) -> bool:
        return 'awn_folded' in self._buffers

    @torch.no_grad()
    def fold_weight_norm(self):
        """Bake the AWN-standardized filters into ``weight`` (deployment):
        same outputs, no per-forward normalization, no gain."""
        if self.awn_gain is None:
            return
        self.weight.copy_(self.filters())
        self._mark_folded()

    def _mark_folded(self):
        del self._parameters['awn_gain']
        self.awn_gain = None
        self.register_buffer('awn_folded',
                             torch.ones((), dtype=torch.bool,
                                        device=self.weight.device))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # A folded AWN layer's state dict (tools/export.py) loads into a
        # layer built from the same config: switch to folded first.
        if self.awn_gain is not None and prefix + 'awn_folded' in state_dict:
            self._mark_folded()
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

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
        s += f', input_grad={self.input_grad!r}, eta={self.eta}'
        if self.weight_norm is not None:
            wn = self.weight_norm
            s += f", weight_norm=AWN(per={wn['per']!r}"
            s += ', folded)' if self.weight_norm_folded else ')'
        return s


def fold_weight_norms(model: nn.Module) -> int:
    """``fold_weight_norm`` on every AWN ``Adder2d`` of ``model`` (for
    deployment); returns how many layers were folded."""
    layers = [m for m in model.modules()
              if isinstance(m, Adder2d) and m.awn_gain is not None]
    for m in layers:
        m.fold_weight_norm()
    return len(layers)
