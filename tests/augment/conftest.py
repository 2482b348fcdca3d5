"""Test setup for the augmentation tests.

* Lets the test modules import their shared helpers (augment_helpers.py) by a name unique to this folder.
* Runs them on one intra-op thread: the tensors are small, and on a shared 2-core machine two
  OpenMP threads wait on each other far longer than they save (restored afterwards for other folders).
"""

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(autouse=True, scope="package")
def _one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
