"""The end of a distributed run: destroy the process group ourselves.

A process that exits with its gloo group alive leaves the group's C++
threads to interpreter shutdown, which can abort the process ("terminate
called without an active exception") after the run's work is done and
saved: pytorch/pytorch#190489, and once in this project's CI (rank 0 of a
2-process CPU run of tools/dist_train.sh; not reproduced in 37 local runs).
PyTorch asks every process to call ``destroy_process_group()`` once its
communication is over; mmengine's Runner does not, so the tools do it
after ``runner.train()``/``test()`` return.

That was not enough: the abort came back in session 10 (rank 0 of a
2-process tools/dist_test.sh, after destroy_process_group; 1 in 21 local
runs of that command). Once a model has been wrapped in DDP, the group
object outlives destroy_process_group, the DDP wrapper and a garbage
collection (measured: a weak reference to it stays alive, with no Python
referrer), so its C++ side still meets interpreter finalization. The
tools therefore end a successful distributed process with
``exit_after_distributed_run``: logs and streams flushed, then ``os._exit``
without finalization, where the abort happens.
"""
import logging
import os
import sys


def close_process_group():
    """Destroy the default process group if one is open; True if one was.

    For the end of a successful run only: after an error the other ranks
    may still be inside a collective, and a collective shutdown (NCCL's)
    could then wait for them instead of letting the failing process exit
    and torchrun stop the job."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
        return True
    return False


def exit_after_distributed_run(code=0):
    """End this process now, skipping interpreter finalization (see the
    module docstring): for a distributed run whose work is done and saved
    and whose group ``close_process_group`` has closed. Log handlers and
    the standard streams are flushed first; nothing else runs at exit."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code)
