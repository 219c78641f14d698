"""Apply the adaptive eta scaling at the optimizer step, after all-reduce.

``Adder2d`` rescales its filter gradient to norm eta*sqrt(numel) inside
backward, as the papers (and the official code) do. Under data-parallel
training that happens on each process before DDP averages the gradients, so
the step is the mean of per-process unit-direction gradients, not the
rescaled full-batch gradient a single process would take. ``defer_eta``
moves the scaling to an optimizer step pre-hook: DDP averages the raw
gradients, then the average is rescaled once. In one process the result is
the same as scaling in backward (weight decay and momentum are applied by
the optimizer afterwards in both cases); with gradient accumulation the
accumulated sum is rescaled instead of each micro-batch.

Torch only, so plain PyTorch training loops can use it too::

    handle = defer_eta(model, optimizer)   # model may be DDP-wrapped
    ...                                    # train as usual
    handle.remove()                        # back to scaling in backward
"""
from typing import List

import torch
from torch import nn

from .adder2d import Adder2d, scale_filter_grad


class DeferredEtaHandle:
    """Undoes ``defer_eta``: removes the pre-hooks, scaling back in backward."""

    def __init__(self, modules: List[Adder2d], hook_handles: list):
        self.modules = modules
        self._hook_handles = hook_handles

    def remove(self):
        for h in self._hook_handles:
            h.remove()
        for m in self.modules:
            m.eta_deferred = False


def defer_eta(model: nn.Module,
              *optimizers: torch.optim.Optimizer) -> DeferredEtaHandle:
    """Make every ``Adder2d`` of ``model`` whose eta is set leave its filter
    gradient raw in backward, and rescale it in the ``step`` of the optimizer
    that holds it.

    Every such trainable filter must be held by one of ``optimizers``: one
    held by none would be stepped elsewhere with an unscaled gradient.
    """
    if not optimizers:
        raise TypeError('defer_eta: give the optimizer(s) of the model')
    modules = [m for m in model.modules()
               if isinstance(m, Adder2d) and m.eta is not None]
    owners = []
    for opt in optimizers:
        held = {id(p) for g in opt.param_groups for p in g['params']}
        owners.append([m for m in modules if id(m.weight) in held])
    owned = {id(m) for group in owners for m in group}
    missing = [m for m in modules
               if m.weight.requires_grad and id(m) not in owned]
    if missing:
        raise ValueError(
            f'defer_eta: {len(missing)} Adder2d filter(s) with eta set are '
            f'in none of the optimizers (first: {missing[0]!r}); their '
            'gradient would never be rescaled')

    def pre_hook(group):
        def rescale(opt, args, kwargs):
            for m in group:
                g = m.weight.grad
                if g is not None:
                    scaled = scale_filter_grad(g, m.eta, inplace=True)
                    if scaled is not g:  # half precision: scaled in float
                        g.copy_(scaled)
        return rescale

    handles = [opt.register_step_pre_hook(pre_hook(group))
               for opt, group in zip(optimizers, owners)]
    for m in modules:
        m.eta_deferred = True
    return DeferredEtaHandle(modules, handles)
