"""Test setup for the augmentation tests.

* Lets the test modules import their shared helpers (augment_helpers.py) by a name unique to this folder.
* Runs them on one intra-op thread: the tensors are small, and on a shared 2-core machine two
  OpenMP threads wait on each other far longer than they save (restored afterwards for other folders).
"""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(autouse=True, scope="module")
def _one_thread_per_module(one_torch_thread):  # tests/conftest.py's fixture, for each module here
    yield
