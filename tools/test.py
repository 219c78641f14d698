#!/usr/bin/env python
"""Evaluate a checkpoint with mmengine's Runner (mmdet's command line).

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out FILE.pkl]
        [--show-dir DIR] [--cfg-options k=v ...] [--launcher pytorch]
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))


def parse_args(argv=None):
    from mmengine.config import DictAction
    p = argparse.ArgumentParser(description='Test (and evaluate) a detector')
    p.add_argument('config')
    p.add_argument('checkpoint')
    p.add_argument('--work-dir', help='where the evaluation log goes')
    p.add_argument('--out', help='dump predictions to a .pkl file')
    p.add_argument('--show-dir', help='draw predictions into '
                   'WORK_DIR/TIMESTAMP/SHOW_DIR')
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   help='override config keys, key=value (mmengine syntax)')
    p.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                   default='none')
    p.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = p.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def main(argv=None):
    args = parse_args(argv)
    from adder_det.engine import (close_process_group, load_config,
                                  setup_mmdet)
    setup_mmdet()
    from mmengine.runner import Runner

    if not osp.isfile(args.checkpoint):
        raise FileNotFoundError(f'test: no checkpoint {args.checkpoint}')
    cfg = load_config(args.config, args.cfg_options, args.launcher,
                      args.work_dir, tool='test')
    cfg.load_from = args.checkpoint
    if args.show_dir:
        vis = cfg.default_hooks.setdefault(
            'visualization', dict(type='DetVisualizationHook'))
        vis.draw = True
        vis.test_out_dir = args.show_dir
    if args.out:
        if not args.out.endswith(('.pkl', '.pickle')):
            raise ValueError('test: --out must end in .pkl or .pickle')
        cfg.test_evaluator = [cfg.test_evaluator] if isinstance(
            cfg.test_evaluator, dict) else list(cfg.test_evaluator)
        cfg.test_evaluator.append(dict(type='DumpDetResults',
                                       out_file_path=args.out))
    runner = Runner.from_cfg(cfg)
    runner.test()
    return close_process_group()


if __name__ == '__main__':
    if main():  # a distributed run, done: no interpreter finalization
        from adder_det.engine import exit_after_distributed_run
        exit_after_distributed_run()
