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


def runs_to_do(planned: list[PlannedRun], results_root: Path, grid: str, retry_failed: bool = True) -> list[PlannedRun]:
    """The planned runs without a completed result (failed ones only when retry_failed)."""
    todo = []
    for run in planned:
        state = run_state(run_dir(results_root, grid, run.run_id))
        if state == "completed" or (state == "failed" and not retry_failed):
            continue
        todo.append(run)
    return todo
