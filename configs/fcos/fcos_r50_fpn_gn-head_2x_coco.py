# Conv FCOS R-50, 24 epochs (Table 5: 39.0 AP).
_base_ = './fcos_r50_fpn_gn-head_1x_coco.py'

train_cfg = dict(max_epochs=24)
param_scheduler = [
    dict(type='LinearLR', start_factor=1.0 / 3, by_epoch=False, begin=0,
         end=500),
    dict(type='MultiStepLR', begin=0, end=24, by_epoch=True,
         milestones=[16, 22], gamma=0.1),
]
