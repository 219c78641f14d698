# The main job's model with adaptive weight normalization (AWN, per output
# filter, gain starting at 1) in every adder layer of the backbone and the
# neck, reached through conv_cfg. tools/export.py folds it for deployment.
_base_ = './adder-fcos_adder-r18-quarter_adder-rpafpn_20e_synthetic-coco.py'

adder_awn = dict(type='Adder', input_grad='sign', eta=0.2,
                 weight_norm=dict(type='AWN', per='filter'))
model = dict(backbone=dict(conv_cfg=adder_awn), neck=dict(conv_cfg=adder_awn))
