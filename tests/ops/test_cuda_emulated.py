"""The CUDA kernels' indexing, checked without a GPU: csrc/cuda's tiles and
kernels compiled for the host (cuda_emulation/host_cuda.h runs a block's 256
threads as std::threads) against a float64 loop. Needs g++ and the CUDA
headers (found beside nvcc), not a GPU; the GPU tests run the same kernels
for real where a GPU is present."""
import os
import pathlib
import re
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
HERE = pathlib.Path(__file__).resolve().parent / 'cuda_emulation'


def cuda_include():
    """The CUDA headers' folder: CUDA_HOME's, else the one nvcc uses."""
    dirs = []
    if os.environ.get('CUDA_HOME'):
        dirs.append(pathlib.Path(os.environ['CUDA_HOME'], 'include'))
    if shutil.which('nvcc'):
        out = subprocess.run(
            ['nvcc', '--dryrun', '-x', 'cu', '-c', os.devnull, '-o',
             os.devnull], capture_output=True, text=True).stderr
        dirs += [pathlib.Path(d) for d in re.findall(r'INCLUDES="-I([^"]+)"',
                                                     out)]
    return next((d for d in dirs if (d / 'cuda_fp16.h').exists()), None)


pytestmark = pytest.mark.skipif(
    cuda_include() is None or shutil.which('g++') is None,
    reason='needs g++ and the CUDA headers (nvcc)')


def test_kernels_match_float64_loops(tmp_path):
    exe = tmp_path / 'emulate'
    build = subprocess.run(
        ['g++', '-std=c++20', '-O2', '-pthread', f'-I{cuda_include()}',
         f'-I{ROOT / "csrc" / "cuda"}', str(HERE / 'emulate.cpp'), '-o',
         str(exe)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr
    run = subprocess.run([str(exe)], capture_output=True, text=True,
                         timeout=600)
    lines = run.stdout.splitlines()
    failed = [line for line in lines if line.startswith('FAIL')]
    assert run.returncode == 0 and not failed, '\n'.join(failed) or run.stderr
    # Every tile, both split modes and the fast sign rule with its tie
    # kernel (float and double, planted ties and non-finite values) were
    # exercised.
    for what in ('forward tile 0', 'forward tile 1', 'forward tile 2',
                 'forward tile 3', 'input grad tile 1', 'input grad tile 2',
                 'input grad tile 3', 'splits 1', 'splits 8 err',
                 'splits 8 atomic', 'deterministic', 'float  n2 c67',
                 'sign fast ties planted', 'sign fast ties, NaN, inf planted',
                 'double n1 c2 5x5 cout520 k3x3 s1,1 p1,1 d1,1 g1 sms4 sign '
                 'fast ties planted'):
        assert any(what in line for line in lines), what
    assert lines[-1] == 'all cases match'
