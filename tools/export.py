#!/usr/bin/env python
"""Export a training checkpoint as a slim inference checkpoint.

    python tools/export.py work_dirs/x/epoch_12.pth out/adder_fcos.pth

Keeps the weights (``state_dict``) and the metadata inference needs
(``dataset_meta``: class names and palette; the config text), drops the
optimizer, scheduler and message-hub state, and names the file like mmdet's
publish_model: ``out/adder_fcos-<first 8 hex digits of its sha256>.pth``.
The result loads with ``tools/test.py`` and ``mmdet.apis.init_detector``,
weights-only, with no allow-list needed.

Adder layers trained with AWN (``weight_norm=dict(type='AWN')``) are folded:
the standardized filters are written into ``weight`` and the gain dropped,
so inference does no normalization. Folding builds the model from the config
stored in the checkpoint (or ``--config``); the folded checkpoint loads into
a model built from the same config (its layers switch to folded on load).

``--onnx`` also writes the network up to the head outputs as an ONNX graph
beside it (same name, ``.onnx``), with every adder layer spelled out in
standard ONNX operators (adder_det.ops.adder2d_decomposed: Pad, Slice, Sub,
Abs, ReduceSum, Add), for a fixed input of 1 x 3 x H x W: the image after
mmdet's data preprocessor (RGB, normalized, padded), H x W the config's test
resize scale rounded up to the pad divisor unless ``--onnx-shape H W``.
Outputs: ``cls_score_i``, ``bbox_pred_i``, ``centerness_i`` per FPN level i
(FCOSHead's forward, boxes already multiplied by the level's stride); decoding
and NMS stay outside the graph. When onnxruntime is installed the graph is run
on a random input and compared with PyTorch (the compiled op); a difference
above ``--onnx-rtol`` of an output's largest magnitude is an error.
"""
import argparse
import hashlib
import os
import os.path as osp
import sys

import torch

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

KEEP_META = ('dataset_meta', 'cfg', 'epoch', 'iter', 'mmengine_version',
             'experiment_name', 'seed')


def build_detector(state_dict: dict, config, why: str):
    """The model of ``config`` (path, text or Config) holding ``state_dict``
    exactly; ``why`` names what needs it when no config is given."""
    from adder_det.engine import setup_mmdet
    if config is None:
        raise ValueError(f'export: {why} needs the model\'s config, and the '
                         'checkpoint stores none; pass --config')
    config = _as_config(config)
    setup_mmdet()
    from mmdet.registry import MODELS
    model = MODELS.build(config.model)
    model.load_state_dict(state_dict, strict=True)
    return model, config


def fold_awn(state_dict: dict, config) -> dict:
    """The state dict with every AWN adder layer folded (see module doc)."""
    from adder_det.ops import fold_weight_norms
    model, _ = build_detector(state_dict, config,
                              'folding its AWN adder layers')
    n = fold_weight_norms(model)
    print(f'export: folded AWN into {n} adder layers')
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _as_config(config):
    from mmengine.config import Config
    if isinstance(config, Config):
        return config
    return (Config.fromfile(config) if osp.isfile(config) else
            Config.fromstring(config, '.py'))


def onnx_input_shape(config) -> tuple:
    """(H, W) of the graph's input: the test pipeline's resize scale (mmdet
    writes it (w, h)) rounded up to the data preprocessor's pad divisor."""
    resize = [t for t in config.test_dataloader.dataset.pipeline
              if t['type'] == 'Resize']
    if not resize or 'scale' not in resize[0]:
        raise ValueError('export --onnx: the config\'s test pipeline has no '
                         'Resize with a scale; pass --onnx-shape H W')
    w, h = resize[0]['scale']
    div = config.model.data_preprocessor.get('pad_size_divisor', 1)
    return (-(-h // div) * div, -(-w // div) * div)


#: names of a dense head's output kinds, as FCOSHead.forward returns them
HEAD_OUTPUTS = ('cls_score', 'bbox_pred', 'centerness')


def flat_head_outputs(outs) -> tuple:
    """A dense head's (kinds x levels) outputs as one flat tuple: all levels
    of the first kind, then of the second..."""
    return tuple(t for level_outputs in outs for t in level_outputs)


def head_output_names(outs, detector_name: str) -> list:
    """Names for :func:`flat_head_outputs` of ``outs``; a clear error for
    detectors whose tensor-mode output is not a dense head's lists."""
    if not (isinstance(outs, (tuple, list))
            and len(outs) <= len(HEAD_OUTPUTS) and all(
                isinstance(o, (tuple, list))
                and all(isinstance(t, torch.Tensor) for t in o)
                for o in outs)):
        raise ValueError(
            'export --onnx: supports single-stage detectors whose head '
            'returns per-level lists (' + ', '.join(HEAD_OUTPUTS) +
            f'); {detector_name} does not')
    return [f'{HEAD_OUTPUTS[k]}_{i}' for k, o in enumerate(outs)
            for i in range(len(o))]


class HeadOutputs(torch.nn.Module):
    """The detector from image tensor to its head's raw outputs, flat."""

    def __init__(self, detector):
        super().__init__()
        self.detector = detector

    def forward(self, img):
        return flat_head_outputs(self.detector(img, mode='tensor'))


def export_onnx(state_dict: dict, config, dst: str, shape=None,
                rtol: float = 1e-3) -> dict:
    """Write the ONNX graph of the detector up to its head outputs (see the
    module doc); returns the input shape, output names and, when
    onnxruntime is installed, the largest difference from PyTorch."""
    from adder_det.ops import adder2d_decomposed
    model, config = build_detector(state_dict, config, '--onnx')
    net = HeadOutputs(model).eval()
    h, w = shape or onnx_input_shape(config)
    img = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        outs = model(img, mode='tensor')
        names = head_output_names(outs, type(model).__name__)
        reference = flat_head_outputs(outs)
        with adder2d_decomposed():
            # torch.export's exporter (onnxscript); the graph is for this
            # one input shape
            torch.onnx.export(net, (img, ), dst, dynamo=True,
                              opset_version=18, input_names=['img'],
                              output_names=names, external_data=False)
    report = dict(input_shape=(1, 3, h, w), outputs=names)
    try:
        import onnxruntime
    except ImportError:
        print('export: onnxruntime is not installed; the ONNX graph was not '
              'checked')
        return report
    session = onnxruntime.InferenceSession(
        dst, providers=['CPUExecutionProvider'])
    got = session.run(None, {'img': img.numpy()})
    # float32 sums in another order, amplified by batch norm: compare
    # relative to each output's scale (boxes are in pixels, up to hundreds)
    diffs = [((torch.from_numpy(g) - r).abs().max(),
              r.abs().max().clamp(min=1.0)) for g, r in zip(got, reference)]
    report['max_abs_diff'] = max(float(d) for d, _ in diffs)
    report['max_rel_diff'] = max(float(d / scale) for d, scale in diffs)
    if not report['max_rel_diff'] <= rtol:
        raise RuntimeError(
            f"export --onnx: onnxruntime differs from PyTorch by "
            f"{report['max_rel_diff']:.3g} of an output's largest value "
            f"(> --onnx-rtol {rtol:g}) in {dst}")
    return report


def export(src: str, dst: str, config=None) -> tuple:
    """Write the slim checkpoint; returns its final (hashed) path and its
    contents.
    ``config`` (path, text or Config) is only needed to fold AWN layers of
    a checkpoint that stores no config."""
    from adder_det.engine import allow_mmengine_checkpoints
    allow_mmengine_checkpoints()
    if not osp.isfile(src):
        raise FileNotFoundError(f'export: no checkpoint {src}')
    ckpt = torch.load(src, map_location='cpu')
    if not isinstance(ckpt, dict) or 'state_dict' not in ckpt:
        raise ValueError(f'export: {src} has no state_dict')
    meta = {k: v for k, v in ckpt.get('meta', {}).items() if k in KEEP_META}
    state = {k: v.detach().clone() for k, v in ckpt['state_dict'].items()}
    if any(k.endswith('.awn_gain') for k in state):
        state = fold_awn(state, config if config is not None
                         else meta.get('cfg'))
    slim = {'state_dict': state, 'meta': meta}
    os.makedirs(osp.dirname(osp.abspath(dst)) or '.', exist_ok=True)
    tmp = dst + '.tmp'
    torch.save(slim, tmp)
    with open(tmp, 'rb') as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:8]
    stem = dst[:-4] if dst.endswith('.pth') else dst
    final = f'{stem}-{digest}.pth'
    os.replace(tmp, final)
    return final, slim


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('checkpoint')
    p.add_argument('out', help='output path; the sha256 prefix is appended')
    p.add_argument('--config', help='config of the checkpoint, to fold AWN '
                   'layers and for --onnx (default: the config stored in the '
                   'checkpoint)')
    p.add_argument('--onnx', action='store_true',
                   help='also write the network up to the head outputs as '
                   'ONNX, beside the checkpoint')
    p.add_argument('--onnx-shape', type=int, nargs=2, metavar=('H', 'W'),
                   help="the graph's input height and width (default: the "
                   "config's test scale)")
    p.add_argument('--onnx-rtol', type=float, default=1e-3,
                   help='largest accepted onnxruntime - PyTorch difference, '
                   "relative to each output's largest value (at least 1)")
    args = p.parse_args(argv)
    final, slim = export(args.checkpoint, args.out, args.config)
    print(f'{final}: {osp.getsize(final) / 2**20:.1f} MiB (from '
          f'{osp.getsize(args.checkpoint) / 2**20:.1f} MiB)')
    if args.onnx:
        config = args.config or slim['meta'].get('cfg')
        onnx_path = final[:-4] + '.onnx'
        report = export_onnx(slim['state_dict'], config, onnx_path,
                             args.onnx_shape, args.onnx_rtol)
        checked = ('not checked (no onnxruntime)'
                   if 'max_abs_diff' not in report else
                   f"onnxruntime vs PyTorch max |diff| "
                   f"{report['max_abs_diff']:.2g} (relative "
                   f"{report['max_rel_diff']:.2g})")
        print(f"{onnx_path}: input {report['input_shape']}, "
              f"{len(report['outputs'])} outputs, {checked}")


if __name__ == '__main__':
    main()
