"""Read a config the way mmdet's tools do, for tools/train.py and test.py."""
import os.path as osp

from .cpu_ddp import configure_launcher


def load_config(path, cfg_options=None, launcher='none', work_dir=None,
                tool='adder_det'):
    """Config from ``path`` with ``--cfg-options`` merged, the launcher set
    up (gloo on CPU) and ``work_dir`` chosen: the argument, else the
    config's, else ``./work_dirs/<config name>``."""
    from mmengine.config import Config
    if not osp.isfile(path):
        raise FileNotFoundError(f'{tool}: no config file {path}')
    cfg = Config.fromfile(path)
    configure_launcher(cfg, launcher)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(path))[0])
    return cfg
