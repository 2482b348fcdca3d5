"""Executors: run the pending runs of a plan, locally or on SLURM, and summarise what happened.

Both executors share this contract: a run whose result.json says `completed` is never trained
again; every run they start ends with a result.json (completed or failed) written by
`ablate.run.run_and_store`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ablate.plan import PlannedRun
from ablate.store import run_dir, run_state


@dataclass
class Summary:
    grid: str
    total: int
    skipped: int = 0  # already completed before this call
    completed: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (run_id, error message)


def run_states(planned: list[PlannedRun], results_root: Path, grid: str) -> dict[str, str]:
    """run_id -> state (completed, failed, corrupt, pending) from each run's result file, read once."""
    return {run.run_id: run_state(run_dir(results_root, grid, run.run_id)) for run in planned}


def runs_to_do(planned: list[PlannedRun], states: dict[str, str], retry_failed: bool = True) -> list[PlannedRun]:
    """The planned runs without a completed result (failed ones only when retry_failed)."""
    skip = {"completed"} if retry_failed else {"completed", "failed"}
    return [run for run in planned if states[run.run_id] not in skip]
