# Adder FCOS (B): adder ResNet-50 backbone, conv FPN and conv GN head
# (Table 5: 37.2 AP at 12 epochs).
#
# The paper's recipe (PAPERS.md section 3), on top of the conv baseline:
# 1. backbone BN statistics not frozen (norm_eval=False, and no frozen
#    stage, since freezing stage 1 would freeze its BN statistics too);
# 2. 'sign' input gradient (the L1 rule) in every adder layer;
# 3. the distilled AdderNet-50 ImageNet weights, converted with
#    tools/convert_addernet.py (stem stays conv);
# 4. cosine learning-rate decay and a larger learning rate: 0.04 for 32
#    images a step (2x the conv baseline's; the paper gives no number).
# Gradient clipping: the baseline clips the global gradient norm at 35, but
# the adaptive eta scaling makes every adder filter gradient's norm
# eta*sqrt(k) (hundreds), so a global clip would silently shrink every other
# gradient by a large factor. We drop the clip (clip_grad=None): the adder
# filter gradients are already norm-bounded by the scaling, and mmdet's FCOS
# with these head improvements trains without clipping too.
_base_ = '../fcos/fcos_r50_fpn_gn-head_1x_coco.py'

custom_imports = dict(imports=['adder_det.models', 'adder_det.engine'],
                      allow_failed_imports=False)
# Eta scaling after the gradient all-reduce (docs/models.md).
custom_hooks = [dict(type='DeferredEtaHook')]

model = dict(
    backbone=dict(
        _delete_=True,
        type='AdderResNet',
        depth=50,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        frozen_stages=-1,
        conv_cfg=dict(type='Adder', input_grad='sign', eta=0.2),
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=False,
        style='pytorch',
        init_cfg=dict(type='Pretrained',
                      checkpoint='checkpoints/adder_r50_imagenet.pth')))

optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.04, momentum=0.9, weight_decay=1e-4),
    clip_grad=None)

param_scheduler = [
    dict(type='LinearLR', start_factor=1.0 / 3, by_epoch=False, begin=0,
         end=500),
    dict(type='CosineAnnealingLR', T_max=12, eta_min=0., begin=0, end=12,
         by_epoch=True, convert_to_iter_based=True),
]
