"""The built-in synthetic shapes set: deterministic, both layouts agree,
and every labelled shape is visible and stands out."""
import json
import xml.etree.ElementTree as ET

import numpy as np

from adder_det.datasets import synthetic_shapes as S


def test_deterministic_and_layouts_agree(tmp_path):
    a, b = tmp_path / 'a', tmp_path / 'b'
    counts = S.write_dataset(str(a), num_train=6, num_val=3, size=96, seed=4)
    S.write_dataset(str(b), num_train=6, num_val=3, size=96, seed=4)
    for split in ('train', 'val'):
        ja = (a / 'annotations' / f'instances_{split}.json').read_text()
        assert ja == (b / 'annotations' / f'instances_{split}.json').read_text()
        coco = json.loads(ja)
        assert len(coco['annotations']) == counts[split]
        ids = (a / 'ImageSets' / 'Main' / f'{split}.txt').read_text().split()
        assert len(ids) == len(coco['images'])
        for image in coco['images']:
            assert (a / 'JPEGImages' / image['file_name']).read_bytes() == \
                (b / 'JPEGImages' / image['file_name']).read_bytes()
            anns = [x for x in coco['annotations']
                    if x['image_id'] == image['id']]
            assert anns, 'every image has at least one object'
            root = ET.parse(a / 'Annotations' /
                            (image['file_name'][:-4] + '.xml')).getroot()
            voc = []
            for obj in root.iter('object'):
                bb = obj.find('bndbox')
                x1, y1, x2, y2 = (int(bb.find(t).text) for t in
                                  ('xmin', 'ymin', 'xmax', 'ymax'))
                voc.append((S.CLASSES.index(obj.find('name').text) + 1,
                            [x1 - 1, y1 - 1, x2 - x1 + 1, y2 - y1 + 1]))
            assert sorted(voc) == sorted((x['category_id'], x['bbox'])
                                         for x in anns)


def test_shapes_are_visible_and_stand_out():
    for index in range(40):
        img, shapes = S.compose(7, index, size=128)
        _, objects = S.make_image(7, index, size=128)
        assert 1 <= len(shapes) == len(objects) <= 4
        for sh, o in zip(shapes, objects):
            full, vis = sh['mask'].sum(), sh['visible'].sum()
            assert vis >= (1 - S.MAX_HIDDEN) * full
            # radius >= 0.08 * 128 px: even a triangle (1.3 r^2) is bigger
            assert full >= (S.RADIUS[0] * 128) ** 2
            fallback = np.where(sh['under'] < 128, 255, 0)
            assert (np.linalg.norm(sh['colour'] - sh['under']) >=
                    S.MIN_CONTRAST or (sh['colour'] == fallback).all())
            ys, xs = np.nonzero(sh['visible'])
            assert o['bbox'] == [xs.min(), ys.min(), xs.max() + 1,
                                 ys.max() + 1]
            assert o['label'] == sh['label']


def test_version_stamp_marks_a_current_set(tmp_path):
    assert not S.is_current(str(tmp_path), 2, 1, 64, 0)
    S.write_dataset(str(tmp_path), num_train=2, num_val=1, size=64, seed=0)
    assert S.is_current(str(tmp_path), 2, 1, 64, 0)
    assert not S.is_current(str(tmp_path), 2, 1, 64, 1)  # other arguments
    (tmp_path / 'VERSION').write_text('synthetic-shapes v1 train=2 val=1 '
                                      'size=64 seed=0\n')
    assert not S.is_current(str(tmp_path), 2, 1, 64, 0)  # older generator
