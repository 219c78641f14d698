"""Register the adder layer as an mmcv conv type: ``conv_cfg=dict(type='Adder')``.

Registered in mmengine's root MODELS registry, where mmcv keeps its conv
layers, so ``mmcv.cnn.build_conv_layer`` and ``ConvModule`` find it from any
scope (mmdet's registry looks up its parent). Extra keys of the conv_cfg
(``input_grad``, ``eta``, ``init_std``) reach the layer:
``conv_cfg=dict(type='Adder', input_grad='sign')``.
"""
from mmengine.registry import MODELS

from adder_det.ops import Adder2d

MODELS.register_module('Adder', module=Adder2d)
MODELS.register_module('Adder2d', module=Adder2d)

__all__ = ['Adder2d']
