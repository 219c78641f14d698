# Conv FCOS R-101, 24 epochs.
_base_ = './fcos_r50_fpn_gn-head_2x_coco.py'

model = dict(
    backbone=dict(
        depth=101,
        init_cfg=dict(type='Pretrained',
                      checkpoint='torchvision://resnet101')))
