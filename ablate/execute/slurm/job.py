"""What runs inside a SLURM job: one planned run, claimed and trained, requeued at a time-out.

The submitted callable, `SlurmRun`, holds only JSON (spec, axes), the grid name, the run id, the
results folder and the live logs chosen for the runs (`ablate run --log`, `ablate.log`). It claims the
run (`claim.claimed`: lock, completion re-check), trains it through `run_and_store` (on every task of
the job, one rank each, where the job has several) and, at a time-out or preemption signal, asks to be
requeued as itself: the next attempt resumes from the run's own `checkpoint.pt`. Nothing else (no
model) is pickled.
"""

from __future__ import annotations

import json
import os
import socket
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import submitit
from submitit.helpers import Checkpointable, DelayedSubmission, TorchDistributedEnvironment

from ablate.execute import claim
from ablate.execute.claim import LOCK_FILE, STALE_AFTER_SECONDS
from ablate.log import logging_to
from ablate.plan import PlannedRun
from ablate.store import CorruptResult, read_result, run_dir

ATTEMPT_FILE = ".slurm_attempt.json"  # in the run folder: host and pid of the job's latest attempt


class SlurmRun(Checkpointable):
    """What a SLURM job runs: one planned run, claimed and trained. Picklable by reference.

    At a time-out or preemption signal submitit calls `checkpoint()` and requeues the job with its
    answer: this same object, whose next call resumes from the run's own checkpoint.pt.
    """

    def __init__(self, run: PlannedRun, grid: str, results_root: Path | str, logs: tuple[str, ...] = ()):
        self.spec_json = run.spec.model_dump_json()
        self.axes_json = json.dumps(run.axes)
        self.grid = grid
        self.run_id = run.run_id
        self.results_root = str(Path(results_root).absolute())
        self.logs = tuple(logs)  # ablate.log kinds: not part of the spec, so carried here

    def planned(self) -> PlannedRun:
        from ablate.config import RunSpec

        return PlannedRun(self.run_id, RunSpec.model_validate_json(self.spec_json), json.loads(self.axes_json))

    def folder(self) -> Path:
        return run_dir(Path(self.results_root), self.grid, self.run_id)

    def __call__(self) -> dict[str, Any]:
        if task_count() > 1:
            return self.call_on_tasks()
        folder = self.folder()
        job_id = current_job_id()
        _log(f"run {self.run_id} of grid {self.grid} in SLURM job {job_id} (restart {restart_count()}) on {socket.gethostname()}")
        _use_allocated_cpus()
        _break_lock_of_earlier_attempt(folder, job_id)
        _record_attempt(folder, job_id)
        from ablate.run import run_and_store  # the run stage sits below execute; torch only inside the job

        with ExitStack() as held:
            if not self._claim(held):
                _log(f"run {self.run_id}: already completed; nothing to do")
                return {"run_id": self.run_id, "status": "completed"}
            planned = self.planned()
            with logging_to(getattr(self, "logs", ())):  # a job pickled by an ablate without logs has none
                result = run_and_store(planned.spec, self.grid, self.run_id, folder, planned.axes, _log_epoch)
        _log(f"run {self.run_id}: {result['status']}" + (f" (resumed from epoch {result.get('resumed_from_epoch'):.2f})"
                                                          if result.get("resumed_from_epoch") is not None else ""))
        return {"run_id": self.run_id, "status": result["status"]}

    def call_on_tasks(self) -> dict[str, Any]:
        """One run across the job's tasks (slurm.nodes × tasks per node), one rank each (`ablate.distributed`).

        Rank 0 claims the run (the lock, the completion re-check, as one task would) and tells the others
        whether to train; every rank trains; rank 0 evaluates and writes result.json. A failed run makes rank 0
        exit non-zero too, so that srun (--kill-on-bad-exit) ends a rank still waiting on a hung peer. At a
        time-out or preemption signal submitit has rank 0 requeue the job; every rank of the next attempt
        resumes from the run's one checkpoint.pt, which rank 0 alone writes.
        """
        import torch

        from ablate import distributed
        from ablate.launch import clear_records
        from ablate.run import execute_run, placed_on, run_and_store

        device = _task_device()
        _use_allocated_cpus()
        TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
        distributed.init(device=device)
        rank, world = distributed.rank(), distributed.world_size()
        folder = self.folder()
        job_id = current_job_id()
        _log(f"run {self.run_id} of grid {self.grid} in SLURM job {job_id} (restart {restart_count()}) on "
             f"{socket.gethostname()}: rank {rank} of {world} on {device}")
        with ExitStack() as held:
            train_it = torch.zeros(1, device=device)
            if rank == 0:
                _break_lock_of_earlier_attempt(folder, job_id)
                _record_attempt(folder, job_id)
                if self._claim(held):
                    clear_records(folder)  # an earlier attempt's records say nothing about this one
                    train_it += 1
            torch.distributed.broadcast(train_it, src=0)
            if not train_it.item():
                distributed.leave()
                _log(f"run {self.run_id}: already completed; nothing to do")
                return {"run_id": self.run_id, "status": "completed"}
            with placed_on(str(device)):
                if rank != 0:  # trains with the others; an error is recorded for rank 0 and ends this task
                    execute_run(self.planned().spec, folder, device=device, logs=())
                    return {"run_id": self.run_id, "status": "trained", "rank": rank}
                planned = self.planned()
                with logging_to(getattr(self, "logs", ())):
                    result = run_and_store(planned.spec, self.grid, self.run_id, folder, planned.axes, _log_epoch)
        _log(f"run {self.run_id}: {result['status']} on {world} processes")
        if result["status"] != "completed":
            raise RuntimeError(f"run {self.run_id} failed: {result['error']['message']}")
        return {"run_id": self.run_id, "status": result["status"]}

    def _claim(self, held: ExitStack) -> bool:
        """Take the run's lock (`claim.claimed`: with the completion re-check) for the rest of `held`, waiting
        while another process holds it, up to a stale lock's age; False when the run is already completed."""
        folder = self.folder()
        deadline = time.time() + STALE_AFTER_SECONDS + 60
        while True:
            with ExitStack() as attempt:
                if attempt.enter_context(claim.claimed(self.planned(), self.grid, Path(self.results_root))) is not None:
                    held.enter_context(attempt.pop_all())  # the lock (and its heartbeat) now lasts as long as `held`
                    return True
            try:
                existing = read_result(folder)
            except CorruptResult:
                existing = None
            if existing is not None and existing["status"] == "completed":
                return False
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
    """'<array>_<task>' inside an array task, else the job's id; '' outside a submitit job.

    submitit's JobEnvironment reads them (SLURM_ARRAY_JOB_ID, SLURM_ARRAY_TASK_ID, SLURM_JOB_ID).
    """
    try:
        return submitit.JobEnvironment().job_id
    except (RuntimeError, KeyError):  # not in a job submitit started / its id variable is missing
        return ""


def task_count() -> int:
    """The job's tasks (training processes of its one run): 1 outside a submitit job."""
    try:
        return submitit.JobEnvironment().num_tasks
    except (RuntimeError, KeyError):
        return 1


def _task_device() -> Any:
    """This task's device: the GPU of its local rank among those the node shows it, else the CPU (also where
    ABLATE_DEVICE=cpu). CUDA_VISIBLE_DEVICES is left as SLURM set it (submitit's own export would narrow it
    to the local rank's index, wrong where SLURM already gave each task its own GPU)."""
    import torch

    from ablate.settings import load_settings

    if load_settings().device == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    device = torch.device("cuda", submitit.JobEnvironment().local_rank % torch.cuda.device_count())
    torch.cuda.set_device(device)
    return device


def restart_count() -> str:
    """How many times SLURM has requeued this job ('0' on the first attempt).

    Read by hand: submitit's JobEnvironment has no such field.
    """
    return os.environ.get("SLURM_RESTART_COUNT", "0")


def _log(message: str) -> None:
    stamp = time.strftime("%H:%M:%S")
    print(f"ablate {stamp} - {message}", flush=True)


def _log_epoch(event: dict[str, Any]) -> None:
    if event["step"] == event["steps_per_epoch"]:
        _log(f"epoch {event['epoch']} done, loss {event['loss']:.4f}")


def _use_allocated_cpus() -> None:
    """torch threads = the CPUs SLURM gave the job, not every core of the node.

    SLURM_CPUS_PER_TASK is read by hand: submitit's JobEnvironment has no such field.
    """
    cpus = os.environ.get("SLURM_CPUS_PER_TASK")
    if cpus and cpus.isdigit():
        import torch

        torch.set_num_threads(int(cpus))


def _record_attempt(folder: Path, job_id: str) -> None:
    from ablate.store import write_json_atomic

    write_json_atomic(folder / ATTEMPT_FILE, {"job_id": job_id, "host": socket.gethostname(), "pid": os.getpid(),
                                              "restart": restart_count(), "started": time.time()})


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
