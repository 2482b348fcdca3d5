"""Local executor: runs one after another in this process, or N at once in joblib worker processes.

The live logs chosen for the runs (`ablate run --log`, `ablate.log.logging_to`) hold for this
process; each worker is handed them with its run, as a worker process does not share the choice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from joblib import Parallel, delayed
from tqdm.auto import tqdm

from ablate.execute.base import Check, Executor, Say, Started, Summary
from ablate.execute.claim import run_claimed
from ablate.log import chosen_logs, logging_to
from ablate.plan import PlannedRun


def _describe(run: PlannedRun) -> str:
    parts = []
    for axis, value in run.axes.items():
        parts.append(f"{axis}={'+'.join(value) if isinstance(value, list) else value}")
    return f"{run.run_id} " + " ".join(parts)


def _run_with_bar(run: PlannedRun, grid: str, results_root: Path, show: bool, retry_failed: bool) -> dict[str, Any] | None:
    """One run with an inner progress bar over its training steps (epoch, loss)."""
    bar = tqdm(total=run.spec.train.epochs, desc=_describe(run)[:60], unit="epoch", leave=False, position=1, disable=not show)

    def progress(event: dict[str, Any]) -> None:
        bar.n = round(event["epoch"] - 1 + event["step"] / event["steps_per_epoch"], 2)
        bar.set_postfix(loss=f"{event['loss']:.3f}")

    try:
        return run_claimed(run, grid, results_root, retry_failed, progress)
    finally:
        bar.close()


def _run_quietly(run: PlannedRun, grid: str, results_root: Path, retry_failed: bool,
                 logs: tuple[str, ...] = ()) -> dict[str, Any] | None:
    with logging_to(logs):  # in a worker process: the logs the parent chose
        return run_claimed(run, grid, results_root, retry_failed)


def run_local(
    todo: list[PlannedRun], grid: str, results_root: Path, total: int, jobs: int = 1, retry_failed: bool = True,
    show_progress: bool = True,
) -> Summary:
    """Run `todo` (the grid's `total` planned runs less those already done) here, in order or `jobs` at once."""
    summary = Summary(grid=grid, total=total, skipped=total - len(todo))
    if not todo:
        return summary
    outer = tqdm(total=len(todo), desc=f"grid {grid}", unit="run", position=0, disable=not show_progress)
    if jobs <= 1:
        results = []
        for run in todo:
            results.append(_run_with_bar(run, grid, results_root, show_progress, retry_failed))
            _count(summary, results[-1])
            outer.set_postfix(done=summary.completed, failed=len(summary.failed))
            outer.update(1)
    else:
        # Worker processes, each with its own torch threads: runs are independent and write their own files.
        logs = chosen_logs()
        tasks = (delayed(_run_quietly)(run, grid, results_root, retry_failed, logs) for run in todo)
        for result in Parallel(n_jobs=jobs, return_as="generator_unordered")(tasks):
            _count(summary, result)
            outer.set_postfix(done=summary.completed, failed=len(summary.failed))
            outer.update(1)
    outer.close()
    return summary


def _count(summary: Summary, result: dict[str, Any] | None) -> None:
    if result is None:  # another process held the run, or finished it first
        summary.skipped += 1
    elif result["status"] == "completed":
        summary.completed += 1
    else:
        summary.failed.append((result["run_id"], result["error"]["message"]))


class LocalExecutor(Executor):
    """Trains in this machine's processes: `submit` checks the runs' datasets, `follow` trains them."""

    name = "local"

    def __init__(self, grid: str, results_root: Path, jobs: int = 1, retry_failed: bool = True):
        super().__init__(grid, results_root, retry_failed)
        self.jobs = jobs

    def submit(self, todo: list[PlannedRun], total: int, check: Check, say: Say) -> Started:
        check(todo)
        return Started(todo, total)

    def follow(self, started: Started, say: Say, show_progress: bool) -> Summary:
        return run_local(started.runs, self.grid, self.results_root, started.total, jobs=self.jobs,
                         retry_failed=self.retry_failed, show_progress=show_progress)
