"""Run the adder layers' eta scaling after DDP's gradient all-reduce.

Adds ``adder_det.ops.defer_eta`` to a Runner: at ``before_train`` every
``Adder2d`` of the model (DDP-wrapped or not) stops rescaling its filter
gradient in backward, and the optimizer rescales the averaged gradient just
before its step. One process trains exactly as before; N processes now take
the step one process would take on the same total batch. The adder configs
list it in ``custom_hooks``.

Mixed precision needs it too: a loss scaler (AmpOptimWrapper) multiplies the
gradients by its scale and divides them again before the step, but scaling
in backward sets the filter gradient's norm, erasing the factor, so the
division would shrink the filter step by the loss scale. At the step the
gradients are already unscaled. tools/train.py adds the hook whenever the
optimizer wrapper is AmpOptimWrapper (``add_deferred_eta_hook``).
"""
from mmengine.hooks import Hook
from mmengine.optim import OptimWrapperDict
from mmengine.registry import HOOKS

from adder_det.ops import defer_eta


@HOOKS.register_module()
class DeferredEtaHook(Hook):
    priority = 'NORMAL'

    def __init__(self):
        self._handles = []

    def before_train(self, runner) -> None:
        wrappers = runner.optim_wrapper
        if isinstance(wrappers, OptimWrapperDict):
            wrappers = list(wrappers.values())
        else:
            wrappers = [wrappers]
        self._handles.append(
            defer_eta(runner.model, *[w.optimizer for w in wrappers]))

    def after_train(self, runner) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []


def add_deferred_eta_hook(cfg) -> bool:
    """Append ``DeferredEtaHook`` to ``cfg.custom_hooks`` unless a hook of
    that type is there; returns whether it was added."""
    hooks = list(cfg.get('custom_hooks') or [])
    for hook in hooks:
        kind = hook.get('type') if isinstance(hook, dict) else hook
        if kind is DeferredEtaHook or (isinstance(kind, str) and kind.split(
                '.')[-1] == 'DeferredEtaHook'):
            return False
    cfg.custom_hooks = hooks + [dict(type='DeferredEtaHook')]
    return True
