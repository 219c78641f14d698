"""Data sets: the built-in synthetic shapes (numpy + Pillow only)."""
from .synthetic_shapes import CLASSES, make_image, write_dataset

__all__ = ['CLASSES', 'make_image', 'write_dataset']
