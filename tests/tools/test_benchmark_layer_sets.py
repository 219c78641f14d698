"""tools/benchmark_op.py's layer sets name every distinct adder layer shape
of the models they stand for: each Adder2d of the model hooked on a forward
at the set's input size, its (in, out, kernel, stride, input size) against
the set's. A model whose layers change must change its benchmark set too
(session 14 found the ResNet-50 set 8 shapes short)."""
import pytest
import torch

from . import ROOT, load_tool

bench = load_tool('benchmark_op')
CONFIGS = ROOT / 'configs'
R50_BNH = CONFIGS / ('adder_fcos/adder-fcos_adder-r50_adder-rpafpn_'
                     'adder-head_1x_coco.py')
SMALL = CONFIGS / ('synthetic/adder-fcos_adder-r18-quarter_adder-rpafpn_'
                   '20e_synthetic-coco.py')


def adder_shapes(config, size):
    """{part: {(cin, cout, k, stride, input size)}} of the Adder2d layers of
    the config's model (part: backbone, neck, bbox_head) on a size x size
    forward through backbone, neck and head."""
    from mmengine.config import Config
    from mmdet.registry import MODELS

    from adder_det.engine import setup_mmdet
    from adder_det.ops import Adder2d
    setup_mmdet()
    model = MODELS.build(Config.fromfile(str(config)).model).eval()
    shapes = {}
    for name, module in model.named_modules():
        if isinstance(module, Adder2d):
            part = name.split('.')[0]

            def hook(mod, inputs, output, part=part):
                h, w = inputs[0].shape[-2:]
                assert h == w, (part, h, w)
                shapes.setdefault(part, set()).add(
                    (mod.in_channels, mod.out_channels, mod.kernel_size[0],
                     mod.stride[0], h))
            module.register_forward_hook(hook)
    with torch.no_grad():
        model.bbox_head(model.extract_feat(torch.zeros(1, 3, size, size)))
    return shapes


def set_shapes(layers, prefix):
    return [(cin, cout, k, stride, size)
            for name, cin, cout, k, stride, size in layers
            if name.startswith(prefix)]


# set -> (config, {layer-name prefix: the model part those layers are of})
SETS = {
    'resnet50': (R50_BNH, {'s': 'backbone'}),
    'fcos': (R50_BNH, {'neck.': 'neck', 'head ': 'bbox_head'}),
    'small': (SMALL, {'r18q.': 'backbone', 'neck64.': 'neck'}),
}


@pytest.mark.parametrize('name', sorted(SETS))
def test_layer_set_is_every_distinct_adder_shape_of_its_model(name):
    config, parts = SETS[name]
    size, layers = bench.LAYER_SETS[name]
    found = adder_shapes(config, size)
    # Every part of the model with adder layers is some set's (the small
    # model's head is a conv head), and every listed layer is of a part.
    covered = {part for cfg, ps in SETS.values() if cfg == config
               for part in ps.values()}
    assert set(found) == covered, sorted(found)
    assert sum(len(set_shapes(layers, p)) for p in parts) == len(layers)
    for prefix, part in parts.items():
        listed = set_shapes(layers, prefix)
        assert len(set(listed)) == len(listed), (prefix, 'a shape twice')
        assert set(listed) == found[part], (name, part)
