"""MMDetection components of adder_det; importing this registers them.

Configs load it with ``custom_imports=dict(imports=['adder_det.models'])``.
"""
from .backbones import AdderResNet
from .dense_heads import AdderFCOSHead
from .layers import Adder2d  # registers the conv types 'Adder', 'Adder2d'
from .necks import AdderFPN

__all__ = ['Adder2d', 'AdderResNet', 'AdderFPN', 'AdderFCOSHead']
