# The conv twin of the main job's model: same widths, data, schedule and
# optimizer (no gradient clip either), conv ResNet-18 (BN live, like the
# adder one) and a conv R-PAFPN with the same shortcuts.
_base_ = './adder-fcos_adder-r18-quarter_adder-rpafpn_20e_synthetic-coco.py'

model = dict(
    backbone=dict(type='ResNet', conv_cfg=None),
    neck=dict(conv_cfg=None))
