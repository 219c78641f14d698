# Table 4 row "FPN" (all-adder backbone and neck, top-down fusion only, no
# shortcuts) and the base of the Table 1 ablations ("+ L1 gradient" row:
# unfrozen BN, sign input gradient). Everything else as the B+N recipe.
_base_ = '../adder-fcos_adder-r50_adder-rpafpn_gn-head_1x_coco.py'

model = dict(neck=dict(fusion='fpn', shortcut=False))
