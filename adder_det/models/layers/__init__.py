from .adder_conv import Adder2d

__all__ = ['Adder2d']
