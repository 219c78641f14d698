# Table 1 row "no fix": backbone BN frozen as mmdet does for conv backbones
# (statistics and affine parameters fixed, stage 1 frozen) and the hard-tanh
# input gradient. The paper reports that the loss diverges (NaN).
_base_ = './adder-fcos_adder-r50-hardtanh_adder-fpn_gn-head_1x_coco.py'

model = dict(
    backbone=dict(
        frozen_stages=1,
        norm_cfg=dict(type='BN', requires_grad=False),
        norm_eval=True))
