"""SLURM executor: pending runs become submitit job arrays, and `ablate run` follows them to the end.

On the shared filesystem, per grid:

    results/<grid>/.slurm/<submission>/            submitit's folder, one per `ablate run` that submitted
        <array>_submission.sh, <job>_submitted.pkl   the sbatch script and each job's pickled callable
        <array>_<task>_0_log.out                   the job's stdout + stderr, every attempt appended
    results/<grid>/<run_id>/slurm_job.json         written at submission: job id, log path, submission folder
    results/<grid>/<run_id>/slurm.log              symlink to the job's log
    results/<grid>/<run_id>/result.json            written by the job (or, for a job that died, by the follower)

An array shares one submitit folder (one executor), so a job's log cannot be written into its run's
folder directly; the run folder records its job instead, and `ablate status` names the log from it.

The submitted callable, `SlurmRun`, holds only JSON (spec, axes), the grid name, the run id and the
results folder. It trains through `run_claimed` (lock, completion re-check, `run_and_store`) and, at
a time-out or preemption signal, asks to be requeued as itself: the next attempt resumes from the
run's own `checkpoint.pt`. Nothing else (no model) is pickled.

A job can die without writing a result (scancel, out of memory, node failure, a hard exit). The
follower asks sacct for the state of every job it follows; a job in a final state (FAILED,
CANCELLED, TIMEOUT, OUT_OF_MEMORY, NODE_FAIL, ...) whose run has no result `grace_seconds()` after the
job ended is *lost*: a failed result.json is written for it, atomically and only if none exists, with
the scheduler's state and the tail of the job's log. So a wait always ends.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import submitit
from submitit.helpers import Checkpointable, DelayedSubmission

from ablate.config import SlurmSpec
from ablate.execute import Summary
from ablate.execute import claim
from ablate.execute.claim import LOCK_FILE, STALE_AFTER_SECONDS, run_claimed
from ablate.plan import PlannedRun
from ablate.store import CorruptResult, RESULT_FILE, grid_dir, read_result, run_dir

JOB_FILE = "slurm_job.json"  # in the run folder: which job trains the run, and where its log is
LOG_LINK = "slurm.log"  # in the run folder: symlink to that log
ATTEMPT_FILE = ".slurm_attempt.json"  # in the run folder: host and pid of the job's latest attempt
SUBMISSIONS = ".slurm"  # in the grid folder: one submitit folder per submission
DEFAULT_MAX_ARRAY_SIZE = 1001  # SLURM's default MaxArraySize
LOG_TAIL_LINES = 20

# sacct states. A job in a final state will not run again unless SLURM requeues it (then its newest
# record is PENDING again). Every other state (PENDING, RUNNING, REQUEUED, COMPLETING, SUSPENDED,
# REQUEUE_HOLD, ...) counts as not finished.
FINAL_STATES = frozenset({
    "BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED",
    "REVOKED", "TIMEOUT", "GONE",  # GONE: unknown to the scheduler (ablate's own word)
})
RUNNING_STATES = frozenset({"RUNNING", "COMPLETING", "CONFIGURING", "STAGE_OUT", "SIGNALING", "RESIZING"})

T = TypeVar("T")


def grace_seconds() -> float:
    """How long a finished job may take to show its result.json before the run counts as lost.

    Covers the last write of a job and the attribute caches of NFS clients; ABLATE_SLURM_GRACE_S
    overrides the default of 30 s.
    """
    text = os.environ.get("ABLATE_SLURM_GRACE_S", "30")
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value >= 0:  # also refuses nan
        raise ValueError(f"ABLATE_SLURM_GRACE_S is {text!r}; expected a number of seconds, 0 or more")
    return value


# ------------------------------------------------------------------------------------ availability


def _answers(command: list[str], timeout: float = 10.0) -> subprocess.CompletedProcess | None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done if done.returncode == 0 else None


def slurm_available() -> tuple[bool, str]:
    """(True, why) where jobs can be submitted from here: sbatch on PATH and a controller that answers."""
    if shutil.which("sbatch") is None:
        return False, "sbatch is not on the PATH"
    if _answers(["sinfo", "-h", "-o", "%P"]) is None:
        return False, "sbatch is on the PATH but the SLURM controller does not answer `sinfo`"
    return True, "sbatch is on the PATH and the controller answers"


def choose_executor(wanted: str) -> tuple[str, str]:
    """'local' or 'slurm' for --executor auto|local|slurm, with the reason for auto's choice.

    auto picks SLURM where it is available, except inside a SLURM job (SLURM_JOB_ID set: an
    allocation the user wants to use as it is).
    """
    if wanted != "auto":
        return wanted, f"--executor {wanted}"
    if os.environ.get("SLURM_JOB_ID"):
        return "local", "inside SLURM job " + os.environ["SLURM_JOB_ID"]
    available, why = slurm_available()
    return ("slurm" if available else "local"), why


def max_array_size() -> int:
    """The cluster's MaxArraySize (an array holds at most this many tasks, indices 0..size-1)."""
    done = _answers(["scontrol", "show", "config"])
    if done is not None:
        match = re.search(r"^MaxArraySize\s*=\s*(\d+)", done.stdout, re.MULTILINE)
        if match:
            return max(1, int(match.group(1)))
    return DEFAULT_MAX_ARRAY_SIZE


def partition_has_gpus(partition: str | None) -> bool:
    """True when sinfo lists a gpu GRES on the partition (the default one when None)."""
    command = ["sinfo", "-h", "-o", "%G"] + (["-p", partition] if partition else [])
    done = _answers(command)
    return done is not None and "gpu" in done.stdout.lower()


# ------------------------------------------------------------------------------------ submission


def signal_delay_s(time_min: int) -> int:
    """Seconds before the time limit at which SLURM sends the time-out signal (USR2).

    submitit's 90 s, but at most a fifth of the limit, so that a short job is not signalled at once.
    """
    return max(10, min(90, time_min * 60 // 5))


def executor_parameters(spec: SlurmSpec, gpus: int | None = None) -> dict[str, Any]:
    """The grid's `slurm:` section as submitit `update_parameters` keywords; unset fields are omitted.

    `gpus` is the resolved GPU count when `spec.gpus_per_node` is None (see `resolve_gpus`).
    """
    params: dict[str, Any] = {
        "timeout_min": spec.time_min,
        "slurm_array_parallelism": spec.array_parallelism,
        "slurm_signal_delay_s": signal_delay_s(spec.time_min),
    }
    optional = {
        "slurm_partition": spec.partition,
        "slurm_account": spec.account,
        "slurm_qos": spec.qos,
        "cpus_per_task": spec.cpus_per_task,
        "mem_gb": spec.mem_gb,
        "slurm_constraint": spec.constraint,
    }
    params.update({key: value for key, value in optional.items() if value is not None})
    gpus = spec.gpus_per_node if spec.gpus_per_node is not None else gpus
    if gpus:
        params["gpus_per_node"] = gpus
    extra = {key: value for key, value in spec.additional_parameters.items() if value is not False}
    if extra:
        params["slurm_additional_parameters"] = extra
    return params


def resolve_gpus(spec: SlurmSpec) -> int:
    """gpus_per_node as given, else 1 where the partition has GPUs and 0 where it has none."""
    if spec.gpus_per_node is not None:
        return spec.gpus_per_node
    return 1 if partition_has_gpus(spec.partition) else 0


def split_arrays(items: Sequence[T], size: int) -> list[list[T]]:
    """Consecutive chunks of at most `size` items: one job array each."""
    if size < 1:
        raise ValueError(f"array size must be at least 1, got {size}")
    return [list(items[start:start + size]) for start in range(0, len(items), size)]


@dataclass
class Submitted:
    """One submitted run: its job and where the job's log is."""

    run_id: str
    job_id: str  # '<array>_<task>', or '<job>' for a lone job
    log: Path
    submitted_at: float


class SubmitError(Exception):
    """sbatch refused the jobs; the message says what SLURM said and what to change."""


def submit_runs(todo: list[PlannedRun], grid: str, results_root: Path, spec: SlurmSpec,
                array_size: int | None = None) -> tuple[list[Submitted], Path]:
    """Submit one job per run, as job arrays of at most MaxArraySize tasks; record each job in its run folder."""
    results_root = Path(results_root).absolute()
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    folder = grid_dir(results_root, grid) / SUBMISSIONS / f"{stamp}-{os.getpid()}"
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm", slurm_max_num_timeout=spec.max_requeues)
    executor.update_parameters(name=f"ablate-{grid}", slurm_stderr_to_stdout=True,
                               **executor_parameters(spec, resolve_gpus(spec)))
    submitted: list[Submitted] = []
    for chunk in split_arrays(todo, array_size or max_array_size()):
        moved = set_aside_failed(chunk, grid, results_root)  # retried runs: wait for the new result
        try:
            with executor.batch():
                jobs = [executor.submit(SlurmRun(run, grid, results_root)) for run in chunk]
        except (submitit.core.utils.FailedJobError, submitit.core.utils.FailedSubmissionError,
                subprocess.CalledProcessError, OSError) as err:
            for aside, path in moved.items():
                os.replace(aside, path)
            already = f" ({len(submitted)} runs were submitted before this failure)" if submitted else ""
            raise SubmitError(f"sbatch refused the jobs{already}: {_one_line(str(err))[-600:]}; "
                              "check the grid's slurm: section (partition, account, qos, gpus_per_node, "
                              "cpus_per_task, mem_gb, time_min) or override it with --set slurm.FIELD=VALUE") from None
        now = time.time()
        for run, job in zip(chunk, jobs):
            record = Submitted(run.run_id, str(job.job_id), Path(job.paths.stdout), now)
            _record_job(run_dir(results_root, grid, run.run_id), record, folder)
            submitted.append(record)
    return submitted, folder


def _record_job(folder: Path, record: Submitted, submission: Path) -> None:
    from ablate.store import write_json_atomic

    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomic(folder / JOB_FILE, {
        "job_id": record.job_id,
        "log": str(record.log),
        "submission_folder": str(submission),
        "submitted_at": dt.datetime.fromtimestamp(record.submitted_at, dt.timezone.utc).isoformat(timespec="seconds"),
        "submitted_at_epoch": record.submitted_at,
    })
    link = folder / LOG_LINK
    try:
        link.unlink(missing_ok=True)
        link.symlink_to(os.path.relpath(record.log, folder))
    except OSError:
        pass  # a filesystem without symlinks: slurm_job.json still names the log


def job_record(folder: Path) -> dict[str, Any] | None:
    """The run's slurm_job.json, None when it has none (never submitted to SLURM) or it is unreadable."""
    try:
        record = json.loads((folder / JOB_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and "job_id" in record else None


def describe_arrays(submitted: list[Submitted]) -> str:
    """'array 25 (tasks 0-3)' per array, for the submission message."""
    arrays: dict[str, list[str]] = {}
    for record in submitted:
        base, _, task = record.job_id.partition("_")
        arrays.setdefault(base, []).append(task)
    parts = []
    for base, tasks in arrays.items():
        numbers = sorted(int(t) for t in tasks if t.isdigit())
        parts.append(f"{base} (tasks {numbers[0]}-{numbers[-1]})" if numbers else base)
    return ", ".join(parts)


# ------------------------------------------------------------------------------- the job's callable


class SlurmRun(Checkpointable):
    """What a SLURM job runs: one planned run, through `run_claimed`. Picklable by reference.

    At a time-out or preemption signal submitit calls `checkpoint()` and requeues the job with its
    answer: this same object, whose next call resumes from the run's own checkpoint.pt.
    """

    def __init__(self, run: PlannedRun, grid: str, results_root: Path | str):
        self.spec_json = run.spec.model_dump_json()
        self.axes_json = json.dumps(run.axes)
        self.grid = grid
        self.run_id = run.run_id
        self.results_root = str(Path(results_root).absolute())

    def planned(self) -> PlannedRun:
        from ablate.config import RunSpec

        return PlannedRun(self.run_id, RunSpec.model_validate_json(self.spec_json), json.loads(self.axes_json))

    def folder(self) -> Path:
        return run_dir(Path(self.results_root), self.grid, self.run_id)

    def __call__(self) -> dict[str, Any]:
        folder = self.folder()
        job_id = current_job_id()
        restarts = os.environ.get("SLURM_RESTART_COUNT", "0")
        _log(f"run {self.run_id} of grid {self.grid} in SLURM job {job_id} (restart {restarts}) on {socket.gethostname()}")
        _use_allocated_cpus()
        _break_lock_of_earlier_attempt(folder, job_id)
        _record_attempt(folder, job_id)
        deadline = time.time() + STALE_AFTER_SECONDS + 60
        while True:
            result = run_claimed(self.planned(), self.grid, Path(self.results_root), retry_failed=True,
                                 progress=_log_epoch)
            if result is not None:
                _log(f"run {self.run_id}: {result['status']}" + (f" (resumed from epoch {result.get('resumed_from_epoch'):.2f})"
                                                                  if result.get("resumed_from_epoch") is not None else ""))
                return {"run_id": self.run_id, "status": result["status"]}
            try:
                existing = read_result(folder)
            except CorruptResult:
                existing = None
            if existing is not None and existing["status"] == "completed":
                _log(f"run {self.run_id}: already completed; nothing to do")
                return {"run_id": self.run_id, "status": "completed"}
            if time.time() > deadline:
                raise RuntimeError(f"run {self.run_id} stayed locked by another process ({folder / LOCK_FILE}); "
                                   "it is trained elsewhere, or remove the lock file if nothing runs it")
            _log(f"run {self.run_id} is held by another process ({folder / LOCK_FILE}); waiting for it")
            time.sleep(10)

    def checkpoint(self, *args: Any, **kwargs: Any) -> DelayedSubmission:
        _log(f"run {self.run_id}: time-out or preemption signal; requeueing, the next attempt resumes from "
             f"{self.folder() / 'checkpoint.pt'}")
        return DelayedSubmission(self, *args, **kwargs)


def current_job_id() -> str:
    """'<array>_<task>' inside an array task, else SLURM_JOB_ID ('' outside SLURM)."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array and task:
        return f"{array}_{task}"
    return os.environ.get("SLURM_JOB_ID", "")


def _log(message: str) -> None:
    stamp = time.strftime("%H:%M:%S")
    print(f"ablate {stamp} - {message}", flush=True)


def _log_epoch(event: dict[str, Any]) -> None:
    if event["step"] == event["steps_per_epoch"]:
        _log(f"epoch {event['epoch']} done, loss {event['loss']:.4f}")


def _use_allocated_cpus() -> None:
    """torch threads = the CPUs SLURM gave the job, not every core of the node."""
    cpus = os.environ.get("SLURM_CPUS_PER_TASK")
    if cpus and cpus.isdigit():
        import torch

        torch.set_num_threads(int(cpus))


def _record_attempt(folder: Path, job_id: str) -> None:
    from ablate.store import write_json_atomic

    write_json_atomic(folder / ATTEMPT_FILE, {"job_id": job_id, "host": socket.gethostname(), "pid": os.getpid(),
                                              "restart": os.environ.get("SLURM_RESTART_COUNT", "0"),
                                              "started": time.time()})


def _break_lock_of_earlier_attempt(folder: Path, job_id: str) -> None:
    """Remove a lock left by an earlier attempt of this same job (killed at preemption or requeue).

    A job runs one attempt at a time, so a lock whose holder is the job's previous attempt (host and
    pid recorded in ATTEMPT_FILE) is certainly stale, even on another host where claim's own rule
    would wait STALE_AFTER_SECONDS for its heartbeat to age.
    """
    lock = folder / LOCK_FILE
    holder = claim.lock_holder(lock)
    if holder is None:
        return
    try:
        attempt = json.loads((folder / ATTEMPT_FILE).read_text())
    except (OSError, ValueError):
        attempt = {}
    here = (socket.gethostname(), os.getpid())
    holder_id = (holder.get("host"), holder.get("pid"))
    earlier = bool(job_id) and attempt.get("job_id") == job_id and (attempt.get("host"), attempt.get("pid")) == holder_id
    if holder_id != here and not earlier:
        return  # someone else's lock: claim's own rules decide
    if claim.break_lock_held_by(lock, *holder_id):  # under claim's breaker lock: no race with another breaker
        _log(f"removed the lock left by this job's earlier attempt ({holder_id[0]}, pid {holder_id[1]})")


# ------------------------------------------------------------------------------- scheduler state


@dataclass
class JobState:
    state: str  # sacct's state word (PENDING, RUNNING, COMPLETED, CANCELLED, ...) or GONE
    exit_code: str = ""
    end: float | None = None  # when a final state began (epoch seconds), if known
    requeues: int = 0  # earlier records of the job (requeued or preempted attempts)

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES


def expand_job_ids(text: str) -> list[str]:
    """'25_[1-3,7%2]' -> ['25_1', '25_2', '25_3', '25_7']; '25_4' and '25' stay as they are."""
    match = re.fullmatch(r"(\d+)_\[([^\]]*)\]", text.strip())
    if not match:
        return [text.strip()]
    base, body = match.group(1), match.group(2).split("%")[0]
    ids = []
    for part in body.split(","):
        low, _, high = part.partition("-")
        if low.isdigit() and (not high or high.isdigit()):
            ids += [f"{base}_{i}" for i in range(int(low), int(high or low) + 1)]
    return ids


def _parse_time(text: str) -> float | None:
    try:
        return time.mktime(time.strptime(text.strip(), "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return None  # 'Unknown', 'None'


def parse_sacct(text: str) -> dict[str, JobState]:
    """`sacct -n -P -X -D -o JobID,State,ExitCode,End` output -> newest state per job id.

    With -D a requeued job has one record per attempt, oldest first; its newest record decides.
    """
    states: dict[str, JobState] = {}
    for line in text.splitlines():
        fields = line.split("|")
        if len(fields) < 4 or not fields[0].strip():
            continue
        state = fields[1].split()[0] if fields[1].strip() else "UNKNOWN"  # 'CANCELLED by 0' -> CANCELLED
        for job_id in expand_job_ids(fields[0]):
            earlier = states.get(job_id)
            states[job_id] = JobState(state, fields[2].strip(), _parse_time(fields[3]) if state in FINAL_STATES else None,
                                      earlier.requeues + 1 if earlier else 0)
    return states


def parse_squeue(text: str) -> dict[str, JobState]:
    """`squeue -h -r -o %i|%T` output -> state per job id (jobs still known to the controller)."""
    states = {}
    for line in text.splitlines():
        job_id, _, state = line.partition("|")
        for one in expand_job_ids(job_id):
            if state.strip():
                states[one] = JobState(state.strip())
    return states


def scheduler_states(job_ids: Iterable[str]) -> dict[str, JobState] | None:
    """The state of each job; jobs the scheduler does not know are left out. None if it cannot be asked.

    sacct (accounting) first: it also knows finished jobs and their exit; where it says a job
    ended, squeue (the controller) may know better. Without sacct, squeue alone: a job it no longer
    lists is reported GONE.
    """
    job_ids = [job_id for job_id in job_ids if job_id]
    ids = sorted({job_id.split("_")[0] for job_id in job_ids})
    if not ids:
        return {}
    done = _answers(["sacct", "-n", "-P", "-X", "-D", "-j", ",".join(ids), "-o", "JobID,State,ExitCode,End"], timeout=30)
    if done is not None:
        states = parse_sacct(done.stdout)
        if any(state.final for job_id, state in states.items() if job_id in job_ids):
            # Accounting lags the controller: a preempted job shows PREEMPTED in sacct for a while
            # before its requeued record appears, while squeue already lists it PENDING again.
            live = _squeue()
            for job_id, state in (live or {}).items():
                if job_id in states and states[job_id].final and not state.final:
                    states[job_id] = JobState(state.state, requeues=states[job_id].requeues + 1)
        return states
    live = _squeue()
    if live is None:
        return None
    now = time.time()
    return {job_id: live.get(job_id, JobState("GONE", end=now)) for job_id in job_ids}


def _squeue() -> dict[str, JobState] | None:
    """The controller's view of this user's jobs (finished ones drop out after MinJobAge)."""
    import getpass

    done = _answers(["squeue", "-h", "-r", "-o", "%i|%T", "-u", getpass.getuser()], timeout=30)
    return None if done is None else parse_squeue(done.stdout)


# ---------------------------------------------------------------------------------- observation


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


def log_path(folder: Path, record: dict[str, Any] | None) -> Path | None:
    if record and record.get("log"):
        return Path(record["log"])
    link = folder / LOG_LINK
    return link if link.exists() else None


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


def set_aside_failed(runs: list[PlannedRun], grid: str, results_root: Path) -> dict[Path, Path]:
    """Rename the failed result.json of runs about to be retried (result.failed-<time>.json), so that
    the follower waits for the new attempt's result. Returns {new name: old name} to undo."""
    moved = {}
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    for run in runs:
        path = run_dir(results_root, grid, run.run_id) / RESULT_FILE
        try:
            result = read_result(path.parent)
        except CorruptResult:
            result = None
        if result is not None and result["status"] == "failed":
            aside = path.with_name(f"result.failed-{stamp}.json")
            os.replace(path, aside)
            moved[aside] = path
    return moved


def _one_line(text: str) -> str:
    return " ".join(text.split())


def stderr_live(line: str) -> None:
    """The live count: rewritten in place on a terminal, one line per change otherwise."""
    stream = sys.stderr
    if stream.isatty():
        stream.write("\r\033[K" + line)
    else:
        stream.write(line + "\n")
    stream.flush()
