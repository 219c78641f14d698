# Adder FCOS (B+N+H) with an adder ResNet-101, 24 epochs (see the R-101 B+N
# config about the ImageNet checkpoint).
_base_ = './adder-fcos_adder-r50_adder-rpafpn_adder-head_2x_coco.py'

model = dict(
    backbone=dict(
        depth=101,
        init_cfg=dict(type='Pretrained',
                      checkpoint='checkpoints/adder_r101_imagenet.pth')))
