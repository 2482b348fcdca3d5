"""Every test module here trains tiny models on the CPU: one torch thread for each (see tests/conftest.py)."""

import pytest


@pytest.fixture(autouse=True, scope="module")
def _one_thread_per_module(one_torch_thread):
    yield
