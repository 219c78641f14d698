# Adder FCOS (adder R-50 backbone and adder R-PAFPN neck) on PASCAL VOC
# 07+12 -> VOC2007 test at 1000x600 (Table 6: 76.5 mAP@0.5), with the
# adder recipe of the COCO configs (see adder-fcos_adder-r50_fpn_gn-head_1x_coco.py)
# and the VOC data settings of ../fcos/fcos_r50_fpn_gn-head_1x_voc0712.py.
_base_ = '../fcos/fcos_r50_fpn_gn-head_1x_voc0712.py'

custom_imports = dict(imports=['adder_det.models', 'adder_det.engine'],
                      allow_failed_imports=False)
# Eta scaling after the gradient all-reduce (docs/models.md).
custom_hooks = [dict(type='DeferredEtaHook')]

adder = dict(type='Adder', input_grad='sign', eta=0.2)
model = dict(
    backbone=dict(
        _delete_=True,
        type='AdderResNet',
        depth=50,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        frozen_stages=-1,
        conv_cfg=adder,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=False,
        style='pytorch',
        init_cfg=dict(type='Pretrained',
                      checkpoint='checkpoints/adder_r50_imagenet.pth')),
    neck=dict(
        _delete_=True,
        type='AdderFPN',
        fusion='rpafpn',
        shortcut=True,
        in_channels=[256, 512, 1024, 2048],
        out_channels=256,
        start_level=1,
        add_extra_convs='on_output',
        num_outs=5,
        relu_before_extra_convs=True,
        conv_cfg=adder,
        norm_cfg=dict(type='BN', requires_grad=True)))

optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.04, momentum=0.9, weight_decay=1e-4),
    clip_grad=None)
param_scheduler = [
    dict(type='LinearLR', start_factor=1.0 / 3, by_epoch=False, begin=0,
         end=500),
    dict(type='CosineAnnealingLR', T_max=12, eta_min=0., begin=0, end=12,
         by_epoch=True, convert_to_iter_based=True),
]
