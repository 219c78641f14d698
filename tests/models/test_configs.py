"""Every config in configs/ builds its detector and runs loss and predict."""
import pathlib

import pytest
import torch
from mmengine.config import Config
from mmengine.utils import import_modules_from_strings

from adder_det.ops import Adder2d
from mmdet.registry import MODELS
from mmdet.utils import register_all_modules

from .detector_cfgs import run_loss_and_predict

register_all_modules()
ROOT = pathlib.Path(__file__).resolve().parents[2]
CONFIGS = sorted(p for p in (ROOT / 'configs').rglob('*.py')
                 if '_base_' not in p.parts)


def load(path):
    cfg = Config.fromfile(str(path))
    if cfg.get('custom_imports'):
        import_modules_from_strings(**cfg.custom_imports)
    return cfg


def test_configs_exist():
    names = {p.name for p in CONFIGS}
    for required in ('fcos_r50_fpn_gn-head_1x_coco.py',
                     'fcos_r101_fpn_gn-head_2x_coco.py',
                     'adder-fcos_adder-r50_fpn_gn-head_1x_coco.py',
                     'adder-fcos_adder-r50_adder-rpafpn_gn-head_2x_coco.py',
                     'adder-fcos_adder-r50_adder-rpafpn_adder-head_1x_coco.py',
                     'adder-fcos_adder-r101_adder-rpafpn_gn-head_2x_coco.py',
                     'fcos_r50_fpn_gn-head_1x_voc0712.py',
                     'adder-fcos_adder-r50_adder-rpafpn_gn-head_1x_voc0712.py'):
        assert required in names, required


@pytest.mark.parametrize('path', CONFIGS,
                         ids=[str(p.relative_to(ROOT)) for p in CONFIGS])
def test_config_builds_and_runs(path):
    cfg = load(path)
    model_cfg = cfg.model
    model_cfg.backbone.init_cfg = None  # no ImageNet checkpoint in tests
    model = MODELS.build(model_cfg)
    model.init_weights()
    adders = [m for m in model.modules() if isinstance(m, Adder2d)]
    is_adder = 'adder' in path.name
    assert bool(adders) == is_adder
    if is_adder:
        # The recipe: unfrozen BN, and clipping dropped (see the configs).
        assert cfg.optim_wrapper.get('clip_grad') is None
        if 'frozen-bn' not in path.name:
            assert cfg.model.backbone.norm_eval is False
        expected = 'hardtanh' if 'hardtanh' in path.name else 'sign'
        assert {m.input_grad for m in adders} == {expected}
        assert cfg.param_scheduler[-1].type == 'CosineAnnealingLR'
    # No bias straight before a BatchNorm (it subtracts it exactly); the
    # adder head's BN is one a level (LevelNorms.norms).
    for name, m in model.named_modules():
        if getattr(m, 'with_norm', False):
            norm = m.norm.norms[0] if hasattr(m.norm, 'norms') else m.norm
            if isinstance(norm, torch.nn.modules.batchnorm._BatchNorm):
                assert m.conv.bias is None, f'{name}: conv bias before BN'
    losses, preds = run_loss_and_predict(
        model, size=64, num_classes=model_cfg.bbox_head.num_classes)
    assert all(torch.isfinite(v).all() for v in losses.values())
    assert len(preds) == 2
