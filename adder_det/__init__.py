"""adder_det: adder neural network detectors for MMDetection 3.x.

``adder_det.ops`` needs torch only. Importing ``adder_det.models`` (what the
configs' ``custom_imports`` name) registers the mmdet components.
"""
__version__ = '0.1.0'
