"""The tools destroy the process group at the end of a run, and a
distributed process then exits without interpreter finalization."""
import os
import subprocess
import sys

import torch
import torch.distributed as dist

from adder_det.engine import close_process_group


def test_open_group_is_destroyed(tmp_path):
    dist.init_process_group('gloo', init_method=f'file://{tmp_path}/store',
                            rank=0, world_size=1)
    x = torch.ones(3)
    dist.all_reduce(x)
    assert x.tolist() == [1.0, 1.0, 1.0]
    assert close_process_group() is True
    assert not dist.is_initialized()


def test_without_a_group_nothing_happens():
    assert not dist.is_initialized()
    assert close_process_group() is False
    assert not dist.is_initialized()


def test_exit_after_distributed_run_flushes_and_keeps_the_code(tmp_path):
    # stdout to a pipe is block-buffered: without the flush the unterminated
    # line would be lost by os._exit; so would a buffered log record.
    code = f"""
import logging
from adder_det.engine import exit_after_distributed_run
class Buffered(logging.FileHandler):
    def flush(self):
        if getattr(self, 'ready', False):
            super().flush()
    def emit(self, record):
        self.stream = self.stream or self._open()
        self.stream.write(self.format(record) + '\\n')
h = Buffered({str(tmp_path / 'log.txt')!r}, delay=True)
logging.getLogger('t').addHandler(h)
logging.getLogger('t').warning('saved')
h.ready = True
print('done', end='')
exit_after_distributed_run(3)
print('not reached')
"""
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONUNBUFFERED'}
    out = subprocess.run([sys.executable, '-c', code], capture_output=True,
                         text=True, timeout=120, env=env)
    assert out.returncode == 3, out.stderr[-2000:]
    assert out.stdout == 'done'
    assert (tmp_path / 'log.txt').read_text() == 'saved\n'
