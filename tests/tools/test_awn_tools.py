"""tools/feature_stats.py and tools/awn_robustness.py on tiny settings."""
import json
import subprocess
import sys

import torch

from . import ROOT, load_tool

ADDER = (ROOT / 'configs' / 'synthetic' /
         'adder-fcos_adder-r18-quarter_adder-rpafpn_20e_synthetic-coco.py')
CONV = ROOT / 'configs' / 'synthetic' / 'fcos_r18-quarter_rpafpn_20e_synthetic-coco.py'


def calibrate_batch_norm(model, image_dir):
    """Running BN statistics from the images: with the initial ones (mean
    0, var 1) every adder output (all negative) would be zeroed by the
    following ReLU."""
    import mmcv
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None  # cumulative average
    images = [torch.from_numpy(mmcv.imread(str(p))).permute(2, 0, 1)
              for p in sorted(image_dir.glob('*.jpg'))]
    model.train()
    with torch.no_grad():
        data = model.data_preprocessor({'inputs': images}, False)
        model.extract_feat(data['inputs'])
    model.eval()


def test_feature_stats_end_to_end(tmp_path):
    sys.path.insert(0, str(ROOT))
    from adder_det.datasets import write_dataset
    from adder_det.engine import setup_mmdet
    write_dataset(str(tmp_path / 'data'), num_train=2, num_val=4, size=96,
                  seed=1)
    setup_mmdet()
    from mmdet.registry import MODELS
    from mmengine.config import Config
    for name, config in (('adder', ADDER), ('conv', CONV)):
        torch.manual_seed(0)
        model = MODELS.build(Config.fromfile(str(config)).model)
        model.init_weights()
        calibrate_batch_norm(model, tmp_path / 'data' / 'JPEGImages')
        ckpt = tmp_path / f'{name}.pth'
        torch.save({'state_dict': model.state_dict()}, ckpt)
        root = f'{tmp_path}/data/'
        out = subprocess.run(
            [sys.executable, 'tools/feature_stats.py', str(config), str(ckpt),
             '--max-images', '3', '--out', str(tmp_path / f'{name}.json'),
             '--cfg-options', f'test_dataloader.dataset.data_root={root}',
             'test_dataloader.batch_size=2', 'test_dataloader.num_workers=0',
             'test_dataloader.persistent_workers=False'],
            cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr[-3000:]
        assert 'fraction of exact zeros' in out.stdout
        stats = json.loads((tmp_path / f'{name}.json').read_text())
        assert stats['images'] == 4  # two batches of 2 reach 3 images
        assert list(stats['backbone_stages']) == [
            'stage1', 'stage2', 'stage3', 'stage4']
        assert list(stats['neck_levels']) == ['P0', 'P1', 'P2', 'P3', 'P4']
        for s in stats['backbone_stages'].values():
            assert 0 < s['zero_fraction'] < 1  # after ReLU: some zeros
        layers = stats['layers_before_bn']
        adders = {k: v for k, v in layers.items() if k.endswith('(adder)')}
        if name == 'adder':
            # every adder layer is seen (backbone: 16 3x3 + 3 shortcut 1x1;
            # R-PAFPN: 3 lateral, 2 + 2 bottom-up, 5 output/extra convs),
            # and without a bias its output is minus an L1 distance
            assert len(adders) == 19 + 12, sorted(adders)
            assert all(v['mean'] < 0 and v['var'] > 0
                       for v in adders.values())
        else:
            assert not adders and len(layers) > 0


def test_awn_robustness_end_to_end(tmp_path):
    tool = load_tool('awn_robustness')
    results = tool.run(epochs=3, seeds=(0, ), eps=(0.3, ), width=8,
                       log=lambda s: None)
    assert set(results) == {'plain', 'awn'}
    for r in results.values():
        row = r['runs'][0]
        assert 0.0 <= row['fgsm_0.3'] <= 1.0
        assert row['clean'] > 0.3  # learned something in 3 epochs
        assert row['fgsm_0.3'] < row['clean']  # and the attack bites
    from adder_det.ops import Adder2d
    net = tool.build_classifier(dict(type='AWN'), width=8)
    adders = [m for m in net.modules() if isinstance(m, Adder2d)]
    assert len(adders) == 9 and all(m.awn_gain is not None for m in adders)
    assert not isinstance(net[0], Adder2d)  # the stem stays a conv
    out = subprocess.run([sys.executable, 'tools/awn_robustness.py',
                          '--epochs', '1', '--seeds', '0', '--eps', '0.1',
                          '--width', '4', '--json', str(tmp_path / 'r.json')],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert 'fgsm_0.1' in out.stdout
    assert set(json.loads((tmp_path / 'r.json').read_text())) == {'plain',
                                                                   'awn'}
