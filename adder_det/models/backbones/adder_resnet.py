"""AdderResNet: mmdet's ResNet with adder convs in every residual stage."""
import copy

from mmdet.models.backbones import ResNet
from mmdet.registry import MODELS

from ..layers import is_adder_cfg

#: The detection paper's input-gradient rule (PAPERS.md section 3, step 2).
DEFAULT_ADDER_CFG = dict(type='Adder', input_grad='sign')


@MODELS.register_module()
class AdderResNet(ResNet):
    """ResNet whose 3x3, 1x1 and downsample convs are adder convs + BN.

    Everything is mmdet's ResNet driven by ``conv_cfg``; two things differ:

    * the stem (7x7 conv, or the deep stem) stays multiplicative, as in
      AdderNet (the first layer of the network stays a conv);
    * ``norm_eval`` defaults to False: the detection paper's first fix is
      that backbone BN statistics must keep updating (frozen BN diverges).

    ``conv_cfg`` may override the adder options, e.g.
    ``dict(type='Adder', input_grad='hardtanh', eta=None)``.
    """

    def __init__(self, depth, conv_cfg=DEFAULT_ADDER_CFG, norm_eval=False,
                 **kwargs):
        if not is_adder_cfg(conv_cfg):
            raise ValueError(f'AdderResNet needs an adder conv_cfg, got '
                             f'{conv_cfg!r}; use ResNet for a conv backbone')
        super().__init__(depth, conv_cfg=copy.deepcopy(conv_cfg),
                         norm_eval=norm_eval, **kwargs)

    def _make_stem_layer(self, in_channels, stem_channels):
        adder_cfg, self.conv_cfg = self.conv_cfg, None
        try:
            super()._make_stem_layer(in_channels, stem_channels)
        finally:
            self.conv_cfg = adder_cfg
