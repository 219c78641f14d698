"""Small FCOS detector configs for tests (widths shrunk to run in seconds)."""
import copy

import torch
from mmengine.config import ConfigDict

NUM_CLASSES = 4


def small_fcos(backbone_type='AdderResNet', neck=None, head_type='FCOSHead',
               depth=18, base_channels=8, width=16):
    stage_channels = [base_channels * 2**i * (1 if depth < 50 else 4)
                      for i in range(4)]
    neck = dict(type='AdderFPN', fusion='rpafpn', shortcut=True) \
        if neck is None else copy.deepcopy(neck)
    neck.update(in_channels=stage_channels[1:], out_channels=width,
                start_level=0, add_extra_convs='on_output', num_outs=5)
    head = dict(
        type=head_type, num_classes=NUM_CLASSES, in_channels=width,
        stacked_convs=2, feat_channels=width, strides=[8, 16, 32, 64, 128],
        loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0,
                      alpha=0.25, loss_weight=1.0),
        loss_bbox=dict(type='IoULoss', loss_weight=1.0),
        loss_centerness=dict(type='CrossEntropyLoss', use_sigmoid=True,
                             loss_weight=1.0))
    if head_type == 'FCOSHead':
        head['norm_cfg'] = dict(type='GN', num_groups=4, requires_grad=True)
    return ConfigDict(
        type='FCOS',
        data_preprocessor=dict(type='DetDataPreprocessor',
                               mean=[102.98, 115.95, 122.68],
                               std=[58.4, 57.1, 57.4], bgr_to_rgb=True,
                               pad_size_divisor=32),
        backbone=dict(type=backbone_type, depth=depth,
                      base_channels=base_channels, out_indices=(1, 2, 3)),
        neck=neck,
        bbox_head=head,
        test_cfg=dict(nms_pre=100, min_bbox_size=0, score_thr=0.0,
                      nms=dict(type='nms', iou_threshold=0.5),
                      max_per_img=20))


def run_loss_and_predict(model, batch=2, size=96, num_classes=NUM_CLASSES):
    """One loss (with backward) and one predict on mmdet's demo inputs."""
    from mmdet.testing import demo_mm_inputs
    torch.manual_seed(0)
    # demo_mm_inputs cannot draw labels for a single class; fold them.
    packed = demo_mm_inputs(batch, [[3, size, size], [3, size - 3, size + 5]],
                            num_classes=max(num_classes, 2), num_items=[3, 2])
    for sample in packed['data_samples']:
        sample.gt_instances.labels %= num_classes
    model.train()
    data = model.data_preprocessor(packed, True)
    losses = model.forward(**data, mode='loss')
    total = sum(v for k, v in losses.items() if 'loss' in k)
    total.backward()
    model.eval()
    with torch.no_grad():
        data = model.data_preprocessor(packed, False)
        preds = model.forward(**data, mode='predict')
    return losses, preds
