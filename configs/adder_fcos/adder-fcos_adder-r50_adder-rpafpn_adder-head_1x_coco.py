# Adder FCOS (B+N+H): the cls/reg towers of the head are adder convs + BN too
# (the final predictors stay conv). The paper reports it costs accuracy.
# conv_bias 'auto' (none before a norm): the base's conv_bias=True suits its
# GN towers, but BN subtracts a per-channel bias exactly.
_base_ = './adder-fcos_adder-r50_adder-rpafpn_gn-head_1x_coco.py'

model = dict(
    bbox_head=dict(
        type='AdderFCOSHead',
        conv_cfg=dict(type='Adder', input_grad='sign', eta=0.2),
        norm_cfg=dict(_delete_=True, type='BN', requires_grad=True),
        conv_bias='auto'))
