"""AdderFCOSHead: FCOS with adder cls/reg towers (the paper's B+N+H)."""
import copy

from mmdet.models.dense_heads import FCOSHead
from mmdet.registry import MODELS

from ..layers import LevelNorms, is_adder_cfg


@MODELS.register_module()
class AdderFCOSHead(FCOSHead):
    """mmdet's FCOSHead whose stacked cls/reg convs are adder convs + BN.

    The final predictors (``conv_cls``, ``conv_reg``, ``conv_centerness``)
    stay convolutions, like AdderNet's classifier: they produce the logits
    and distances directly and carry the prior-probability bias init.
    Defaults: ``conv_cfg=dict(type='Adder', input_grad='sign')`` and BN
    after each tower conv (an adder output must be normalized; GN works as
    well through ``norm_cfg``). With ``norm_per_level=True`` (the default)
    every tower norm is kept once per pyramid level while the adder filters
    stay shared (``LevelNorms``): one BN shared by all levels keeps running
    statistics that fit none of them at inference.
    """

    def __init__(self, *args, conv_cfg=dict(type='Adder', input_grad='sign'),
                 norm_cfg=dict(type='BN', requires_grad=True),
                 norm_per_level=True, **kwargs):
        if not is_adder_cfg(conv_cfg):
            raise ValueError(f'AdderFCOSHead needs an adder conv_cfg, got '
                             f'{conv_cfg!r}; use FCOSHead for a conv head')
        if norm_cfg is None:
            raise ValueError('AdderFCOSHead needs a norm_cfg: adder outputs '
                             'are all negative and grow with fan-in')
        super().__init__(*args, conv_cfg=copy.deepcopy(conv_cfg),
                         norm_cfg=copy.deepcopy(norm_cfg), **kwargs)
        self.norm_per_level = norm_per_level
        self._level_norms = []
        if norm_per_level:
            for tower in (self.cls_convs, self.reg_convs):
                for m in tower:
                    norms = LevelNorms(m.norm, len(self.strides))
                    setattr(m, m.norm_name, norms)
                    self._level_norms.append(norms)

    def forward(self, x):
        """FCOSHead's forward, level by level, telling the tower norms
        which level runs."""
        if not self.norm_per_level:
            return super().forward(x)
        if len(x) != len(self.strides):
            raise ValueError(f'AdderFCOSHead: {len(x)} feature levels for '
                             f'{len(self.strides)} strides {self.strides}')
        outs = []
        for level, (feat, scale, stride) in enumerate(
                zip(x, self.scales, self.strides)):
            for norms in self._level_norms:
                norms.level = level
            outs.append(self.forward_single(feat, scale, stride))
        return tuple(map(list, zip(*outs)))
