#!/usr/bin/env python
"""Detect objects in an image or a folder and draw the boxes.

    python tools/demo.py IMAGE_OR_DIR CONFIG CHECKPOINT --out FILE_OR_DIR
        [--score-thr 0.3] [--device cpu]

One image -> ``--out`` is the PNG to write; a folder -> ``--out`` is a
folder, one PNG per image. Drawing uses mmdet's DetLocalVisualizer.
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
IMAGE_EXTS = ('.jpg', '.jpeg', '.png', '.bmp')


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('inputs', help='an image or a folder of images')
    p.add_argument('config')
    p.add_argument('checkpoint')
    p.add_argument('--out', required=True)
    p.add_argument('--score-thr', type=float, default=0.3)
    p.add_argument('--device', default='cpu')
    args = p.parse_args(argv)
    from adder_det.engine import setup_mmdet
    setup_mmdet()
    import mmcv
    from mmdet.apis import inference_detector, init_detector
    from mmdet.registry import VISUALIZERS

    if osp.isdir(args.inputs):
        images = sorted(osp.join(args.inputs, f)
                        for f in os.listdir(args.inputs)
                        if f.lower().endswith(IMAGE_EXTS))
        if not images:
            raise FileNotFoundError(f'demo: no images in {args.inputs}')
        os.makedirs(args.out, exist_ok=True)
        outs = [osp.join(args.out, osp.splitext(osp.basename(i))[0] + '.png')
                for i in images]
    elif osp.isfile(args.inputs):
        images, outs = [args.inputs], [args.out]
    else:
        raise FileNotFoundError(f'demo: no image or folder {args.inputs}')
    for path, what in ((args.config, 'config'),
                       (args.checkpoint, 'checkpoint')):
        if not osp.isfile(path):
            raise FileNotFoundError(f'demo: no {what} {path}')

    model = init_detector(args.config, args.checkpoint, device=args.device)
    visualizer = VISUALIZERS.build(dict(type='DetLocalVisualizer',
                                        name='adder_det_demo'))
    visualizer.dataset_meta = model.dataset_meta
    for image, out in zip(images, outs):
        result = inference_detector(model, image)
        img = mmcv.imread(image, channel_order='rgb')
        visualizer.add_datasample(osp.basename(image), img,
                                  data_sample=result, draw_gt=False,
                                  show=False, out_file=out,
                                  pred_score_thr=args.score_thr)
        n = int((result.pred_instances.scores >= args.score_thr).sum())
        print(f'{image}: {n} boxes >= {args.score_thr} -> {out}')


if __name__ == '__main__':
    main()
