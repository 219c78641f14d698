from .adder_fcos_head import AdderFCOSHead

__all__ = ['AdderFCOSHead']
