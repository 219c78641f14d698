"""The tools destroy the process group when a run ends, also on error."""
import pytest
import torch
import torch.distributed as dist

from adder_det.engine import process_group_destroyed_at_exit


def _open_group(tmp_path):
    dist.init_process_group('gloo', init_method=f'file://{tmp_path}/store',
                            rank=0, world_size=1)
    assert dist.is_initialized()


def test_group_destroyed_after_the_run(tmp_path):
    with process_group_destroyed_at_exit():
        _open_group(tmp_path)
        x = torch.ones(3)
        dist.all_reduce(x)
        assert x.tolist() == [1.0, 1.0, 1.0]
    assert not dist.is_initialized()


def test_group_destroyed_when_the_run_raises(tmp_path):
    with pytest.raises(RuntimeError, match='boom'):
        with process_group_destroyed_at_exit():
            _open_group(tmp_path)
            raise RuntimeError('boom')
    assert not dist.is_initialized()


def test_no_group_is_left_alone():
    with process_group_destroyed_at_exit():
        pass
    assert not dist.is_initialized()
