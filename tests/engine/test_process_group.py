"""The tools destroy the process group at the end of a run."""
import torch
import torch.distributed as dist

from adder_det.engine import close_process_group


def test_open_group_is_destroyed(tmp_path):
    dist.init_process_group('gloo', init_method=f'file://{tmp_path}/store',
                            rank=0, world_size=1)
    x = torch.ones(3)
    dist.all_reduce(x)
    assert x.tolist() == [1.0, 1.0, 1.0]
    close_process_group()
    assert not dist.is_initialized()


def test_without_a_group_nothing_happens():
    assert not dist.is_initialized()
    close_process_group()
    assert not dist.is_initialized()
