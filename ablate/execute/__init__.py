"""Executors: run the pending runs of a plan, locally or on SLURM, and summarise what happened.

Both executors share this contract: a run whose result.json says `completed` is never trained
again; every run they start ends with a result.json (completed or failed) written by
`ablate.run.run_and_store`. Their common interface is `ablate.execute.base.Executor`;
`make_executor` picks one. Importing this package is cheap (no torch, joblib or submitit): each
executor's module is imported only when that executor is made.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from ablate.execute.base import Executor, ExecutorError, RunView, Started, Summary, describe_failure
from ablate.plan import PlannedRun
from ablate.store import run_dir, run_state

if TYPE_CHECKING:
    from ablate.config import GridSpec

__all__ = ["Executor", "ExecutorError", "RunView", "Started", "Summary", "choose_executor", "describe_failure",
           "look", "make_executor", "run_states", "runs_to_do"]


def run_states(planned: list[PlannedRun], results_root: Path, grid: str) -> dict[str, str]:
    """run_id -> state (completed, failed, corrupt, pending) from each run's result file, read once."""
    return {run.run_id: run_state(run_dir(results_root, grid, run.run_id)) for run in planned}


def runs_to_do(planned: list[PlannedRun], states: dict[str, str], retry_failed: bool = True) -> list[PlannedRun]:
    """The planned runs without a completed result (failed ones only when retry_failed)."""
    skip = {"completed"} if retry_failed else {"completed", "failed"}
    return [run for run in planned if states[run.run_id] not in skip]


def choose_executor(wanted: str) -> tuple[str, str]:
    """'local' or 'slurm' for --executor auto|local|slurm, with the reason for auto's choice.

    auto picks SLURM where it is available, except inside a SLURM allocation (SLURM_JOB_ID set: an
    allocation the user wants to use as it is). SLURM_JOB_ID is read here, not through
    submitit.JobEnvironment, because that one recognises only jobs submitit started, and an
    `salloc` shell is an allocation too.
    """
    if wanted != "auto":
        return wanted, f"--executor {wanted}"
    if os.environ.get("SLURM_JOB_ID"):
        return "local", "inside SLURM job " + os.environ["SLURM_JOB_ID"]
    from ablate.execute.slurm import queries

    available, why = queries.slurm_available()
    return ("slurm" if available else "local"), why


def make_executor(wanted: str, grid: GridSpec, results_root: Path, jobs: int = 1, retry_failed: bool = True,
                  processes: int = 1) -> Executor:
    """The executor for --executor auto|local|slurm, made for one grid and results folder.

    `jobs` (runs at once in worker processes) and `processes` (devices per run, --devices) are the local
    executor's; the SLURM executor takes its settings from the grid's `slurm:` section.
    """
    name, why = choose_executor(wanted)
    if name == "slurm" and processes > 1:
        raise ExecutorError(f"--devices {processes} is for the local executor; on SLURM ({why}) a run's devices are "
                            "its tasks: set slurm.gpus_per_node (one task per GPU) and slurm.nodes in the grid, "
                            "e.g. --set slurm.gpus_per_node=4, or run with --executor local")
    if name == "slurm":
        from ablate.execute.slurm import SlurmExecutor

        return SlurmExecutor(grid.name, results_root, grid.slurm, why, explicit=wanted == "slurm",
                             retry_failed=retry_failed)
    from ablate.execute.local import LocalExecutor

    return LocalExecutor(grid.name, results_root, jobs=jobs, retry_failed=retry_failed, processes=processes)


def look(planned: list[PlannedRun], grid: str, results_root: Path) -> list[RunView]:
    """What is known about each run, whichever executor started it: its result file, else the job its
    folder records (only SLURM jobs are recorded), whose state the scheduler gives."""
    from ablate.execute.slurm.follow import Follower

    return Follower(grid, results_root).look(planned)
