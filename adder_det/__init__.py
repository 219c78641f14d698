"""adder_det: adder neural network detectors for MMDetection 3.x.

``adder_det.ops`` needs torch only. Importing ``adder_det.models`` (what the
configs' ``custom_imports`` name) registers the mmdet components.
"""
__version__ = '0.1.0'

# The compiled extension (adder_det._C) links against torch's libraries,
# which are loaded only by importing torch: without this, a script whose
# first line is `from adder_det import _C` failed with "libc10.so: cannot
# open shared object file".
import torch  # noqa: E402,F401
