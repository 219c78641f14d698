#!/usr/bin/env python
"""Train a detector with mmengine's Runner (mmdet's command line).

    python tools/train.py CONFIG [--work-dir DIR] [--resume [auto|PATH]]
        [--amp] [--auto-scale-lr] [--cfg-options k=v ...] [--launcher pytorch]

Multi-GPU / multi-node: tools/dist_train.sh (torchrun). adder_det is
registered before the config is read, so its configs need no install step
beyond `pip install -e .`.
"""
import argparse
import logging
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))


def parse_args(argv=None):
    from mmengine.config import DictAction
    p = argparse.ArgumentParser(description='Train a detector')
    p.add_argument('config', help='train config file path')
    p.add_argument('--work-dir', help='where logs and checkpoints go')
    p.add_argument('--amp', action='store_true',
                   help='automatic mixed precision (AmpOptimWrapper)')
    p.add_argument('--auto-scale-lr', action='store_true',
                   help='scale the lr by total batch / base_batch_size')
    p.add_argument('--resume', nargs='?', type=str, const='auto',
                   help='resume from PATH, or with no value (or "auto") '
                   'from the latest checkpoint in the work dir')
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   help='override config keys, key=value (mmengine syntax)')
    p.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                   default='none', help='job launcher')
    p.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = p.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def uses_amp(cfg) -> bool:
    kind = cfg.optim_wrapper.get('type', 'OptimWrapper')
    return getattr(kind, '__name__', kind) in ('AmpOptimWrapper',
                                               'mmengine.AmpOptimWrapper')


def check_amp_device():
    """mmengine's AmpOptimWrapper refuses other devices, but only once the
    runner is built; say so up front."""
    from mmengine.device import (is_cuda_available, is_mlu_available,
                                 is_musa_available, is_npu_available)
    if not (is_cuda_available() or is_npu_available() or is_mlu_available()
            or is_musa_available()):
        raise SystemExit('train: AMP (--amp, or AmpOptimWrapper in the '
                         "config) needs a GPU: mmengine's AmpOptimWrapper "
                         'trains on CUDA, NPU, MLU or MUSA devices only')


def build_cfg(args):
    from adder_det.engine import add_deferred_eta_hook, load_config
    from mmengine.logging import print_log

    cfg = load_config(args.config, args.cfg_options, args.launcher,
                      args.work_dir, tool='train')
    if args.amp:
        if uses_amp(cfg):
            print_log('AMP is already on in the config', logger='current',
                      level=logging.WARNING)
        else:
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.loss_scale = 'dynamic'
    if uses_amp(cfg) and add_deferred_eta_hook(cfg):
        # The loss scale must not meet the eta scaling in backward
        # (adder_det/engine/deferred_eta_hook.py).
        print_log('AMP: added DeferredEtaHook (adder filters are rescaled '
                  'after the loss scale is divided out)', logger='current')
    if args.auto_scale_lr:
        if not cfg.get('auto_scale_lr', {}).get('base_batch_size'):
            raise ValueError('--auto-scale-lr needs auto_scale_lr.'
                             'base_batch_size in the config')
        cfg.auto_scale_lr.enable = True
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        if not osp.isfile(args.resume):
            raise FileNotFoundError(f'train: --resume {args.resume}: no '
                                    'such checkpoint')
        cfg.resume, cfg.load_from = True, args.resume
    return cfg


def main(argv=None):
    args = parse_args(argv)
    from adder_det.engine import close_process_group, setup_mmdet
    setup_mmdet()
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner

    cfg = build_cfg(args)
    if uses_amp(cfg):
        check_amp_device()
    runner = (Runner.from_cfg(cfg) if 'runner_type' not in cfg
              else RUNNERS.build(cfg))
    runner.train()
    return close_process_group()


if __name__ == '__main__':
    if main():  # a distributed run, done: no interpreter finalization
        from adder_det.engine import exit_after_distributed_run
        exit_after_distributed_run()
