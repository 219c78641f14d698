# The main job's model: a small Adder FCOS (adder ResNet-18 at a quarter of
# the width, adder R-PAFPN with shortcuts, 64-channel conv FCOS head) trained
# from scratch on the built-in synthetic shapes (tools/make_dataset.py: 256x256
# images, read at 160x160), COCO layout and CocoMetric. CPU-sized: batch 8,
# 20 epochs, AdamW (docs/models.md, "Small models on CPU").
_base_ = 'mmdet::_base_/default_runtime.py'

custom_imports = dict(
    imports=['adder_det.models', 'adder_det.engine', 'adder_det.datasets.checked'],
    allow_failed_imports=False)

data_root = 'data/synthetic/'
classes = ('circle', 'square', 'triangle')
metainfo = dict(classes=classes,
                palette=[(220, 20, 60), (0, 128, 255), (255, 200, 0)])
adder = dict(type='Adder', input_grad='sign', eta=0.2)

model = dict(
    type='FCOS',
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_size_divisor=32),
    backbone=dict(
        type='AdderResNet',
        depth=18,
        base_channels=16,
        out_indices=(1, 2, 3),
        frozen_stages=-1,
        conv_cfg=adder,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=False,
        init_cfg=None),
    neck=dict(
        type='AdderFPN',
        fusion='rpafpn',
        shortcut=True,
        in_channels=[32, 64, 128],
        out_channels=64,
        start_level=0,
        add_extra_convs='on_output',
        num_outs=5,
        relu_before_extra_convs=True,
        conv_cfg=adder,
        norm_cfg=dict(type='BN', requires_grad=True)),
    bbox_head=dict(
        type='FCOSHead',
        num_classes=len(classes),
        in_channels=64,
        stacked_convs=2,
        feat_channels=64,
        strides=[8, 16, 32, 64, 128],
        norm_cfg=dict(type='GN', num_groups=16, requires_grad=True),
        norm_on_bbox=True,
        centerness_on_reg=True,
        center_sampling=True,
        conv_bias=True,
        loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0,
                      alpha=0.25, loss_weight=1.0),
        loss_bbox=dict(type='GIoULoss', loss_weight=1.0),
        loss_centerness=dict(type='CrossEntropyLoss', use_sigmoid=True,
                             loss_weight=1.0)),
    test_cfg=dict(nms_pre=1000, min_bbox_size=0, score_thr=0.05,
                  nms=dict(type='nms', iou_threshold=0.6), max_per_img=100))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(160, 160), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(160, 160), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                    'scale_factor')),
]
train_dataloader = dict(
    batch_size=8,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    batch_sampler=dict(type='AspectRatioBatchSampler'),
    dataset=dict(
        type='CheckedCocoDataset',
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='JPEGImages/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=4),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='CheckedCocoDataset',
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_val.json',
        data_prefix=dict(img='JPEGImages/'),
        test_mode=True,
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='CocoMetric',
                     ann_file=data_root + 'annotations/instances_val.json',
                     metric='bbox', format_only=False)
test_evaluator = val_evaluator

max_epochs = 20
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs,
                 val_interval=max_epochs)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

# The CPU recipe (docs/models.md, "Small models on CPU"): AdamW, which
# trains these small from-scratch detectors much faster than the papers' SGD,
# with adder filters at 100x the learning rate (Adam steps every element by
# about lr; adder filters live at unit scale, conv filters at Kaiming scale;
# 10x / 30x / 60x / 100x measured 0.394 / 0.469 / 0.478 / 0.568 mAP@0.5 in
# 12 epochs at 256x256). Steps matter most for the adder model: at 160x160
# a step costs half as much, so 20 epochs fit where 12 did at 256x256. The
# conv twin inherits exactly this (it has no adder filters).
optim_wrapper = dict(
    type='OptimWrapper',
    constructor='AdderOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=0.002, weight_decay=0.05),
    paramwise_cfg=dict(bias_lr_mult=2., bias_decay_mult=0.,
                       norm_decay_mult=0., adder_lr_mult=100.),
    clip_grad=None)  # see docs/models.md: the adaptive eta scaling
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0,
         end=100),
    dict(type='CosineAnnealingLR', T_max=max_epochs, eta_min=0., begin=0,
         end=max_epochs, by_epoch=True, convert_to_iter_based=True),
]
auto_scale_lr = dict(enable=False, base_batch_size=8)

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=2))
# Exact resume: the RNG states travel with the checkpoint. Eta scaling after
# the gradient all-reduce, so N processes step like one (docs/models.md).
custom_hooks = [dict(type='RNGStateHook'), dict(type='DeferredEtaHook')]
