"""One torch thread for these tiny CPU trainings: on a busy 2-core machine, two OpenMP threads
spin-waiting on each other make a 20 ms step take a second. Restored after the module."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
