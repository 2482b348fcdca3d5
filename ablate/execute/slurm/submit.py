"""Submission: pending runs become submitit job arrays, with the grid's `slurm:` section as parameters.

An array shares one submitit folder (one executor), so a job's log cannot be written into its run's
folder directly; the run folder records its job instead (`follow.JOB_FILE`, `follow.LOG_LINK`), and
`ablate status` names the log from it.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import submitit

from ablate.config import SlurmSpec
from ablate.execute.base import ExecutorError, check_divisible
from ablate.execute.slurm.follow import JOB_FILE, LOG_LINK
from ablate.execute.slurm.job import SlurmRun
from ablate.execute.slurm.queries import max_array_size, partition_has_gpus
from ablate.log import chosen_logs
from ablate.plan import PlannedRun
from ablate.store import CorruptResult, RESULT_FILE, grid_dir, read_result, run_dir

SUBMISSIONS = ".slurm"  # in the grid folder: one submitit folder per submission

T = TypeVar("T")


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
    tasks = tasks_per_node(spec, gpus or 0)
    if spec.nodes > 1:
        params["nodes"] = spec.nodes
    if tasks > 1:
        params["tasks_per_node"] = tasks
    if spec.nodes * tasks > 1:
        # One run across the tasks: when one task dies, srun ends the others at once (a failed rank 0 exits
        # non-zero for the same reason), so a rank left waiting on a dead peer never holds the job.
        params["slurm_srun_args"] = ["--kill-on-bad-exit=1"]
    extra = {key: value for key, value in spec.additional_parameters.items() if value is not False}
    if extra:
        params["slurm_additional_parameters"] = extra
    return params


def tasks_per_node(spec: SlurmSpec, gpus: int) -> int:
    """Training processes per node: as given, else one per GPU of the node (`gpus`, resolved), else one."""
    return spec.tasks_per_node if spec.tasks_per_node is not None else max(1, gpus)


def processes_per_run(spec: SlurmSpec, gpus: int) -> int:
    """A run's training processes (its tasks) on SLURM: nodes × tasks per node."""
    return spec.nodes * tasks_per_node(spec, gpus)


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


class SubmitError(ExecutorError):
    """sbatch refused the jobs; the message says what SLURM said and what to change."""


def submit_runs(todo: list[PlannedRun], grid: str, results_root: Path, spec: SlurmSpec,
                array_size: int | None = None) -> tuple[list[Submitted], Path]:
    """Submit one job per run, as job arrays of at most MaxArraySize tasks; record each job in its run folder.

    Each job carries the live logs chosen for the runs (`ablate.log.chosen_logs`): they are not part of the spec.
    """
    gpus = resolve_gpus(spec)
    processes = processes_per_run(spec, gpus)
    if processes > 1:  # before anything is submitted or written
        check_divisible(todo, processes, f"each SLURM job (slurm.nodes × tasks per node = {processes})")
    results_root = Path(results_root).absolute()
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    folder = grid_dir(results_root, grid) / SUBMISSIONS / f"{stamp}-{os.getpid()}"
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm", slurm_max_num_timeout=spec.max_requeues)
    executor.update_parameters(name=f"ablate-{grid}", slurm_stderr_to_stdout=True, **executor_parameters(spec, gpus))
    submitted: list[Submitted] = []
    for chunk in split_arrays(todo, array_size or max_array_size()):
        moved = set_aside_failed(chunk, grid, results_root)  # retried runs: wait for the new result
        try:
            with executor.batch():
                jobs = [executor.submit(SlurmRun(run, grid, results_root, chosen_logs())) for run in chunk]
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
