from .adder_resnet import AdderResNet

__all__ = ['AdderResNet']
