import os

import pytest
import torch

#: Base seed of the randomized tests; override with ADDER_DET_SEED=...
BASE_SEED = int(os.environ.get('ADDER_DET_SEED', '20261126'))


@pytest.fixture
def base_seed():
    return BASE_SEED


def pytest_report_header(config):
    return f'adder_det: ADDER_DET_SEED={BASE_SEED}, torch {torch.__version__}'
