# The paper's conv baseline (Table 5: FCOS R-50, 12 epochs, 38.4 AP).
# COCO train2017 -> val2017 at 1333x800, flip only, 8 GPUs x 4 images,
# SGD momentum 0.9, weight decay 1e-4, step schedule, gradient clip 35.
_base_ = [
    '../_base_/models/fcos_r50_fpn_gn-head.py',
    'mmdet::_base_/datasets/coco_detection.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
]

train_dataloader = dict(batch_size=4, num_workers=4)

param_scheduler = [
    dict(type='LinearLR', start_factor=1.0 / 3, by_epoch=False, begin=0,
         end=500),
    dict(type='MultiStepLR', begin=0, end=12, by_epoch=True,
         milestones=[8, 11], gamma=0.1),
]

optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=1e-4),
    paramwise_cfg=dict(bias_lr_mult=2., bias_decay_mult=0.),
    clip_grad=dict(max_norm=35, norm_type=2))

# lr 0.02 is for 32 images a step (8 GPUs x 4); --auto-scale-lr rescales.
auto_scale_lr = dict(enable=False, base_batch_size=32)
