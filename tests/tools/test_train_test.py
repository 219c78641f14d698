"""tools/train.py and tools/test.py end to end on a tiny synthetic set."""
import os
import pathlib
import subprocess
import sys

import pytest
import torch

ROOT = pathlib.Path(__file__).resolve().parents[2]
CFG = ROOT / 'configs' / 'synthetic'
ADDER_COCO = CFG / 'adder-fcos_adder-r18-quarter_adder-rpafpn_20e_synthetic-coco.py'
CONV_COCO = CFG / 'fcos_r18-quarter_rpafpn_20e_synthetic-coco.py'
ADDER_VOC = CFG / 'adder-fcos_adder-r18-quarter_adder-rpafpn_20e_synthetic-voc.py'
ADDER_AWN = CFG / 'adder-fcos_adder-r18-quarter-awn_adder-rpafpn_20e_synthetic-coco.py'


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('synthetic')
    sys.path.insert(0, str(ROOT))
    from adder_det.datasets import write_dataset
    write_dataset(str(root), num_train=16, num_val=8, size=128, seed=3)
    return root


def overrides(root, epochs, extra=()):
    r = f'{root}/'
    opts = [f'train_dataloader.dataset.data_root={r}',
            f'val_dataloader.dataset.data_root={r}',
            f'test_dataloader.dataset.data_root={r}',
            f'train_cfg.max_epochs={epochs}', f'train_cfg.val_interval={epochs}',
            'train_dataloader.num_workers=0',
            'train_dataloader.persistent_workers=False',
            'val_dataloader.num_workers=0',
            'val_dataloader.persistent_workers=False',
            'test_dataloader.num_workers=0',
            'test_dataloader.persistent_workers=False',
            'randomness.seed=0', 'randomness.deterministic=True']
    return opts + list(extra)


def coco_ann(root):
    a = f'{root}/annotations/instances_val.json'
    return [f'val_evaluator.ann_file={a}', f'test_evaluator.ann_file={a}']


def run(*args, timeout=600):
    """python ARGS... in the repository; asserts it succeeds, returns its
    output."""
    return _checked([sys.executable, *args], timeout=timeout)


def run_dist(script, *args, port):
    """bash tools/SCRIPT ARGS... (torchrun, gloo on CPU) on its own port."""
    env = dict(os.environ, PORT=str(port), PYTHON=sys.executable)
    return _checked(['bash', f'tools/{script}', *args], env=env)


def _checked(cmd, timeout=600, env=None):
    out = subprocess.run(list(map(str, cmd)), cwd=ROOT, capture_output=True,
                         text=True, timeout=timeout, env=env)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout + out.stderr


def init_model(cfg):
    """The config's model as training starts (seed 0, init_weights)."""
    sys.path.insert(0, str(ROOT))
    from adder_det.engine import setup_mmdet
    setup_mmdet()
    from mmdet.registry import MODELS
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    return model


@pytest.mark.parametrize('config,metric', [(ADDER_COCO, 'coco/bbox_mAP_50'),
                                           (ADDER_VOC, 'pascal_voc/mAP')])
def test_train_then_test(tmp_path, data_root, config, metric):
    extra = coco_ann(data_root) if 'coco' in config.name else []
    log = run('tools/train.py', config, '--work-dir', tmp_path,
              '--cfg-options', *overrides(data_root, 1, extra))
    assert 'Saving checkpoint at 1 epochs' in log
    ckpt = tmp_path / 'epoch_1.pth'
    assert ckpt.is_file()
    # A 1-epoch model scores below the 0.05 threshold; keep every box so
    # that the metric has predictions to evaluate.
    log = run('tools/test.py', config, ckpt, '--work-dir', tmp_path / 'test',
              '--out', tmp_path / 'preds.pkl', '--cfg-options',
              *overrides(data_root, 1, extra + ['model.test_cfg.score_thr=0']))
    assert metric in log
    assert (tmp_path / 'preds.pkl').is_file()


def test_resume_equals_straight_run(tmp_path, data_root):
    """2 epochs straight == 1 epoch, stop, resume for the second."""
    extra = coco_ann(data_root) + ['default_hooks.checkpoint.max_keep_ckpts=3']
    straight, split = tmp_path / 'straight', tmp_path / 'split'
    run('tools/train.py', ADDER_COCO, '--work-dir', straight,
        '--cfg-options', *overrides(data_root, 2, extra))
    run('tools/train.py', ADDER_COCO, '--work-dir', split,
        '--cfg-options', *overrides(data_root, 1, extra))
    log = run('tools/train.py', ADDER_COCO, '--work-dir', split, '--resume',
              '--cfg-options', *overrides(data_root, 2, extra))
    assert 'resumed epoch: 1, iter: 2' in log
    from adder_det.engine import allow_mmengine_checkpoints
    allow_mmengine_checkpoints()
    a = torch.load(straight / 'epoch_2.pth', map_location='cpu')
    b = torch.load(split / 'epoch_2.pth', map_location='cpu')
    assert a['meta']['iter'] == b['meta']['iter'] and a['meta']['epoch'] == 2
    for k, v in a['state_dict'].items():
        torch.testing.assert_close(b['state_dict'][k], v, rtol=1e-4,
                                   atol=1e-5, msg=k)
    for group_a, group_b in zip(a['optimizer']['param_groups'],
                                b['optimizer']['param_groups']):
        assert group_a['lr'] == pytest.approx(group_b['lr'])
    assert a['param_schedulers'] == b['param_schedulers']


def test_missing_config_and_checkpoint_are_named(tmp_path):
    out = subprocess.run([sys.executable, 'tools/train.py', 'nope.py'],
                         cwd=ROOT, capture_output=True, text=True)
    assert out.returncode != 0 and 'no config file nope.py' in out.stderr
    out = subprocess.run([sys.executable, 'tools/test.py', str(ADDER_COCO),
                          str(tmp_path / 'missing.pth')], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode != 0 and 'no checkpoint' in out.stderr


def test_export_is_slim_and_predicts_the_same(tmp_path, data_root):
    extra = coco_ann(data_root)
    run('tools/train.py', ADDER_COCO, '--work-dir', tmp_path,
        '--cfg-options', *overrides(data_root, 1, extra))
    ckpt = tmp_path / 'epoch_1.pth'
    log = run('tools/export.py', ckpt, tmp_path / 'export' / 'adder.pth')
    exported = sorted((tmp_path / 'export').glob('adder-*.pth'))
    assert len(exported) == 1 and exported[0].name in log
    import hashlib
    digest = hashlib.sha256(exported[0].read_bytes()).hexdigest()[:8]
    assert exported[0].stem == f'adder-{digest}'
    assert exported[0].stat().st_size < ckpt.stat().st_size

    sys.path.insert(0, str(ROOT))
    from adder_det.engine import setup_mmdet
    setup_mmdet()
    from mmdet.apis import inference_detector, init_detector
    from mmengine.config import Config
    cfg = Config.fromfile(str(ADDER_COCO))
    cfg.model.test_cfg.score_thr = 0.0
    image = str(data_root / 'JPEGImages' / '000016.jpg')
    preds = []
    for path in (ckpt, exported[0]):
        model = init_detector(cfg, str(path), device='cpu')
        assert model.dataset_meta['classes'] == ('circle', 'square',
                                                 'triangle')
        preds.append(inference_detector(model, image).pred_instances)
    assert len(preds[0].scores) > 0
    for key in ('bboxes', 'scores', 'labels'):
        torch.testing.assert_close(preds[0][key], preds[1][key])

    # the exported checkpoint also drives tools/test.py and tools/demo.py
    log = run('tools/test.py', ADDER_COCO, exported[0], '--work-dir',
              tmp_path / 'test', '--cfg-options',
              *overrides(data_root, 1, extra + ['model.test_cfg.score_thr=0']))
    assert 'coco/bbox_mAP' in log
    log = run('tools/demo.py', data_root / 'JPEGImages', ADDER_COCO,
              exported[0], '--out', tmp_path / 'vis', '--score-thr', '0')
    pngs = sorted((tmp_path / 'vis').glob('*.png'))
    assert len(pngs) == 24 and all(p.stat().st_size > 1000 for p in pngs)


@pytest.mark.parametrize('config', [CONV_COCO, ADDER_COCO])
def test_dist_train_two_cpu_processes_match_single(tmp_path, data_root, config):
    """torchrun, 2 gloo processes x 4 images vs 1 process x 8 images: the
    same images per step from the same initial weights give the same
    weights after two SGD steps (SGD: the papers' optimizer, where the eta
    scaling acts).

    Group norm replaces batch norm here, so that nothing depends on how the
    batch is split and what is left to compare is the data-parallel
    machinery. For the adder model that includes the eta scaling: its
    config's DeferredEtaHook rescales the filter gradients after DDP has
    averaged them; scaling on each process before the average instead gave
    a relative difference of 0.17 (measured; 1e-4 with the hook). With
    batch norm the per-process statistics (4 vs 8 images) alone make the
    adder filters' updates differ much more than the conv ones (cosine 0.54
    vs 0.91, measured): use SyncBN for adder models on GPUs.
    """
    from mmengine.config import Config
    gn = {f'model.{part}.norm_cfg': dict(type='GN', num_groups=8,
                                         requires_grad=True)
          for part in ('backbone', 'neck')}
    cfg = Config.fromfile(str(config))
    cfg.merge_from_dict(gn)
    model = init_model(cfg)
    from adder_det.engine import allow_mmengine_checkpoints
    allow_mmengine_checkpoints()
    init = tmp_path / 'init.pth'
    torch.save({'state_dict': model.state_dict()}, init)
    extra = coco_ann(data_root) + ['train_dataloader.dataset.pipeline.3.prob=0.0',
                                   f'load_from={init}',
                                   'optim_wrapper.optimizer.type=SGD',
                                   'optim_wrapper.optimizer.lr=0.01',
                                   'optim_wrapper.optimizer.momentum=0.9',
                                   'optim_wrapper.optimizer.weight_decay=0.0001']
    # The same group norm for both runs (cfg-options take one key a value).
    extra += [f'{key}.{k}={v}' for key, norm in gn.items()
              for k, v in norm.items()]
    run('tools/train.py', config, '--work-dir', tmp_path / 's',
        '--cfg-options', *overrides(data_root, 1, extra))
    log = run_dist('dist_train.sh', config, 2, '--work-dir', tmp_path / 'd',
                   '--cfg-options', *overrides(
                       data_root, 1, extra + ['train_dataloader.batch_size=4']),
                   port=29517)
    assert 'Distributed training: True' in log
    s = torch.load(tmp_path / 's' / 'epoch_1.pth')
    d = torch.load(tmp_path / 'd' / 'epoch_1.pth')
    assert s['meta']['iter'] == d['meta']['iter'] == 2
    params = [k for k, _ in model.named_parameters()]
    w0 = torch.cat([model.state_dict()[k].flatten() for k in params])
    ws = torch.cat([s['state_dict'][k].flatten() for k in params])
    wd = torch.cat([d['state_dict'][k].flatten() for k in params])
    step_s, step_d = ws - w0, wd - w0
    assert step_s.norm() > 0
    rel = ((step_s - step_d).norm() / step_s.norm()).item()
    cos = torch.nn.functional.cosine_similarity(step_s, step_d, dim=0).item()
    print(f'{config.name}: relative difference of the weight updates '
          f'{rel:.3f}, cosine {cos:.3f}')
    assert rel < 1e-2, (rel, cos)


def test_dist_test_two_cpu_processes_match_single(tmp_path, data_root):
    """torchrun, 2 gloo processes: every val image gets the predictions one
    process gives it, gathered back in the data set's order by --out."""
    from mmengine.config import Config
    model = init_model(Config.fromfile(str(ADDER_COCO)))
    ckpt = tmp_path / 'model.pth'
    torch.save({'state_dict': model.state_dict()}, ckpt)
    # An untrained model scores below 0.05: keep every box.
    opts = overrides(data_root, 1,
                     coco_ann(data_root) + ['model.test_cfg.score_thr=0'])
    run('tools/test.py', ADDER_COCO, ckpt, '--work-dir', tmp_path / 's',
        '--out', tmp_path / 's.pkl', '--cfg-options', *opts)
    log = run_dist('dist_test.sh', ADDER_COCO, ckpt, 2, '--work-dir',
                   tmp_path / 'd', '--out', tmp_path / 'd.pkl',
                   '--cfg-options', *opts, port=29518)
    assert 'Distributed launcher: pytorch' in log
    import pickle
    single = pickle.load(open(tmp_path / 's.pkl', 'rb'))
    multi = pickle.load(open(tmp_path / 'd.pkl', 'rb'))
    assert len(single) == len(multi) == 8
    for a, b in zip(single, multi):
        assert a['img_id'] == b['img_id']
        pa, pb = a['pred_instances'], b['pred_instances']
        assert len(pa['scores']) > 0
        for key in ('bboxes', 'scores', 'labels'):
            torch.testing.assert_close(pb[key], pa[key])


def awn_checkpoint(tmp_path):
    """The AWN config (score threshold 0), a model of it with its gains
    moved off 1, and that model saved as a checkpoint with the config."""
    from mmengine.config import Config
    cfg = Config.fromfile(str(ADDER_AWN))
    cfg.model.test_cfg.score_thr = 0.0
    model = init_model(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith('awn_gain'):
                p.uniform_(0.5, 1.5)
    ckpt = tmp_path / 'awn.pth'
    torch.save({'state_dict': model.state_dict(),
                'meta': {'cfg': cfg.pretty_text,
                         'dataset_meta': {'classes': cfg.classes}}}, ckpt)
    return cfg, model, ckpt


def test_export_folds_awn_with_identical_predictions(tmp_path, data_root):
    """An AWN model's checkpoint (gains moved off 1) exports folded: no
    gains, filters standardized, the same predictions bit for bit, and it
    loads back with the AWN config."""
    cfg, _, ckpt = awn_checkpoint(tmp_path)
    from mmdet.apis import inference_detector, init_detector
    log = run('tools/export.py', ckpt, tmp_path / 'export' / 'awn.pth')
    assert 'folded AWN into' in log
    exported = sorted((tmp_path / 'export').glob('awn-*.pth'))
    state = torch.load(exported[0])['state_dict']
    assert not any(k.endswith('awn_gain') for k in state)
    assert any(k.endswith('awn_folded') for k in state)
    image = str(data_root / 'JPEGImages' / '000016.jpg')
    preds = []
    for path in (ckpt, exported[0]):
        detector = init_detector(cfg, str(path), device='cpu')
        preds.append(inference_detector(detector, image).pred_instances)
    assert len(preds[0].scores) > 0
    for key in ('bboxes', 'scores', 'labels'):
        torch.testing.assert_close(preds[0][key], preds[1][key], rtol=0,
                                   atol=0)


def test_export_onnx_matches_pytorch(tmp_path):
    """--onnx: the graph holds only standard ONNX operators (the adder
    layers spelled out), and onnxruntime on it gives the head outputs of the
    PyTorch model (AWN unfolded, compiled op) on a non-square input."""
    import numpy as np
    import onnx
    import onnxruntime
    _, model, ckpt = awn_checkpoint(tmp_path)
    model.eval()
    log = run('tools/export.py', ckpt, tmp_path / 'export' / 'awn.pth',
              '--onnx', '--onnx-shape', '64', '96')
    graphs = sorted((tmp_path / 'export').glob('awn-*.onnx'))
    assert len(graphs) == 1 and graphs[0].name in log
    assert 'onnxruntime vs PyTorch max |diff|' in log
    assert not list((tmp_path / 'export').glob('*.data'))  # one file

    graph = onnx.load(str(graphs[0]))
    assert {n.domain for n in graph.graph.node} <= {'', 'ai.onnx'}
    assert sum(n.op_type == 'Abs' for n in graph.graph.node) > 0
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        expect = [t for level in model(x, mode='tensor') for t in level]
    session = onnxruntime.InferenceSession(
        str(graphs[0]), providers=['CPUExecutionProvider'])
    got = session.run(None, {'img': x.numpy()})
    assert len(got) == len(expect) == 15
    for g, e in zip(got, expect):
        np.testing.assert_allclose(g, e.numpy(), rtol=1e-4, atol=1e-3)
