# Adder FCOS (B+N) with an adder ResNet-101, 24 epochs. No adder ResNet-101
# ImageNet checkpoint was published: supply your own (converted with
# tools/convert_addernet.py) or set init_cfg=None to train from scratch.
_base_ = './adder-fcos_adder-r50_adder-rpafpn_gn-head_2x_coco.py'

model = dict(
    backbone=dict(
        depth=101,
        init_cfg=dict(type='Pretrained',
                      checkpoint='checkpoints/adder_r101_imagenet.pth')))
