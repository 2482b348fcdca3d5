"""Defaults for the whole test suite."""

import os

# CI runs a real SLURM cluster (.ci/run), where `ablate run`'s default executor, auto, would send every
# CLI test's runs to it. Tests run locally unless they ask for SLURM (tests/slurm/ pass --executor slurm);
# set ABLATE_EXECUTOR=auto before pytest to send them all to the cluster.
os.environ.setdefault("ABLATE_EXECUTOR", "local")
