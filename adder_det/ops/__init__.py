"""Adder convolution op: torch only (no mmcv/mmdet), usable anywhere."""
from ._backend import backend, extension_available
from .adder2d import (Adder2d, Adder2dFunction, adder2d, fold_weight_norms,
                      scale_filter_grad)
from .decomposed import adder2d_decomposed, adder2d_standard_ops
from .deferred_eta import DeferredEtaHandle, defer_eta

__all__ = ['adder2d', 'Adder2d', 'Adder2dFunction', 'scale_filter_grad',
           'backend', 'extension_available', 'defer_eta', 'DeferredEtaHandle',
           'fold_weight_norms', 'adder2d_decomposed', 'adder2d_standard_ops']
