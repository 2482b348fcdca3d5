"""`python -m ablate ARGS` in a fresh interpreter, as a user types it: the one way the suite runs the CLI
as a separate process (tests/conftest.py puts this folder on the path)."""

import subprocess
import sys
from pathlib import Path


def run_ablate(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Exit status, stdout and stderr of the command; `env` None inherits this process's environment."""
    return subprocess.run([sys.executable, "-m", "ablate", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)
