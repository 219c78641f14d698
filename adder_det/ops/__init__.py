"""Adder convolution op: torch only (no mmcv/mmdet), usable anywhere."""
from ._backend import backend, extension_available
from .adder2d import Adder2d, Adder2dFunction, adder2d, scale_filter_grad

__all__ = ['adder2d', 'Adder2d', 'Adder2dFunction', 'scale_filter_grad',
           'backend', 'extension_available']
