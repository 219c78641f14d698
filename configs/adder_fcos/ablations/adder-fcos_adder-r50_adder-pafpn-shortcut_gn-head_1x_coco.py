# Table 4 row "PAFPN with shortcuts": a residual shortcut around every 3x3
# adder conv of the neck. (Row "R-PAFPN" is
# ../adder-fcos_adder-r50_adder-rpafpn_gn-head_1x_coco.py.)
_base_ = '../adder-fcos_adder-r50_adder-rpafpn_gn-head_1x_coco.py'

model = dict(neck=dict(fusion='pafpn', shortcut=True))
