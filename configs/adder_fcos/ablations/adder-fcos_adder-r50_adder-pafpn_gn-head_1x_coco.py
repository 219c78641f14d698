# Table 4 row "PAFPN": top-down then bottom-up fusion, no shortcuts.
_base_ = '../adder-fcos_adder-r50_adder-rpafpn_gn-head_1x_coco.py'

model = dict(neck=dict(fusion='pafpn', shortcut=False))
