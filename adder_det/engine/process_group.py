"""The end of a distributed run: destroy the process group ourselves.

A process that exits with its gloo group alive leaves the group's C++
threads to interpreter shutdown, which can abort the process ("terminate
called without an active exception") after the run's work is done and
saved: pytorch/pytorch#190489, and once in this project's CI (rank 0 of a
2-process CPU run of tools/dist_train.sh; not reproduced in 37 local runs).
PyTorch asks every process to call ``destroy_process_group()`` once its
communication is over; mmengine's Runner does not, so the tools do it
after ``runner.train()``/``test()`` return.
"""


def close_process_group():
    """Destroy the default process group if one is open.

    For the end of a successful run only: after an error the other ranks
    may still be inside a collective, and a collective shutdown (NCCL's)
    could then wait for them instead of letting the failing process exit
    and torchrun stop the job."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
