from .adder_conv import ADDER_CONV_TYPES, Adder2d, is_adder_cfg
from .level_norms import LevelNorms

__all__ = ['ADDER_CONV_TYPES', 'Adder2d', 'LevelNorms', 'is_adder_cfg']
