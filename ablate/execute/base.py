"""The executor seam: what `ablate run` asks of an executor, whichever one trains the runs.

An executor is made for one grid and one results folder (`ablate.execute.make_executor`). The CLI
calls, in order:

    started = executor.submit(todo, total, check, say)   start the runs that are not done
    summary = executor.follow(started, say, show_progress) wait for them, showing progress

`submit` calls `check(runs)` (the CLI's dataset check; it raises for bad input) on the runs it is
about to start, before starting any. The local executor trains in this process, so its `submit`
only checks and its `follow` does the training; the SLURM executor submits job arrays in `submit`
and `follow` watches the scheduler until every run has a result. An executor whose runs go on
without this process (`keeps_running` set) may be left after `submit` (`--no-wait`), and a Ctrl-C in
`follow` stops only the waiting.

What is known about each run at any moment (its result, else its job) is `ablate.execute.look`,
shared by both executors: `ablate status` reads it without choosing an executor.

Nothing here imports torch, kornia or submitit: `ablate run --dry-run` and `ablate status` use
these types and must start fast.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ablate.plan import PlannedRun

if TYPE_CHECKING:
    from ablate.execute.slurm.queries import JobState

LOG_TAIL_LINES = 20


class ExecutorError(Exception):
    """The executor cannot start the runs (SLURM not reachable, sbatch refused the jobs): bad input,
    exit status 2. The message is one line saying what to change."""


@dataclass
class Summary:
    grid: str
    total: int
    skipped: int = 0  # already completed before this call
    completed: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (run_id, error message)
    lost: int = 0  # found without a result and without a live job before starting: reported then, count as failed


@dataclass
class Started:
    """What `submit` started: the runs `follow` waits for, and the runs found lost while choosing them."""

    runs: list[PlannedRun]
    total: int  # planned runs of the grid, done or not
    lost: int = 0


@dataclass
class RunView:
    """What is known about one run: its result, else its job's state."""

    run: PlannedRun
    state: str  # completed | failed | running | queued | lost | pending (no result, no live job) | corrupt
    result: dict[str, Any] | None = None
    job_id: str | None = None
    job: JobState | None = None
    log: Path | None = None
    note: str = ""


Say = Callable[[str], None]
Check = Callable[[list[PlannedRun]], None]


class Executor(ABC):
    """Trains a grid's pending runs somewhere, and waits for them."""

    name: ClassVar[str]
    # Where the runs go on when this process stops waiting ("on SLURM"); None when they stop with it.
    keeps_running: ClassVar[str | None] = None
    # Appended to "nothing to train" when every run is already done.
    idle_note: ClassVar[str] = ""

    def __init__(self, grid: str, results_root: Path, retry_failed: bool = True):
        self.grid = grid
        self.results_root = Path(results_root)
        self.retry_failed = retry_failed

    @abstractmethod
    def submit(self, todo: list[PlannedRun], total: int, check: Check, say: Say) -> Started:
        """Start `todo` (the runs without a completed result); `started.runs` empty: nothing to wait for."""

    @abstractmethod
    def follow(self, started: Started, say: Say, show_progress: bool) -> Summary:
        """Wait until every started run has a result; `say` gets the lasting lines (failures as found)."""


def check_divisible(todo: list[PlannedRun], processes: int, where: str) -> None:
    """ExecutorError naming the first run whose global batch (train.batch_size) the processes cannot share
    equally: every rank takes the same number of rows of each batch (ablate.distributed.rank_slice)."""
    for run in todo:
        if run.spec.train.batch_size % processes:
            raise ExecutorError(f"run {run.run_id}: train.batch_size {run.spec.train.batch_size} is not divisible by the "
                                f"{processes} processes of {where}; choose a batch size divisible by {processes}")


# ------------------------------------------------------------------------------- reporting a run


def log_tail(path: Path | None, lines: int = LOG_TAIL_LINES) -> str:
    """The last lines of a log (each cut to 300 characters), or a note saying why there are none."""
    if path is None:
        return "(no log recorded)"
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64_000))
            text = handle.read().decode("utf-8", "replace")
    except OSError as err:
        return f"(log {path} cannot be read: {err.strerror or err})"
    kept = [line[:300] for line in text.splitlines() if line.strip()][-lines:]
    return "\n".join(kept) if kept else f"(log {path} is empty)"


def describe_failure(view: RunView, tail_lines: int = LOG_TAIL_LINES) -> list[str]:
    """The lines that report a failed run: error, result folder, log, and the log's tail."""
    result = view.result or {}
    error = result.get("error") or {}
    lines = [f"failed {view.run.run_id}: {error.get('type', 'Error')}: {error.get('message', view.note)}"]
    if view.log is not None:
        lines.append(f"  log: {view.log}")
        tail = result.get("log_tail") or log_tail(view.log, tail_lines)
        lines += [f"  | {line}" for line in tail.splitlines()[-tail_lines:]]
    return lines
