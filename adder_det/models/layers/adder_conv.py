"""Register the adder layer as an mmcv conv type: ``conv_cfg=dict(type='Adder')``.

Registered in mmengine's root MODELS registry, where mmcv keeps its conv
layers, so ``mmcv.cnn.build_conv_layer`` and ``ConvModule`` find it from any
scope (mmdet's registry looks up its parent). Extra keys of the conv_cfg
(``input_grad``, ``eta``, ``init_std``) reach the layer:
``conv_cfg=dict(type='Adder', input_grad='sign')``.
"""
from mmengine.registry import MODELS

from adder_det.ops import Adder2d

#: The conv_cfg types that build an adder layer (both names registered).
ADDER_CONV_TYPES = ('Adder', 'Adder2d')
for _name in ADDER_CONV_TYPES:
    MODELS.register_module(_name, module=Adder2d)


def is_adder_cfg(conv_cfg):
    """Whether a conv_cfg builds an adder layer (None: a convolution)."""
    return isinstance(conv_cfg, dict) and \
        conv_cfg.get('type') in ADDER_CONV_TYPES


__all__ = ['ADDER_CONV_TYPES', 'Adder2d', 'is_adder_cfg']
