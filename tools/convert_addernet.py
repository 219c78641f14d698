#!/usr/bin/env python
"""Convert an official AdderNet ImageNet ResNet checkpoint to AdderResNet.

    python tools/convert_addernet.py addernet_r50.pth checkpoints/adder_r50_imagenet.pth

The official code (huawei-noah/AdderNet, resnet50.py) names adder filters
``adder`` (ours: ``weight``), uses torchvision block names, which mmdet's
ResNet shares (stem ``conv1``/``bn1``, ``layerI.J.convK``/``bnK``,
``downsample.0``/``.1``), and ends in a 1x1-conv classifier ``fc`` with a
BN ``bn2``, which a detector drops. Checkpoints saved from DataParallel carry
a ``module.`` prefix and may wrap the weights in ``state_dict``; both are
handled. The result is checked key by key and shape by shape against an
AdderResNet of the inferred depth, and written as
``{'state_dict': ..., 'meta': ...}`` for ``init_cfg=dict(type='Pretrained',
checkpoint=...)`` or ``load_from``.
"""
import argparse
import os
import re
import sys
from collections import OrderedDict

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CLASSIFIER = re.compile(r'^(fc|bn2)\.')
#: blocks in the third stage -> (depth, bottleneck?)
DEPTHS = {(6, True): 50, (23, True): 101, (36, True): 152,
          (2, False): 18, (6, False): 34}


def load_official(path):
    if not os.path.isfile(path):
        raise FileNotFoundError(f'convert_addernet: no checkpoint at {path}')
    ckpt = torch.load(path, map_location='cpu', weights_only=True)
    if isinstance(ckpt, dict) and 'state_dict' in ckpt:
        ckpt = ckpt['state_dict']
    if not isinstance(ckpt, dict) or not ckpt:
        raise ValueError(f'convert_addernet: {path} holds no state dict')
    return ckpt


def convert(state_dict):
    """Official AdderNet keys -> AdderResNet keys; returns (new, dropped)."""
    out, dropped = OrderedDict(), []
    for key, value in state_dict.items():
        key = key[len('module.'):] if key.startswith('module.') else key
        if CLASSIFIER.match(key):
            dropped.append(key)
            continue
        if key.endswith('.adder'):
            key = key[:-len('.adder')] + '.weight'
        out[key] = value
    return out, dropped


def infer_depth(state_dict):
    blocks = {int(m.group(1)) for k in state_dict
              for m in [re.match(r'layer3\.(\d+)\.', k)] if m}
    bottleneck = any(k.startswith('layer1.0.conv3.') for k in state_dict)
    key = (max(blocks) + 1 if blocks else 0, bottleneck)
    if key not in DEPTHS:
        raise ValueError(f'convert_addernet: cannot tell the ResNet depth '
                         f'({key[0]} blocks in layer3, bottleneck='
                         f'{bottleneck})')
    return DEPTHS[key]


def check_against_model(state_dict, depth):
    """Every key and shape must match AdderResNet(depth)."""
    import adder_det.models  # noqa: F401
    from mmdet.registry import MODELS
    model = MODELS.build(dict(type='AdderResNet', depth=depth))
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state_dict)
                   if expected[k].shape != state_dict[k].shape)
    if missing or unexpected or wrong:
        raise ValueError(
            'convert_addernet: the checkpoint does not match AdderResNet-'
            f'{depth}: missing {missing[:5]}, unexpected {unexpected[:5]}, '
            f'wrong shape {wrong[:5]}' + (' ...' if len(missing) +
                                          len(unexpected) + len(wrong) > 15
                                          else ''))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('src', help='official AdderNet checkpoint')
    p.add_argument('dst', help='output checkpoint for AdderResNet')
    args = p.parse_args(argv)
    state_dict, dropped = convert(load_official(args.src))
    depth = infer_depth(state_dict)
    check_against_model(state_dict, depth)
    os.makedirs(os.path.dirname(os.path.abspath(args.dst)), exist_ok=True)
    torch.save({'state_dict': state_dict,
                'meta': {'converted_from': os.path.basename(args.src),
                         'arch': f'AdderResNet-{depth}'}}, args.dst)
    print(f'AdderResNet-{depth}: {len(state_dict)} tensors written to '
          f'{args.dst}; dropped the classifier ({", ".join(dropped)})')


if __name__ == '__main__':
    main()
