"""A deterministic synthetic detection set: coloured shapes on textures.

Made so that the main job runs with nothing downloaded: circles, squares
and triangles of several sizes, colours and rotations, some partly hidden
behind others, on noisy gradient backgrounds with stripes. Every labelled
object is recognizable, so that a small detector can learn the set in
minutes and its errors are its own, not the labels': a shape's colour
differs from what it is drawn over by at least MIN_CONTRAST (RGB distance),
and a new shape is placed so that it hides at most MAX_HIDDEN of any earlier
one (a placement that would hide more is redrawn; after a few failed tries
the shape is left out). Written in both COCO JSON and PASCAL VOC layouts
over one copy of the images::

    ROOT/JPEGImages/000123.jpg
    ROOT/Annotations/000123.xml           (VOC)
    ROOT/ImageSets/Main/{train,val}.txt   (VOC)
    ROOT/annotations/instances_{train,val}.json   (COCO)

Everything depends only on (seed, index), so a set is identical on every
machine and any image can be regenerated alone. Needs numpy and Pillow.
"""
import json
import os
import xml.etree.ElementTree as ET
from typing import Dict, List, Tuple

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ('circle', 'square', 'triangle')
#: No shape hides more than this fraction of an earlier shape's area.
MAX_HIDDEN = 0.3
#: Least RGB distance between a shape's colour and the mean colour under it.
MIN_CONTRAST = 80.0
#: Shape radius (centre to corner) range, as a fraction of the image size.
RADIUS = (0.08, 0.22)
TRIES = 20


def _background(rng: np.random.RandomState, size: int) -> Image.Image:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    base = rng.uniform(40, 200, 3)
    slope = rng.uniform(-60, 60, (2, 3))
    img = base + xx[..., None] * slope[0] + yy[..., None] * slope[1]
    img += rng.normal(0, rng.uniform(4, 18), (size, size, 3))
    img = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(rng.randint(0, 6)):  # stripes: texture, not objects
        x0, y0, x1, y1 = rng.randint(0, size, 4)
        colour = tuple(int(c) for c in rng.randint(0, 256, 3))
        draw.line([(x0, y0), (x1, y1)], fill=colour,
                  width=int(rng.randint(1, 4)))
    return img


def _shape_polygon(kind: str, cx, cy, r, angle):
    if kind == 'square':
        k = 4
        angle = angle + np.pi / 4
    else:
        k = 3
    t = angle + 2 * np.pi * np.arange(k) / k
    return [(float(cx + r * np.cos(a)), float(cy + r * np.sin(a)))
            for a in t]


def _shape_mask(kind: str, cx, cy, r, angle, size) -> Tuple[list, np.ndarray]:
    """(outline for ImageDraw, boolean mask) of one shape."""
    mask = Image.new('1', (size, size))
    mdraw = ImageDraw.Draw(mask)
    if kind == 'circle':
        outline = [cx - r, cy - r, cx + r, cy + r]
        mdraw.ellipse(outline, fill=1)
    else:
        outline = _shape_polygon(kind, cx, cy, r, angle)
        mdraw.polygon(outline, fill=1)
    return outline, np.array(mask, dtype=bool)


def compose(seed: int, index: int, size: int = 256,
            max_objects: int = 4) -> Tuple[Image.Image, List[Dict]]:
    """Draw one image; returns it and, per placed shape, its 'label', full
    'mask', 'visible' mask, fill 'colour' and the mean colour 'under' it."""
    rng = np.random.RandomState((seed * 1_000_003 + index) % 2**32)
    img = _background(rng, size)
    draw = ImageDraw.Draw(img)
    shapes = []
    for _ in range(rng.randint(1, max_objects + 1)):
        for _ in range(TRIES):  # a placement that hides no shape too much
            label = int(rng.randint(len(CLASSES)))
            r = rng.uniform(*RADIUS) * size
            cx, cy = rng.uniform(r * 0.6, size - r * 0.6, 2)
            outline, m = _shape_mask(CLASSES[label], cx, cy, r,
                                     rng.uniform(0, 2 * np.pi), size)
            if m.any() and all(
                    (sh['visible'] & ~m).sum() >= (1 - MAX_HIDDEN) *
                    sh['mask'].sum() for sh in shapes):
                break
        else:
            continue
        under = np.asarray(img, dtype=np.float32)[m].mean(0)
        for _ in range(TRIES):  # a colour that stands out from under it
            colour = rng.randint(0, 256, 3)
            if np.linalg.norm(colour - under) >= MIN_CONTRAST:
                break
        else:
            colour = np.where(under < 128, 255, 0)  # the opposite corner
        fill = tuple(int(c) for c in colour)
        if CLASSES[label] == 'circle':
            draw.ellipse(outline, fill=fill)
        else:
            draw.polygon(outline, fill=fill)
        for sh in shapes:
            sh['visible'] = sh['visible'] & ~m
        shapes.append(dict(label=label, mask=m, visible=m.copy(),
                           colour=colour, under=under))
    return img, shapes


def make_image(seed: int, index: int, size: int = 256,
               max_objects: int = 4) -> Tuple[Image.Image, List[Dict]]:
    """One image and its objects: dicts with 'label' (0..2) and 'bbox'
    (x1, y1, x2, y2, pixels, inclusive-exclusive) of the visible part."""
    img, shapes = compose(seed, index, size, max_objects)
    objects = []
    for sh in shapes:
        ys, xs = np.nonzero(sh['visible'])
        x1, y1, x2, y2 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
        objects.append(dict(label=sh['label'],
                            bbox=[int(x1), int(y1), int(x2), int(y2)]))
    return img, objects


def _voc_xml(filename, size, objects) -> ET.ElementTree:
    root = ET.Element('annotation')
    ET.SubElement(root, 'filename').text = filename
    s = ET.SubElement(root, 'size')
    for tag, v in (('width', size), ('height', size), ('depth', 3)):
        ET.SubElement(s, tag).text = str(v)
    for o in objects:
        obj = ET.SubElement(root, 'object')
        ET.SubElement(obj, 'name').text = CLASSES[o['label']]
        ET.SubElement(obj, 'difficult').text = '0'
        bb = ET.SubElement(obj, 'bndbox')
        x1, y1, x2, y2 = o['bbox']
        # VOC boxes are 1-based and inclusive.
        for tag, v in (('xmin', x1 + 1), ('ymin', y1 + 1), ('xmax', x2),
                       ('ymax', y2)):
            ET.SubElement(bb, tag).text = str(v)
    return ET.ElementTree(root)


#: Bumped whenever the drawing changes, so stale copies are rewritten.
GENERATOR_VERSION = 2


def version_tag(num_train: int, num_val: int, size: int, seed: int) -> str:
    """What ``ROOT/VERSION`` holds for a set written with these arguments."""
    return (f'synthetic-shapes v{GENERATOR_VERSION} train={num_train} '
            f'val={num_val} size={size} seed={seed}\n')


def is_current(root: str, num_train: int = 800, num_val: int = 200,
               size: int = 256, seed: int = 0) -> bool:
    """Whether ``root`` holds this generator's set for these arguments."""
    try:
        with open(os.path.join(root, 'VERSION')) as f:
            return f.read() == version_tag(num_train, num_val, size, seed)
    except OSError:
        return False


def write_dataset(root: str, num_train: int = 800, num_val: int = 200,
                  size: int = 256, seed: int = 0) -> Dict[str, int]:
    """Write both layouts under ``root`` (and ``ROOT/VERSION`` last, so an
    interrupted write is not taken as current); returns object counts per
    split."""
    for sub in ('JPEGImages', 'Annotations', 'ImageSets/Main',
                'annotations'):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    splits = {'train': range(num_train),
              'val': range(num_train, num_train + num_val)}
    counts = {}
    categories = [dict(id=i + 1, name=n) for i, n in enumerate(CLASSES)]
    for split, indices in splits.items():
        images, annotations, ids = [], [], []
        for index in indices:
            name = f'{index:06d}'
            img, objects = make_image(seed, index, size)
            img.save(os.path.join(root, 'JPEGImages', name + '.jpg'),
                     quality=95)
            _voc_xml(name + '.jpg', size, objects).write(
                os.path.join(root, 'Annotations', name + '.xml'))
            ids.append(name)
            images.append(dict(id=index, file_name=name + '.jpg',
                               width=size, height=size))
            for o in objects:
                x1, y1, x2, y2 = o['bbox']
                annotations.append(dict(
                    id=len(annotations) + 1, image_id=index,
                    category_id=o['label'] + 1,
                    bbox=[x1, y1, x2 - x1, y2 - y1],
                    area=(x2 - x1) * (y2 - y1), iscrowd=0))
        with open(os.path.join(root, 'ImageSets/Main', split + '.txt'),
                  'w') as f:
            f.write('\n'.join(ids) + '\n')
        with open(os.path.join(root, 'annotations',
                               f'instances_{split}.json'), 'w') as f:
            json.dump(dict(images=images, annotations=annotations,
                           categories=categories), f)
        counts[split] = len(annotations)
    with open(os.path.join(root, 'VERSION'), 'w') as f:
        f.write(version_tag(num_train, num_val, size, seed))
    return counts
