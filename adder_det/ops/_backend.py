"""Which implementation of the three adder2d primitives runs.

The compiled extension ``adder_det._C`` registers dispatcher ops
``torch.ops.adder_det.{adder2d, adder2d_backward_input,
adder2d_backward_weight}`` with CPU and (when built with CUDA) CUDA kernels.
Without it the pure-PyTorch reference runs instead, after one warning: slow,
never wrong.

``ADDER_DET_BACKEND`` chooses: ``auto`` (default: compiled if built),
``compiled`` (error if it is not built) or ``reference``.
"""
import os
import warnings

import torch

from . import reference

BACKENDS = ('auto', 'compiled', 'reference')


_extension = None   # the loaded adder_det._C
_load_error = None  # why it could not be loaded
_warned = set()     # fallback warnings already given


def load_extension():
    """Import ``adder_det._C`` (registers the ops); ImportError if absent."""
    global _extension, _load_error
    if _extension is None:
        if _load_error is not None:
            raise ImportError(_load_error)
        try:
            from adder_det import _C  # the import registers the ops
        except ImportError as e:
            _load_error = f'adder_det._C is not built or not loadable: {e}'
            raise ImportError(_load_error) from e
        _register_fake_kernels()
        _extension = _C
    return _extension


def extension_available() -> bool:
    try:
        load_extension()
    except ImportError:
        return False
    return True


def _register_fake_kernels():
    """Shape-only kernels so torch.compile / torch.export trace the ops."""
    from .reference import output_size

    @torch.library.register_fake('adder_det::adder2d')
    def _(input, weight, stride, padding, dilation, groups):
        hout, wout = output_size(input.shape[-2:], weight.shape[-2:], stride,
                                 padding, dilation)
        return input.new_empty(input.shape[0], weight.shape[0], hout, wout)

    @torch.library.register_fake('adder_det::adder2d_backward_input')
    def _(grad_output, input, weight, stride, padding, dilation, groups,
          sign_grad):
        return torch.empty_like(input)

    @torch.library.register_fake('adder_det::adder2d_backward_weight')
    def _(grad_output, input, weight, stride, padding, dilation, groups):
        return torch.empty_like(weight)


def backend(device_type: str = 'cpu') -> str:
    """``'compiled'`` or ``'reference'``: what :func:`adder2d` runs now on
    tensors of ``device_type``."""
    choice = os.environ.get('ADDER_DET_BACKEND', 'auto')
    if choice not in BACKENDS:
        raise ValueError(f'ADDER_DET_BACKEND={choice!r}; expected one of '
                         f'{BACKENDS}')
    if choice == 'reference':
        return 'reference'
    if choice == 'compiled':
        load_extension()  # raises ImportError with the reason
        return 'compiled'
    if not extension_available():
        _warn_once('the compiled extension adder_det._C is not built')
        return 'reference'
    if device_type == 'cuda' and not _extension.built_with_cuda():
        _warn_once('adder_det._C was built without CUDA kernels')
        return 'reference'
    return 'compiled'


def _warn_once(reason: str):
    if reason not in _warned:
        _warned.add(reason)
        warnings.warn(
            f'adder_det: {reason}; falling back to the slow pure-PyTorch '
            'reference. Build it with `pip install --no-build-isolation -e .`'
            ' (FORCE_CUDA=1 for the CUDA kernels).', RuntimeWarning,
            stacklevel=4)


def primitives(device_type: str = 'cpu'):
    """(forward, backward_input, backward_weight) of the active backend."""
    if backend(device_type) == 'compiled':
        ops = torch.ops.adder_det
        return ops.adder2d, ops.adder2d_backward_input, \
            ops.adder2d_backward_weight
    return (reference.adder2d_forward, reference.adder2d_backward_input,
            reference.adder2d_backward_weight)
