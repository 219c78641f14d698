"""Save and restore the random number generators with the checkpoint.

mmengine's resume restores weights, optimizer, schedulers and the epoch, but
not the RNG states, so random augmentation (flips) and any other draw after
a resume differ from the run that never stopped. This hook stores the
states of Python's ``random``, numpy's global generator and torch's CPU (and
CUDA) generators in the checkpoint and puts them back on resume, so that
training N epochs straight equals training N/2, stopping and resuming
(with ``num_workers=0`` or non-persistent workers, whose seeds mmengine
derives from the seed alone).
"""
import random

import numpy as np
import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class RNGStateHook(Hook):
    priority = 'VERY_LOW'

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        state = dict(python=random.getstate(), numpy=np.random.get_state(),
                     torch=torch.get_rng_state())
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state['cuda'] = torch.cuda.get_rng_state_all()
        checkpoint['rng_state'] = state

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        state = checkpoint.get('rng_state')
        if state is None or not runner._resume:
            return  # load_from / Pretrained: only weights, keep our RNG
        random.setstate(state['python'])
        np.random.set_state(state['numpy'])
        torch.set_rng_state(state['torch'])
        if 'cuda' in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state['cuda'])
