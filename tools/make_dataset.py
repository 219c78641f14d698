#!/usr/bin/env python
"""Write the built-in synthetic shapes data set (COCO and VOC layouts).

    python tools/make_dataset.py [--out data/synthetic] [--train 800] [--val 200]
        [--if-stale]

Deterministic: the same arguments give byte-identical annotations.
``--if-stale`` skips the work when OUT/VERSION says OUT already holds this
generator version's set for these arguments.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from adder_det.datasets import CLASSES, write_dataset  # noqa: E402
from adder_det.datasets.synthetic_shapes import is_current  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--out', default='data/synthetic')
    p.add_argument('--train', type=int, default=800)
    p.add_argument('--val', type=int, default=200)
    p.add_argument('--size', type=int, default=256)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--if-stale', action='store_true',
                   help='do nothing if OUT already holds this set')
    args = p.parse_args()
    if args.if_stale and is_current(args.out, args.train, args.val,
                                    args.size, args.seed):
        print(f'{args.out}: up to date')
        return
    t0 = time.time()
    counts = write_dataset(args.out, args.train, args.val, args.size,
                           args.seed)
    print(f'{args.out}: {args.train} train / {args.val} val images of '
          f'{args.size}x{args.size}, classes {CLASSES}, objects {counts}, '
          f'{time.time() - t0:.1f} s')


if __name__ == '__main__':
    main()
