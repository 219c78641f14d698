"""Glue between adder_det and mmengine/mmdet's running machinery."""
from .adder_optim_constructor import AdderOptimWrapperConstructor
from .checkpoint import allow_mmengine_checkpoints
from .config import load_config
from .cpu_ddp import CPUDistributedDataParallel, configure_launcher
from .deferred_eta_hook import DeferredEtaHook, add_deferred_eta_hook
from .process_group import close_process_group, exit_after_distributed_run
from .rng_state_hook import RNGStateHook


def setup_mmdet():
    """Register mmdet's and adder_det's modules, allow mmengine checkpoints
    under torch's weights-only loading, and make mmdet the default scope."""
    from mmdet.utils import register_all_modules
    register_all_modules(init_default_scope=True)
    import adder_det.models  # noqa: F401  (registers)
    allow_mmengine_checkpoints()


__all__ = ['AdderOptimWrapperConstructor', 'allow_mmengine_checkpoints', 'setup_mmdet', 'RNGStateHook',
           'DeferredEtaHook', 'add_deferred_eta_hook',
           'CPUDistributedDataParallel', 'configure_launcher', 'load_config',
           'close_process_group', 'exit_after_distributed_run']
