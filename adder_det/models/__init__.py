"""MMDetection components of adder_det; importing this registers them.

Configs load it with ``custom_imports=dict(imports=['adder_det.models'])``.
"""
from .layers import Adder2d  # noqa: F401  (registers conv types)

__all__ = ['Adder2d']
