# Frozen backbone BN with the sign input gradient: isolates the BN fix.
_base_ = './adder-fcos_adder-r50_adder-fpn_gn-head_1x_coco.py'

model = dict(
    backbone=dict(
        frozen_stages=1,
        norm_cfg=dict(type='BN', requires_grad=False),
        norm_eval=True))
