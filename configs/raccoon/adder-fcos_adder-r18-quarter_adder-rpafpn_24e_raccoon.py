# The small Adder FCOS of the main job on the real raccoon photos
# (../shared/datasets/raccoon: PASCAL VOC layout, one class, 160 train / 40
# val, three grayscale JPEGs), trained from scratch at up to 320x320, with
# VOCMetric (area mode: the folder is not named VOC2007).
_base_ = '../synthetic/adder-fcos_adder-r18-quarter_adder-rpafpn_20e_synthetic-coco.py'

data_root = '../shared/datasets/raccoon/'
metainfo = dict(classes=('raccoon', ), palette=[(220, 20, 60)])

model = dict(bbox_head=dict(num_classes=1))

train_pipeline = [
    dict(type='LoadImageFromFile'),  # grayscale files load as 3 channels
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(320, 320), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(320, 320), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                    'scale_factor')),
]
voc = dict(type='CheckedVOCDataset', data_root=data_root, metainfo=metainfo,
           data_prefix=dict(sub_data_root=''))
train_dataloader = dict(
    dataset=dict(_delete_=True, ann_file='ImageSets/Main/train.txt',
                 filter_cfg=dict(filter_empty_gt=True, min_size=4),
                 pipeline=train_pipeline, **voc))
val_dataloader = dict(
    dataset=dict(_delete_=True, ann_file='ImageSets/Main/val.txt',
                 test_mode=True, pipeline=test_pipeline, **voc))
test_dataloader = val_dataloader
val_evaluator = dict(_delete_=True, type='VOCMetric', metric='mAP',
                     eval_mode='area')
test_evaluator = val_evaluator

max_epochs = 24
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0,
         end=100),
    dict(type='CosineAnnealingLR', T_max=max_epochs, eta_min=0., begin=0,
         end=max_epochs, by_epoch=True, convert_to_iter_based=True),
]
