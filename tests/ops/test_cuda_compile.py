"""Every .cu file compiles with nvcc alone (no torch headers) for sm_80 and
sm_90, without register spills. Needs nvcc only, not a GPU."""
import pathlib
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
CU_FILES = sorted((ROOT / 'csrc').rglob('*.cu'))
ARCHS = ('80', '90')

pytestmark = pytest.mark.skipif(shutil.which('nvcc') is None,
                                reason='nvcc not on PATH')


def compile_cu(path, arch, tmp):
    cmd = ['nvcc', '-std=c++17', '-O3', '-c', str(path), '-o',
           str(tmp / f'{path.stem}_{arch}.o'),
           f'-gencode=arch=compute_{arch},code=sm_{arch}', '-Xptxas', '-v']
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def test_there_are_cuda_kernels():
    assert CU_FILES, 'no .cu files under csrc/'


@pytest.mark.parametrize('path', CU_FILES, ids=[p.name for p in CU_FILES])
def test_compiles_without_spills(path, tmp_path):
    with ThreadPoolExecutor(len(ARCHS)) as pool:
        results = list(pool.map(lambda a: compile_cu(path, a, tmp_path),
                                ARCHS))
    for arch, out in zip(ARCHS, results):
        log = out.stdout + out.stderr
        assert out.returncode == 0, f'sm_{arch}: nvcc failed:\n{log}'
        spills = re.findall(r'(\d+) bytes spill stores', log)
        assert spills, f'sm_{arch}: no ptxas report:\n{log}'
        bad = [line for line in log.splitlines()
               if re.search(r'[1-9]\d* bytes spill (stores|loads)', line)]
        assert not bad, f'sm_{arch}: register spills:\n' + '\n'.join(bad)
