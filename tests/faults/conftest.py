"""tests/faults: bad input, failing runs, kills, concurrent writers, safe loading, disk problems.

The helpers live in a uniquely named module (faults_helpers) put on the path here, as in tests/augment.
"""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from faults_helpers import Zygote  # noqa: E402


@pytest.fixture(scope="session")
def zygote():
    """A process with ablate and torch imported that forks `ablate` commands on demand (see Zygote)."""
    server = Zygote()
    yield server
    server.close()
