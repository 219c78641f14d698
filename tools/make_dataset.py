#!/usr/bin/env python
"""Write the built-in synthetic shapes data set (COCO and VOC layouts).

    python tools/make_dataset.py [--out data/synthetic] [--train 800] [--val 200]

Deterministic: the same arguments give byte-identical annotations.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from adder_det.datasets import CLASSES, write_dataset  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--out', default='data/synthetic')
    p.add_argument('--train', type=int, default=800)
    p.add_argument('--val', type=int, default=200)
    p.add_argument('--size', type=int, default=256)
    p.add_argument('--seed', type=int, default=0)
    args = p.parse_args()
    t0 = time.time()
    counts = write_dataset(args.out, args.train, args.val, args.size,
                           args.seed)
    print(f'{args.out}: {args.train} train / {args.val} val images of '
          f'{args.size}x{args.size}, classes {CLASSES}, objects {counts}, '
          f'{time.time() - t0:.1f} s')


if __name__ == '__main__':
    main()
