"""Lets the test modules import their shared helpers (report_helpers.py) by a name unique to this folder."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
