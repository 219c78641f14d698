"""AdderFCOSHead: FCOS with adder cls/reg towers (the paper's B+N+H)."""
import copy

from mmdet.models.dense_heads import FCOSHead
from mmdet.registry import MODELS


@MODELS.register_module()
class AdderFCOSHead(FCOSHead):
    """mmdet's FCOSHead whose stacked cls/reg convs are adder convs + BN.

    The final predictors (``conv_cls``, ``conv_reg``, ``conv_centerness``)
    stay convolutions, like AdderNet's classifier: they produce the logits
    and distances directly and carry the prior-probability bias init.
    Defaults: ``conv_cfg=dict(type='Adder', input_grad='sign')`` and BN
    after each tower conv (an adder output must be normalized; GN works as
    well through ``norm_cfg``).
    """

    def __init__(self, *args, conv_cfg=dict(type='Adder', input_grad='sign'),
                 norm_cfg=dict(type='BN', requires_grad=True), **kwargs):
        if conv_cfg is None or conv_cfg.get('type') not in ('Adder',
                                                             'Adder2d'):
            raise ValueError(f'AdderFCOSHead needs an adder conv_cfg, got '
                             f'{conv_cfg!r}; use FCOSHead for a conv head')
        if norm_cfg is None:
            raise ValueError('AdderFCOSHead needs a norm_cfg: adder outputs '
                             'are all negative and grow with fan-in')
        super().__init__(*args, conv_cfg=copy.deepcopy(conv_cfg),
                         norm_cfg=copy.deepcopy(norm_cfg), **kwargs)
