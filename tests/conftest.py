"""Defaults for the whole test suite."""

import os
import sys
from pathlib import Path

# CI runs a real SLURM cluster (.ci/run), where `ablate run`'s default executor, auto, would send every
# CLI test's runs to it. Tests run locally unless they ask for SLURM (tests/slurm/ pass --executor slurm);
# set ABLATE_EXECUTOR=auto before pytest to send them all to the cluster.
os.environ.setdefault("ABLATE_EXECUTOR", "local")

sys.path.insert(0, str(Path(__file__).parent))  # cli_helpers, shared by tests in every folder
# The repository root too: under --import-mode=importlib a test module is named tests.<name>, and a function of
# it handed to a spawned process (the ranks of tests/test_distributed*.py) is imported there by that name;
# spawned processes start from this sys.path.
sys.path.insert(1, str(Path(__file__).parent.parent))

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny CPU trainings: one torch thread. On a busy 2-core machine two OpenMP threads spin-waiting
    on each other can make a 20 ms step take a second. Opt in per module with
    `pytestmark = pytest.mark.usefixtures("one_torch_thread")`; restored after the module."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
