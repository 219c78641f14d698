# The main job's model on the VOC layout of the same synthetic set, with
# VOCMetric (area-based AP, as for VOC2010+; the folder is not named
# VOC2007, so the mode is given explicitly).
_base_ = './adder-fcos_adder-r18-quarter_adder-rpafpn_20e_synthetic-coco.py'

voc = dict(
    type='CheckedVOCDataset',
    data_root={{_base_.data_root}},
    metainfo={{_base_.metainfo}},
    data_prefix=dict(sub_data_root=''))
train_dataloader = dict(
    dataset=dict(_delete_=True, ann_file='ImageSets/Main/train.txt',
                 filter_cfg=dict(filter_empty_gt=True, min_size=4),
                 pipeline={{_base_.train_pipeline}}, **voc))
val_dataloader = dict(
    dataset=dict(_delete_=True, ann_file='ImageSets/Main/val.txt',
                 test_mode=True, pipeline={{_base_.test_pipeline}}, **voc))
test_dataloader = val_dataloader
val_evaluator = dict(_delete_=True, type='VOCMetric', metric='mAP',
                     eval_mode='area')
test_evaluator = val_evaluator
