"""The adder layer is an mmcv conv type: conv_cfg=dict(type='Adder')."""
import subprocess
import sys

import torch
from mmcv.cnn import ConvModule, build_conv_layer

import adder_det.models  # noqa: F401  (registers)
from adder_det.ops import Adder2d


def test_build_conv_layer_by_both_names():
    for name in ('Adder', 'Adder2d'):
        layer = build_conv_layer(dict(type=name), 16, 32, 3, padding=1)
        assert isinstance(layer, Adder2d)
        assert layer.weight.shape == (32, 16, 3, 3) and layer.padding == (1, 1)
        assert layer(torch.randn(2, 16, 9, 9)).shape == (2, 32, 9, 9)


def test_conv_cfg_options_reach_the_layer():
    layer = build_conv_layer(dict(type='Adder', input_grad='sign', eta=None),
                             4, 8, 1, stride=2)
    assert layer.input_grad == 'sign' and layer.eta is None
    assert layer.stride == (2, 2)


def test_conv_module_with_bn_trains_and_keeps_adder_init():
    torch.manual_seed(0)
    m = ConvModule(16, 32, 3, padding=1, conv_cfg=dict(type='Adder'),
                   norm_cfg=dict(type='BN'))
    assert isinstance(m.conv, Adder2d)
    assert m.conv.bias is None  # bias='auto' drops it before a norm
    m.init_weights()
    # ConvModule would Kaiming-init a conv (std ~0.08 here); adder filters
    # keep their N(0, 1) init.
    assert 0.9 < m.conv.weight.std().item() < 1.1
    x = torch.randn(4, 16, 10, 10, requires_grad=True)
    y = m(x)
    assert y.shape == (4, 32, 10, 10) and (y >= 0).all()  # BN then ReLU
    y.sum().backward()
    assert x.grad is not None and m.conv.weight.grad is not None


def test_mmdet_registry_finds_it():
    from mmdet.registry import MODELS as MMDET_MODELS
    assert MMDET_MODELS.get('Adder') is Adder2d
    layer = MMDET_MODELS.build(dict(type='Adder', in_channels=3,
                                    out_channels=5, kernel_size=3))
    assert isinstance(layer, Adder2d)


def test_custom_imports_registers_from_a_fresh_process():
    code = '''
from mmengine.config import Config
from mmengine.utils import import_modules_from_strings
cfg = Config(dict(custom_imports=dict(imports=['adder_det.models'],
                                      allow_failed_imports=False)))
import_modules_from_strings(**cfg.custom_imports)
from mmcv.cnn import build_conv_layer
print(type(build_conv_layer(dict(type='Adder'), 3, 4, 3)).__name__)
'''
    out = subprocess.run([sys.executable, '-c', code], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith('Adder2d')
