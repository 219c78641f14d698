from .adder_conv import Adder2d
from .level_norms import LevelNorms

__all__ = ['Adder2d', 'LevelNorms']
