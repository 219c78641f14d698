# Adder FCOS (B+N+H), 24 epochs.
_base_ = './adder-fcos_adder-r50_adder-rpafpn_adder-head_1x_coco.py'

train_cfg = dict(max_epochs=24)
param_scheduler = [
    dict(type='LinearLR', start_factor=1.0 / 3, by_epoch=False, begin=0,
         end=500),
    dict(type='CosineAnnealingLR', T_max=24, eta_min=0., begin=0, end=24,
         by_epoch=True, convert_to_iter_based=True),
]
