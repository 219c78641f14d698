"""mmengine checkpoints load weights-only; crafted ones are refused."""
import os
import pickle

import pytest
import torch
from mmengine.logging import HistoryBuffer, MessageHub

from adder_det.engine import allow_mmengine_checkpoints


class RunsCode:
    """Unpickling this would run a shell command."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}', ))


class AbusesGetattr:
    """Unpickling this would fetch HistoryBuffer.__init__.__globals__."""

    def __reduce__(self):
        return (getattr, (HistoryBuffer, '__init__'))


def mmengine_like_checkpoint():
    hub = MessageHub.get_instance('adder_det_test')
    hub.update_scalar('train/loss', 1.5)
    hub.update_scalar('train/loss', 0.5)
    return dict(state_dict={'w': torch.randn(3)}, message_hub=hub.state_dict(),
                meta=dict(epoch=1, seed=0))


def test_mmengine_checkpoint_round_trip(tmp_path):
    allow_mmengine_checkpoints()
    path = tmp_path / 'ckpt.pth'
    ckpt = mmengine_like_checkpoint()
    torch.save(ckpt, path)
    loaded = torch.load(path)  # weights-only, torch's default
    buf = loaded['message_hub']['log_scalars']['train/loss']
    assert isinstance(buf, HistoryBuffer) and buf.min() == 0.5
    torch.testing.assert_close(loaded['state_dict']['w'],
                               ckpt['state_dict']['w'])


def test_checkpoint_that_runs_code_is_refused(tmp_path):
    allow_mmengine_checkpoints()
    marker = tmp_path / 'pwned'
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {}, 'meta': RunsCode(marker)}, path)
    with pytest.raises(pickle.UnpicklingError, match='system'):
        torch.load(path)
    from mmengine.runner import load_checkpoint
    with pytest.raises(pickle.UnpicklingError):
        load_checkpoint(torch.nn.Linear(2, 2), str(path))
    assert not marker.exists()


def test_getattr_is_restricted_to_history_buffer_statistics(tmp_path):
    allow_mmengine_checkpoints()
    path = tmp_path / 'getattr.pth'
    torch.save({'x': AbusesGetattr()}, path)
    with pytest.raises(pickle.UnpicklingError, match='only HistoryBuffer'):
        torch.load(path)
