# The conv twin of the raccoon Adder FCOS: same widths, data, schedule.
_base_ = './adder-fcos_adder-r18-quarter_adder-rpafpn_24e_raccoon.py'

model = dict(
    backbone=dict(type='ResNet', conv_cfg=None),
    neck=dict(conv_cfg=None))
