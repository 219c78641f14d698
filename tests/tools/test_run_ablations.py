"""tools/run_ablations.py: every row's config builds and has its change."""
import pytest
import torch

from . import load_tool


@pytest.mark.parametrize('data', ['synthetic', 'raccoon'])
def test_rows_build_with_their_change(tmp_path, data):
    tool = load_tool('run_ablations')
    from adder_det.engine import setup_mmdet
    setup_mmdet()
    from mmdet.registry import MODELS
    from mmengine.config import Config

    from adder_det.ops import Adder2d
    models = {}
    for name in tool.ROWS:
        path = tool.write_config(data, name, 3, str(tmp_path / tool.slug(name)))
        cfg = Config.fromfile(path)
        assert cfg.train_cfg.max_epochs == 3
        models[name] = MODELS.build(cfg.model)

    def adders(module):
        return [m for m in module.modules() if isinstance(m, Adder2d)]

    m = models
    assert not adders(m['conv FCOS (conv twin)'])
    b = m['Adder FCOS B (adder backbone, conv R-PAFPN)']
    assert adders(b.backbone) and not adders(b.neck)
    bn = m['Adder FCOS B+N (adder R-PAFPN; the default)']
    assert adders(bn.neck) and not adders(bn.bbox_head)
    assert bn.neck.fusion == 'rpafpn' and bn.neck.shortcut
    bnh = m['Adder FCOS B+N+H (adder head towers)']
    assert adders(bnh.bbox_head)
    assert not any(isinstance(x, torch.nn.GroupNorm)
                   for x in bnh.bbox_head.modules())
    assert m['frozen backbone BN (norm_eval=True)'].backbone.norm_eval
    assert not bn.backbone.norm_eval
    assert all(a.input_grad == 'hardtanh'
               for a in adders(m['hardtanh input gradient']))
    assert all(a.input_grad == 'sign' for a in adders(bn))
    assert all(a.eta is None for a in adders(m['eta off']))
    assert all(a.awn_gain is not None for a in adders(m['AWN (per filter)']))
    for name, fusion, shortcut in (('neck FPN', 'fpn', False),
                                   ('neck PAFPN', 'pafpn', False),
                                   ('neck PAFPN + shortcuts', 'pafpn', True)):
        assert (m[name].neck.fusion, m[name].neck.shortcut) == (fusion,
                                                                shortcut)
    classes = 1 if data == 'raccoon' else 3
    assert all(x.bbox_head.num_classes == classes for x in m.values())


def test_seed_fixed_per_row_and_results_merged(tmp_path, monkeypatch):
    """--seed reaches every row's config; a later invocation keeps the rows
    of earlier ones with the same recipe in results.json, and drops those of
    another (other epochs) (training replaced by a stub log)."""
    import json
    import subprocess
    tool = load_tool('run_ablations')
    from mmengine.config import Config

    def fake_run(cmd, cwd, env, stdout, stderr):
        cfg = Config.fromfile(cmd[2])
        stdout.write(f'coco/bbox_mAP: 0.5000  coco/bbox_mAP_50: '
                     f'{cfg.randomness.seed / 100:.4f}\nloss: 1.0\n')
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(tool.subprocess, 'run', fake_run)
    work = str(tmp_path)
    rows = ['eta off', 'hardtanh input gradient']
    tool.main(['--data', 'synthetic', '--rows', rows[0], '--seed', '7',
               '--work-dir', work])
    tool.main(['--data', 'synthetic', '--rows', rows[1], '--seed', '9',
               '--work-dir', work])
    results = json.load(open(tmp_path / 'synthetic' / 'results.json'))
    assert [(r['row'], r['seed'], r['map50']) for r in results] == [
        (rows[0], 7, 0.07), (rows[1], 9, 0.09)]
    for r in results:
        assert Config.fromfile(r['config']).randomness.seed == r['seed']
    tool.main(['--data', 'synthetic', '--rows', rows[0], '--seed', '7',
               '--epochs', '3', '--work-dir', work])
    results = json.load(open(tmp_path / 'synthetic' / 'results.json'))
    assert [r['row'] for r in results] == [rows[0]]
