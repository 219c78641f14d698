"""Per-parameter learning rates for adder filters.

Adam-type optimizers normalize every element's step to about ``lr``, so
they ignore the papers' eta scaling, and a step of ``lr`` is a small change
for adder filters, which live at the unit scale of the batch-normalized
inputs they are compared with (drawn from N(0, 1)), but a large one for
Kaiming-initialized conv filters (std sqrt(2 / fan_in), about 0.06-0.12 in
the small models). ``paramwise_cfg=dict(adder_lr_mult=..., adder_decay_mult=...)``
scales the learning rate and weight decay of every ``Adder2d`` filter
(not its bias or AWN gain) on top of mmengine's other paramwise rules.
"""
from typing import List

from mmengine.optim import DefaultOptimWrapperConstructor
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS
from torch import nn

from adder_det.ops import Adder2d


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class AdderOptimWrapperConstructor(DefaultOptimWrapperConstructor):

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg=None):
        paramwise_cfg = dict(paramwise_cfg or {})
        self.adder_lr_mult = float(paramwise_cfg.pop('adder_lr_mult', 1.0))
        self.adder_decay_mult = float(
            paramwise_cfg.pop('adder_decay_mult', 1.0))
        super().__init__(optim_wrapper_cfg, paramwise_cfg)
        if self.adder_decay_mult != 1.0 and self.base_wd is None:
            raise ValueError('AdderOptimWrapperConstructor: adder_decay_mult '
                             'needs the optimizer to set weight_decay')

    def __call__(self, model: nn.Module):
        if not self.paramwise_cfg:
            # mmengine passes model.parameters() unless paramwise rules
            # exist; make sure add_params runs.
            self.paramwise_cfg = {'bypass_duplicate': False}
        return super().__call__(model)

    def add_params(self, params: List[dict], module: nn.Module,
                   prefix: str = '', is_dcn_module=None) -> None:
        if not isinstance(module, Adder2d):
            return super().add_params(params, module, prefix, is_dcn_module)
        groups: List[dict] = []
        super().add_params(groups, module, prefix, is_dcn_module)
        for group in groups:
            if group['params'][0] is module.weight:
                group['lr'] = group.get('lr', self.base_lr) * self.adder_lr_mult
                if self.base_wd is not None:
                    group['weight_decay'] = group.get(
                        'weight_decay', self.base_wd) * self.adder_decay_mult
        params.extend(groups)
