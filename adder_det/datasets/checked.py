"""mmdet's COCO and VOC datasets with annotation errors that name the file.

mmdet reports an annotation file that is not valid JSON or XML with the
parser's bare message ("Expecting value: line 1 column 1"), and keeps VOC
boxes with x2 < x1 or outside the image, which later turn into NaN losses
far from their cause. These subclasses (register by importing this module,
e.g. ``custom_imports=dict(imports=['adder_det.datasets.checked'])``)
change only that:

* COCO: a JSON file that does not parse -> ValueError naming the file.
  Boxes and categories are handled as mmdet does (zero-area or
  out-of-image boxes, and categories not among ``classes``, are skipped).
* VOC: an XML file that does not parse or lacks a tag -> ValueError naming
  the file; a box with x2 <= x1, y2 <= y1 or outside the image ->
  ValueError naming the file and the box; an object of a class not in
  ``classes`` is skipped, as mmdet does, with a warning naming the file.

An annotation file that leaves no image to use -> ValueError naming the
file. Missing images fail in mmcv's LoadImageFromFile with the path, and
grayscale images load as 3 channels; both are mmdet's behaviour, kept.
"""
import json
import warnings
import xml.etree.ElementTree as ET

from mmdet.datasets import CocoDataset, VOCDataset
from mmdet.registry import DATASETS


class _NonEmpty:
    """An empty data set (no image left, e.g. an empty annotation list with
    ``filter_empty_gt``) is rejected naming the file, instead of failing in
    mmengine's serialization with 'need at least one array to
    concatenate'."""

    def filter_data(self):
        data_list = super().filter_data()
        if not data_list:
            raise ValueError(
                f'{self.ann_file}: no image left to use (is the annotation '
                f'list empty? filter_cfg={self.filter_cfg})')
        return data_list


@DATASETS.register_module()
class CheckedCocoDataset(_NonEmpty, CocoDataset):

    def load_data_list(self):
        try:
            return super().load_data_list()
        except json.JSONDecodeError as e:
            raise ValueError(f'{self.ann_file}: not valid JSON ({e})') from e


@DATASETS.register_module()
class CheckedVOCDataset(_NonEmpty, VOCDataset):

    def parse_data_info(self, img_info):
        xml_path = img_info['xml_path']
        try:
            info = super().parse_data_info(img_info)
        except ET.ParseError as e:
            raise ValueError(f'{xml_path}: not valid XML ({e})') from e
        except (AttributeError, TypeError, ValueError) as e:
            raise ValueError(f'{xml_path}: malformed VOC annotation, a tag is '
                             f'missing or not a number ({e})') from e
        w, h = info['width'], info['height']
        for inst in info['instances']:
            x1, y1, x2, y2 = inst['bbox']  # 0-based after mmdet's minus one
            if x2 <= x1 or y2 <= y1:
                raise ValueError(f'{xml_path}: box {inst["bbox"]} (0-based) '
                                 'has x2 <= x1 or y2 <= y1')
            if x1 < 0 or y1 < 0 or x2 > w or y2 > h:
                raise ValueError(f'{xml_path}: box {inst["bbox"]} (0-based) '
                                 f'is outside the {w}x{h} image')
        classes = set(self.metainfo['classes'])
        unknown = {o.findtext('name') for o in
                   ET.parse(xml_path).getroot().findall('object')} - classes
        if unknown:
            warnings.warn(f'{xml_path}: objects of unknown classes '
                          f'{sorted(unknown)} are skipped (classes: '
                          f'{sorted(classes)})')
        return info
