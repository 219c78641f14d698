# Adder FCOS (B+N): adder backbone and the adder R-PAFPN neck with
# shortcuts, conv GN head: the paper's best model (Table 5: 36.5 AP at 12
# epochs; Table 4 row R-PAFPN).
_base_ = './adder-fcos_adder-r50_fpn_gn-head_1x_coco.py'

model = dict(
    neck=dict(
        _delete_=True,
        type='AdderFPN',
        fusion='rpafpn',
        shortcut=True,
        in_channels=[256, 512, 1024, 2048],
        out_channels=256,
        start_level=1,
        add_extra_convs='on_output',
        num_outs=5,
        relu_before_extra_convs=True,
        conv_cfg=dict(type='Adder', input_grad='sign', eta=0.2),
        norm_cfg=dict(type='BN', requires_grad=True)))
