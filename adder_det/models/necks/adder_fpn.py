"""AdderFPN: one neck for the detection paper's Table 4 (FPN, PAFPN, PAFPN
with shortcuts, R-PAFPN), adder convs + BN by default.

Wiring for levels i = 0 (finest) .. n-1, lateral 1x1 convs L_i = lat_i(C_i),
``down_i`` a 3x3 stride-2 conv, ``bu_i`` / ``out_i`` 3x3 convs, ``up`` the
nearest upsampling of mmdet's FPN::

    fusion='fpn'     T_{n-1} = L_{n-1};  T_i = L_i + up(T_{i+1})
                     O_i = out_i(T_i)                               (mmdet FPN)
    fusion='pafpn'   top-down as 'fpn' giving P_i = out_i(T_i), then
                     N_0 = P_0;  N_i = bu_i(P_i + down_i(N_{i-1}))  (PAFPN)
                     O_i = N_i
    fusion='rpafpn'  bottom-up first, on the laterals:
                     B_0 = L_0;  B_i = bu_i(L_i + down_i(B_{i-1}))
                     then top-down on those:
                     T_{n-1} = B_{n-1};  T_i = B_i + up(T_{i+1})
                     O_i = out_i(T_i)

         C3 ─lat─ L0 ──────────── B0 ──────────(+)─ T0 ─out─ O0
                        │down                   ↑up
         C4 ─lat─ L1 ─(+)─bu─ B1 ──────────────(+)─ T1 ─out─ O1
                        │down                   ↑up
         C5 ─lat─ L2 ─(+)─bu─ B2 ──────────────────── T2 ─out─ O2
                                               (R-PAFPN, 3 levels)

``shortcut=True`` puts a residual shortcut around every 3x3 conv of the
neck: ``y = s(x) + conv(x)`` with ``s`` the identity for stride 1 and a
stride-2 subsampling (max-pool, kernel 1) for the stride-2 convs. The one
3x3 conv that changes the channel count (the first extra conv with
``add_extra_convs='on_input'``) has no identity to add and gets none.
The shortcuts keep information flowing past adder layers whose inputs are
mostly zeros (over 92% in an adder ResNet-50's last stage, PAPERS.md 3.5).

Extra levels (``num_outs`` > backbone levels) follow mmdet's FPN: max-pool,
or 3x3 stride-2 convs ``on_input`` / ``on_lateral`` / ``on_output``.
"""
import copy
from typing import List, Tuple

import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmdet.models.necks import FPN
from mmdet.registry import MODELS
from torch import Tensor, nn

FUSIONS = ('fpn', 'pafpn', 'rpafpn')


class Shortcut(nn.Module):
    """``s(x) + conv(x)``: identity, or stride-s subsampling, plus the conv."""

    def __init__(self, conv: ConvModule, stride: int = 1):
        super().__init__()
        self.conv = conv
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.stride == 1 else F.max_pool2d(x, 1, self.stride)
        return identity + self.conv(x)


@MODELS.register_module()
class AdderFPN(FPN):
    """FPN / PAFPN / R-PAFPN with optional shortcuts; see the module doc.

    Args: those of mmdet's ``FPN`` plus
        fusion (str): 'fpn', 'pafpn' or 'rpafpn' (default, the paper's best).
        shortcut (bool): residual shortcut around every 3x3 conv.
    ``conv_cfg`` defaults to ``dict(type='Adder', input_grad='sign')`` and
    ``norm_cfg`` to BN; ``conv_cfg=None`` gives the conv ablation.
    """

    def __init__(self,
                 in_channels: List[int],
                 out_channels: int,
                 num_outs: int,
                 fusion: str = 'rpafpn',
                 shortcut: bool = True,
                 conv_cfg=dict(type='Adder', input_grad='sign'),
                 norm_cfg=dict(type='BN', requires_grad=True),
                 **kwargs):
        if fusion not in FUSIONS:
            raise ValueError(f'AdderFPN: fusion must be one of {FUSIONS}, '
                             f'got {fusion!r}')
        super().__init__(in_channels, out_channels, num_outs,
                         conv_cfg=copy.deepcopy(conv_cfg),
                         norm_cfg=copy.deepcopy(norm_cfg), **kwargs)
        self.fusion = fusion
        self.shortcut = shortcut
        act_cfg = kwargs.get('act_cfg')

        def conv3x3(stride):
            return ConvModule(out_channels, out_channels, 3, stride=stride,
                              padding=1, conv_cfg=conv_cfg, norm_cfg=norm_cfg,
                              act_cfg=act_cfg, inplace=False)

        levels = self.backbone_end_level - self.start_level
        if fusion != 'fpn':
            self.downsample_convs = nn.ModuleList(
                conv3x3(2) for _ in range(levels - 1))
            self.bottom_up_convs = nn.ModuleList(
                conv3x3(1) for _ in range(levels - 1))
        if shortcut:
            self._add_shortcuts(levels)

    def _add_shortcuts(self, levels: int):
        def wrap(conv):
            if conv.conv.in_channels != conv.conv.out_channels:
                return conv  # no identity to add (extra conv 'on_input')
            return Shortcut(conv, conv.conv.stride[0])

        self.fpn_convs = nn.ModuleList(wrap(c) for c in self.fpn_convs)
        if self.fusion != 'fpn':
            self.downsample_convs = nn.ModuleList(
                wrap(c) for c in self.downsample_convs)
            self.bottom_up_convs = nn.ModuleList(
                wrap(c) for c in self.bottom_up_convs)

    def _top_down(self, feats: List[Tensor]) -> List[Tensor]:
        feats = list(feats)
        for i in range(len(feats) - 1, 0, -1):
            if 'scale_factor' in self.upsample_cfg:
                up = F.interpolate(feats[i], **self.upsample_cfg)
            else:
                up = F.interpolate(feats[i], size=feats[i - 1].shape[2:],
                                   **self.upsample_cfg)
            feats[i - 1] = feats[i - 1] + up
        return feats

    def _bottom_up(self, feats: List[Tensor]) -> List[Tensor]:
        outs = [feats[0]]
        for i in range(1, len(feats)):
            down = self.downsample_convs[i - 1](outs[-1])
            outs.append(self.bottom_up_convs[i - 1](feats[i] + down))
        return outs

    def forward(self, inputs: Tuple[Tensor]) -> tuple:
        if len(inputs) != len(self.in_channels):
            raise ValueError(f'AdderFPN: got {len(inputs)} input levels, '
                             f'expected {len(self.in_channels)}')
        laterals = [
            lateral_conv(inputs[i + self.start_level])
            for i, lateral_conv in enumerate(self.lateral_convs)
        ]
        levels = len(laterals)
        if self.fusion == 'rpafpn':
            feats = self._top_down(self._bottom_up(laterals))
            outs = [self.fpn_convs[i](feats[i]) for i in range(levels)]
        else:
            feats = self._top_down(laterals)
            outs = [self.fpn_convs[i](feats[i]) for i in range(levels)]
            if self.fusion == 'pafpn':
                outs = self._bottom_up(outs)
        return tuple(outs + self._extra_levels(inputs, laterals, outs))

    def _extra_levels(self, inputs, laterals, outs) -> List[Tensor]:
        """Levels past the backbone's, as mmdet's FPN makes them."""
        levels = len(outs)
        extra = []
        if self.num_outs <= levels:
            return extra
        if not self.add_extra_convs:
            last = outs[-1]
            for _ in range(self.num_outs - levels):
                last = F.max_pool2d(last, 1, stride=2)
                extra.append(last)
            return extra
        source = dict(on_input=inputs[self.backbone_end_level - 1],
                      on_lateral=laterals[-1],
                      on_output=outs[-1])[self.add_extra_convs]
        extra.append(self.fpn_convs[levels](source))
        for i in range(levels + 1, self.num_outs):
            x = F.relu(extra[-1]) if self.relu_before_extra_convs else \
                extra[-1]
            extra.append(self.fpn_convs[i](x))
        return extra
