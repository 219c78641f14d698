from .adder_fpn import AdderFPN

__all__ = ['AdderFPN']
