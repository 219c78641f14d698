"""tools/convert_addernet.py on a state dict in the official layout."""
from collections import OrderedDict

import pytest
import torch

import adder_det.models  # noqa: F401
from mmdet.registry import MODELS

from . import load_tool

conv = load_tool('convert_addernet')


def bn(prefix, c, sd):
    for name, value in (('weight', torch.rand(c)), ('bias', torch.randn(c)),
                        ('running_mean', torch.randn(c)),
                        ('running_var', torch.rand(c) + 0.5),
                        ('num_batches_tracked', torch.tensor(7))):
        sd[f'{prefix}.{name}'] = value


def official_resnet50_state_dict(prefix='module.'):
    """Keys and shapes as huawei-noah/AdderNet's resnet50.py saves them."""
    sd = OrderedDict()
    sd['conv1.weight'] = torch.randn(64, 3, 7, 7)
    bn('bn1', 64, sd)
    inplanes = 64
    for i, (planes, blocks) in enumerate(zip((64, 128, 256, 512),
                                             (3, 4, 6, 3)), 1):
        for j in range(blocks):
            p = f'layer{i}.{j}'
            sd[f'{p}.conv1.adder'] = torch.randn(planes, inplanes, 1, 1)
            bn(f'{p}.bn1', planes, sd)
            sd[f'{p}.conv2.adder'] = torch.randn(planes, planes, 3, 3)
            bn(f'{p}.bn2', planes, sd)
            sd[f'{p}.conv3.adder'] = torch.randn(planes * 4, planes, 1, 1)
            bn(f'{p}.bn3', planes * 4, sd)
            if j == 0:
                sd[f'{p}.downsample.0.adder'] = torch.randn(planes * 4,
                                                            inplanes, 1, 1)
                bn(f'{p}.downsample.1', planes * 4, sd)
            inplanes = planes * 4
    sd['fc.weight'] = torch.randn(1000, 2048, 1, 1)
    sd['fc.bias'] = torch.randn(1000)
    bn('bn2', 1000, sd)
    return OrderedDict((prefix + k, v) for k, v in sd.items())


def test_convert_and_load_through_pretrained_init(tmp_path):
    official = official_resnet50_state_dict()
    src, dst = tmp_path / 'addernet_r50.pth', tmp_path / 'out' / 'r50.pth'
    torch.save({'state_dict': official, 'epoch': 150}, src)
    conv.main([str(src), str(dst)])
    model = MODELS.build(dict(type='AdderResNet', depth=50,
                              init_cfg=dict(type='Pretrained',
                                            checkpoint=str(dst))))
    model.init_weights()  # mmengine's loader, torch's weights-only load
    sd = model.state_dict()
    torch.testing.assert_close(sd['layer3.5.conv2.weight'],
                               official['module.layer3.5.conv2.adder'])
    torch.testing.assert_close(sd['layer2.0.downsample.0.weight'],
                               official['module.layer2.0.downsample.0.adder'])
    torch.testing.assert_close(sd['bn1.running_var'],
                               official['module.bn1.running_var'])
    torch.testing.assert_close(sd['conv1.weight'],
                               official['module.conv1.weight'])


def test_classifier_dropped_and_depth_inferred():
    new, dropped = conv.convert(official_resnet50_state_dict(prefix=''))
    assert sorted(dropped) == sorted(
        ['fc.weight', 'fc.bias'] + [f'bn2.{n}' for n in (
            'weight', 'bias', 'running_mean', 'running_var',
            'num_batches_tracked')])
    assert conv.infer_depth(new) == 50
    assert not any(k.endswith('.adder') for k in new)


def test_mismatched_checkpoint_is_named(tmp_path):
    sd = official_resnet50_state_dict()
    del sd['module.layer1.0.conv2.adder']
    sd['module.layer1.0.conv3.adder'] = torch.randn(256, 64, 3, 3)
    src = tmp_path / 'bad.pth'
    torch.save(sd, src)
    with pytest.raises(ValueError, match='layer1.0.conv2.weight'):
        conv.main([str(src), str(tmp_path / 'o.pth')])
    with pytest.raises(FileNotFoundError, match='no checkpoint'):
        conv.main([str(tmp_path / 'missing.pth'), str(tmp_path / 'o.pth')])
