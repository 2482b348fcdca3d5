"""The follower: each run's state from its result file and its recorded job, until every run has a result.

A job can die without writing a result (scancel, out of memory, node failure, a hard exit). The
follower asks sacct for the state of every job it follows; a job in a final state (FAILED,
CANCELLED, TIMEOUT, OUT_OF_MEMORY, NODE_FAIL, ...) whose run has no result `grace_seconds()` after the
job ended is *lost*: a failed result.json is written for it, atomically and only if none exists, with
the scheduler's state and the tail of the job's log. So a wait always ends.

Nothing here imports submitit or torch: `ablate status` uses the follower to look at runs.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ablate.execute.base import RunView, Summary, describe_failure, log_tail
from ablate.execute.slurm.queries import RUNNING_STATES, JobState, scheduler_states
from ablate.plan import PlannedRun
from ablate.settings import load_settings
from ablate.store import CorruptResult, RESULT_FILE, read_result, run_dir

JOB_FILE = "slurm_job.json"  # in the run folder: which job trains the run, and where its log is
LOG_LINK = "slurm.log"  # in the run folder: symlink to that log


def grace_seconds() -> float:
    """How long a finished job may take to show its result.json before the run counts as lost.

    Covers the last write of a job and the attribute caches of NFS clients; ABLATE_SLURM_GRACE_S
    overrides the default of 30 s (ablate.settings).
    """
    return load_settings().slurm_grace_s


def job_record(folder: Path) -> dict[str, Any] | None:
    """The run's slurm_job.json, None when it has none (never submitted to SLURM) or it is unreadable."""
    try:
        record = json.loads((folder / JOB_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and "job_id" in record else None


def log_path(folder: Path, record: dict[str, Any] | None) -> Path | None:
    if record and record.get("log"):
        return Path(record["log"])
    link = folder / LOG_LINK
    return link if link.exists() else None


class Follower:
    """Looks at runs through their result files and the scheduler; records runs whose job was lost.

    A final job state without a result counts as lost only `grace_seconds()` after the job ended
    (sacct's End, else the moment this follower first saw the final state).
    """

    def __init__(self, grid: str, results_root: Path, grace: float | None = None):
        self.grid = grid
        self.results_root = Path(results_root)
        self.grace = grace_seconds() if grace is None else grace
        self.first_final: dict[str, float] = {}

    def look(self, runs: list[PlannedRun], record_lost: bool = True) -> list[RunView]:
        views: list[RunView] = []
        waiting: list[tuple[RunView, dict[str, Any]]] = []
        for run in runs:
            folder = run_dir(self.results_root, self.grid, run.run_id)
            record = job_record(folder)
            try:
                result = read_result(folder)
            except CorruptResult as err:
                views.append(RunView(run, "corrupt", note=str(err), log=log_path(folder, record)))
                continue
            view = RunView(run, "pending", result, record.get("job_id") if record else None, log=log_path(folder, record))
            if result is not None:
                view.state = result["status"]
            elif record is not None:
                waiting.append((view, record))
            views.append(view)
        if waiting:
            states = scheduler_states(view.job_id for view, _ in waiting if view.job_id)
            now = time.time()
            for view, record in waiting:
                self._classify(view, record, states, now)
                if view.state == "lost" and record_lost:
                    self.record_lost(view)
        return views

    def _classify(self, view: RunView, record: dict[str, Any], states: dict[str, JobState] | None, now: float) -> None:
        job_id = view.job_id or ""
        if states is None:
            view.state, view.note = "queued", "scheduler not answering"
            return
        submitted = float(record.get("submitted_at_epoch") or now)
        job = states.get(job_id)
        if job is None:  # not (yet) in accounting: just submitted, or long gone
            job = JobState("UNKNOWN") if now - submitted < self.grace else JobState("GONE", end=submitted + self.grace)
        view.job = job
        if not job.final:
            self.first_final.pop(job_id, None)
            view.state = "running" if job.state in RUNNING_STATES else "queued"
            return
        ended = job.end if job.end is not None else self.first_final.setdefault(job_id, now)
        view.state = "lost" if now - ended >= self.grace else ("running" if job.state == "COMPLETED" else "queued")

    def record_lost(self, view: RunView) -> None:
        """Write the failed result of a lost run (only if no result exists) and keep it in the view."""
        folder = run_dir(self.results_root, self.grid, view.run.run_id)
        job = view.job or JobState("GONE")
        tail = log_tail(view.log)
        exit_note = f", exit code {job.exit_code}" if job.exit_code and job.exit_code != "0:0" else ""
        ended = "is unknown to the scheduler" if job.state == "GONE" else f"ended {job.state}{exit_note}"
        message = (f"SLURM job {view.job_id} {ended} without writing the run's result "
                   f"(killed, out of memory, node failure or a hard exit); log: {view.log}")
        result = {
            "run_id": view.run.run_id,
            "grid": self.grid,
            "spec": view.run.spec.model_dump(mode="json"),
            "axes": view.run.axes,
            "status": "failed",
            "metrics": {},
            "timings": {},
            "error": {"type": "SlurmJobLost", "message": message, "traceback": tail},
            "log_tail": tail,
            "slurm": {"job_id": view.job_id, "state": job.state, "exit_code": job.exit_code, "log": str(view.log)},
            "provenance": {"slurm_job_id": view.job_id, "recorded_by": "ablate follower", "host": socket.gethostname(),
                           "end_time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")},
        }
        write_if_absent(folder / RESULT_FILE, result)
        try:
            view.result = read_result(folder)
        except CorruptResult:
            view.result = result
        view.state = view.result["status"] if view.result else "failed"


def write_if_absent(path: Path, data: dict[str, Any]) -> bool:
    """Write JSON to path atomically unless the file exists; False when it did (it is left untouched).

    The complete file is linked into place (link(2) fails on an existing name, also on NFS), so a
    reader never sees half a file and a result written meanwhile by the job is never overwritten.
    """
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as out:
            json.dump(data, out, indent=2, sort_keys=True, default=str)
            out.write("\n")
            out.flush()
            os.fsync(out.fileno())
        os.link(temp, path)
        return True
    except FileExistsError:
        return False
    finally:
        Path(temp).unlink(missing_ok=True)


# ------------------------------------------------------------------------------------ following


@dataclass
class Counts:
    completed: int = 0
    failed: int = 0
    running: int = 0
    pending: int = 0  # queued on SLURM, or just ended and not yet decided
    requeues: int = 0

    def line(self) -> str:
        requeued = f", {self.requeues} requeue{'s' if self.requeues != 1 else ''}" if self.requeues else ""
        return f"{self.completed} completed, {self.failed} failed, {self.running} running, {self.pending} pending{requeued}"


def count(views: list[RunView]) -> Counts:
    counts = Counts()
    for view in views:
        if view.state == "completed":
            counts.completed += 1
        elif view.state in ("failed", "corrupt"):
            counts.failed += 1
        elif view.state == "running":
            counts.running += 1
        else:
            counts.pending += 1
        counts.requeues += view.job.requeues if view.job else 0
    return counts


def follow(runs: list[PlannedRun], grid: str, results_root: Path, total: int,
           say: Callable[[str], None] = print, live: Callable[[str], None] | None = None,
           poll_seconds: Callable[[float], float] | None = None) -> Summary:
    """Wait until every run has a result, showing a live count; lost jobs are recorded as failed.

    `say` gets the lasting lines (failures as they are found, requeues); `live` the changing count.
    """
    follower = Follower(grid, results_root)
    started = time.monotonic()
    in_place = live is stderr_live and sys.stderr.isatty()
    if in_place:  # a lasting line first clears the live count it would otherwise be appended to
        print_line = say

        def say(line: str) -> None:
            sys.stderr.write("\r\033[K")
            print_line(line)
    seen_requeues: dict[str, int] = {}
    reported: set[str] = set()
    finished: dict[str, RunView] = {}  # runs with a result: final, not read again on every poll
    last_line = ""
    while True:
        fresh = follower.look([run for run in runs if run.run_id not in finished])
        for view in fresh:
            if view.state in ("completed", "failed", "corrupt"):
                finished[view.run.run_id] = view
        looked_at = {view.run.run_id for view in fresh}
        views = fresh + [view for run_id, view in finished.items() if run_id not in looked_at]
        for view in views:
            requeues = view.job.requeues if view.job else 0
            if requeues > seen_requeues.get(view.run.run_id, 0):
                say(f"requeued {view.run.run_id}: SLURM job {view.job_id} was requeued ({requeues}x); "
                    "it resumes from its checkpoint")
            seen_requeues[view.run.run_id] = max(requeues, seen_requeues.get(view.run.run_id, 0))
            if view.state in ("failed", "corrupt") and view.run.run_id not in reported:
                reported.add(view.run.run_id)
                for line in describe_failure(view):
                    say(line)
        counts = count(views)
        elapsed = time.monotonic() - started
        line = f"grid {grid}: {counts.line()} (of {len(runs)} followed)"
        if live is not None and line != last_line:
            live(f"{line} [{elapsed:.0f}s]")
            last_line = line
        if counts.completed + counts.failed == len(runs):
            break
        time.sleep(poll_seconds(elapsed) if poll_seconds else min(30.0, max(2.0, elapsed / 20)))
    if in_place:
        sys.stderr.write("\n")
    summary = Summary(grid=grid, total=total, skipped=total - len(runs), completed=counts.completed)
    for view in views:
        if view.state in ("failed", "corrupt"):
            error = (view.result or {}).get("error") or {}
            summary.failed.append((view.run.run_id, error.get("message") or view.note))
    return summary


def partition_runs(todo: list[PlannedRun], grid: str, results_root: Path,
                   retry_failed: bool) -> tuple[list[PlannedRun], list[PlannedRun], list[RunView]]:
    """(to submit, already in flight on SLURM, lost just now) among the runs without a completed result.

    A run whose recorded job is still queued or running (or ended moments ago, within the grace
    period) is followed, not submitted again. A run whose job is found lost now is recorded as
    failed, and submitted again only with retry_failed.
    """
    views = Follower(grid, results_root).look(todo)
    fresh, flying, lost = [], [], []
    for view in views:
        if view.state in ("running", "queued"):
            flying.append(view.run)
        elif view.job is not None and view.state == "failed":  # its job was found lost by this look
            lost.append(view)
            if retry_failed:
                fresh.append(view.run)
        else:
            fresh.append(view.run)
    return fresh, flying, lost


def stderr_live(line: str) -> None:
    """The live count: rewritten in place on a terminal, one line per change otherwise."""
    stream = sys.stderr
    if stream.isatty():
        stream.write("\r\033[K" + line)
    else:
        stream.write(line + "\n")
    stream.flush()
