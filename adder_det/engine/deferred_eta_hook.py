"""Run the adder layers' eta scaling after DDP's gradient all-reduce.

Adds ``adder_det.ops.defer_eta`` to a Runner: at ``before_train`` every
``Adder2d`` of the model (DDP-wrapped or not) stops rescaling its filter
gradient in backward, and the optimizer rescales the averaged gradient just
before its step. One process trains exactly as before; N processes now take
the step one process would take on the same total batch. The adder configs
list it in ``custom_hooks``.
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
