# Table 1 row "+ unfrozen BN": unfrozen BN but AdderNet's hard-tanh input
# gradient (the classification rule) in every adder layer.
_base_ = './adder-fcos_adder-r50_adder-fpn_gn-head_1x_coco.py'

adder = dict(type='Adder', input_grad='hardtanh', eta=0.2)
model = dict(backbone=dict(conv_cfg=adder), neck=dict(conv_cfg=adder))
