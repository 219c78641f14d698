"""Bad data: handled as mmdet does, or rejected with the file's name."""
import json

import pytest
from PIL import Image

from adder_det.datasets import write_dataset
from adder_det.engine import setup_mmdet

setup_mmdet()
import adder_det.datasets.checked  # noqa: E402,F401
from mmdet.registry import DATASETS  # noqa: E402

CLASSES = ('circle', 'square', 'triangle')
PIPELINE = [dict(type='LoadImageFromFile'),
            dict(type='LoadAnnotations', with_bbox=True),
            dict(type='PackDetInputs')]


@pytest.fixture
def root(tmp_path):
    write_dataset(str(tmp_path), num_train=6, num_val=2, size=64, seed=5)
    return tmp_path


def coco(root, test_mode=False, ann='annotations/instances_train.json'):
    return DATASETS.build(dict(
        type='CheckedCocoDataset', data_root=str(root), ann_file=ann,
        metainfo=dict(classes=CLASSES), data_prefix=dict(img='JPEGImages/'),
        filter_cfg=dict(filter_empty_gt=True), test_mode=test_mode,
        pipeline=PIPELINE))


def voc(root):
    return DATASETS.build(dict(
        type='CheckedVOCDataset', data_root=str(root),
        ann_file='ImageSets/Main/train.txt', metainfo=dict(classes=CLASSES),
        data_prefix=dict(sub_data_root=''), pipeline=PIPELINE))


def edit_json(root, fn):
    path = root / 'annotations' / 'instances_train.json'
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))


def test_missing_image_names_the_file(root):
    (root / 'JPEGImages' / '000002.jpg').unlink()
    ds = coco(root)
    with pytest.raises(FileNotFoundError, match='000002.jpg'):
        for i in range(len(ds)):
            ds[i]


def test_invalid_json_names_the_file(root):
    (root / 'annotations' / 'instances_train.json').write_text('{"images": [')
    with pytest.raises(ValueError, match='instances_train.json: not valid '
                       'JSON'):
        coco(root)


def test_invalid_xml_names_the_file(root):
    (root / 'Annotations' / '000003.xml').write_text('<annotation><size>')
    with pytest.raises(ValueError, match='000003.xml: not valid XML'):
        voc(root)


def test_xml_missing_tag_names_the_file(root):
    p = root / 'Annotations' / '000001.xml'
    p.write_text(p.read_text().replace('<xmin>', '<xmn>').replace(
        '</xmin>', '</xmn>'))
    with pytest.raises(ValueError, match='000001.xml: malformed'):
        voc(root)


@pytest.mark.parametrize('edit,match', [
    (lambda s: s.replace('<xmax>', '<xmax>-5', 1), 'x2 <= x1'),
    (lambda s: s.replace('<ymax>', '<ymax>900', 1), 'outside the 64x64'),
])
def test_bad_voc_box_names_the_file(root, edit, match):
    p = root / 'Annotations' / '000000.xml'
    p.write_text(edit(p.read_text()))
    with pytest.raises(ValueError, match=f'000000.xml: box .* {match}'):
        voc(root)


def test_bad_coco_boxes_are_skipped_as_mmdet_does(root):
    before = sum(len(coco(root).get_data_info(i)['instances'])
                 for i in range(len(coco(root))))

    def corrupt(data):
        data['annotations'][0]['bbox'][2] = -10      # x2 < x1
        data['annotations'][1]['bbox'][:2] = [500, 500]  # outside the image
    edit_json(root, corrupt)
    ds = coco(root)
    after = sum(len(ds.get_data_info(i)['instances']) for i in range(len(ds)))
    assert after == before - 2


def test_unknown_class(root):
    p = root / 'Annotations' / '000000.xml'
    p.write_text(p.read_text().replace('<name>', '<name>hexagon', 1))
    with pytest.warns(UserWarning, match="000000.xml: objects of unknown "
                      "classes \\['hexagon"):
        voc(root)
    # COCO: mmdet skips annotations of categories outside `classes`
    ds = coco(root)
    before = sum(len(ds.get_data_info(i)['instances']) for i in range(len(ds)))
    edit_json(root, lambda d: d['annotations'][0].update(category_id=99))
    ds = coco(root)
    after = sum(len(ds.get_data_info(i)['instances']) for i in range(len(ds)))
    assert after == before - 1


def test_empty_annotation_list(root):
    edit_json(root, lambda d: d.update(annotations=[]))
    # training filters images without boxes: nothing left is an error
    with pytest.raises(ValueError, match='instances_train.json: no image '
                       'left'):
        coco(root)
    assert len(coco(root, test_mode=True)) == 6  # testing keeps them


def test_grayscale_image_loads_as_three_channels(root):
    p = root / 'JPEGImages' / '000004.jpg'
    Image.open(p).convert('L').save(p)
    ds = coco(root)
    idx = [i for i in range(len(ds))
           if ds.get_data_info(i)['img_path'].endswith('000004.jpg')][0]
    assert ds[idx]['inputs'].shape[0] == 3
