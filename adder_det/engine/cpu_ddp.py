"""Distributed CPU (gloo) runs of mmengine's Runner.

mmengine 0.10.7 assumes CUDA for the 'pytorch' launcher: its init_dist calls
``torch.cuda.set_device`` and its DDP wrapper always gets
``device_ids=[LOCAL_RANK]``, which torch rejects for a CPU module. Without
CUDA we therefore open the gloo process group ourselves (torchrun's env://
variables), which the Runner then finds initialized, and use a DDP wrapper
without device_ids, so the same ``tools/dist_train.sh`` runs on CPU.
"""
from mmengine.model import MMDistributedDataParallel
from mmengine.registry import MODEL_WRAPPERS


@MODEL_WRAPPERS.register_module()
class CPUDistributedDataParallel(MMDistributedDataParallel):

    def __init__(self, module, device_ids=None, **kwargs):
        super().__init__(module=module, device_ids=None, **kwargs)


def configure_launcher(cfg, launcher: str):
    """Set ``cfg.launcher``; for distributed runs without CUDA, switch to
    the gloo backend and the CPU DDP wrapper."""
    import torch
    import torch.distributed as dist
    cfg.launcher = launcher
    if launcher != 'none' and not torch.cuda.is_available():
        if launcher != 'pytorch':
            raise ValueError(f'--launcher {launcher} needs GPUs; on CPU use '
                             'the pytorch launcher (tools/dist_train.sh)')
        if not dist.is_initialized():
            dist.init_process_group(backend='gloo')
        cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})
        cfg.env_cfg.dist_cfg.backend = 'gloo'
        cfg.model_wrapper_cfg = dict(
            type='CPUDistributedDataParallel', broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False))
