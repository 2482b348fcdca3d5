"""Local executor: runs one after another in this process, or N at once in joblib worker processes.

The live logs chosen for the runs (`ablate run --log`, `ablate.log.logging_to`) hold for this
process; each worker is handed them with its run, as a worker process does not share the choice.

On a machine with several GPUs (`ablate run --jobs N`, ABLATE_DEVICE unset) each running run takes a
GPU from a `GpuPool` shared by the workers: the GPU with the fewest runs on it, lowest index first,
given back when the run ends. The choice is made when a run starts, not from its place in the grid,
because joblib hands runs to whichever worker is free: with N <= G no two runs ever share a GPU, and
with N > G the runs spread evenly (the command says once that workers share). The pool lives in a
`multiprocessing` manager process, as joblib's workers are separate processes; a run learns its GPU
through `ablate.run.placed_on`, and prints one line naming it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from multiprocessing import get_context
from multiprocessing.managers import BaseManager
from pathlib import Path
from typing import Any

from joblib import Parallel, delayed
from tqdm.auto import tqdm

from ablate.execute.base import Check, Executor, ExecutorError, Say, Started, Summary, check_divisible
from ablate.execute.claim import Runner, run_claimed
from ablate.log import chosen_logs, logging_to
from ablate.plan import PlannedRun
from ablate.settings import load_settings


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


def visible_gpus() -> list[str]:
    """'cuda:0' … 'cuda:G-1' for the G GPUs torch sees (CUDA_VISIBLE_DEVICES narrows them, as in torch);
    [] without CUDA. The one place that asks the machine: tests put a stand-in list here."""
    import torch

    return [f"cuda:{index}" for index in range(torch.cuda.device_count())] if torch.cuda.is_available() else []


def worker_devices(jobs: int, processes: int = 1) -> list[str]:
    """The GPUs to spread `jobs` workers over, each run taking `processes` of them; [] to leave every run to
    `ablate.run.pick_device` (one worker of one process, a CPU-only machine, or ABLATE_DEVICE naming the
    device of every run), or with `processes` > 1 to run every rank on the CPU. ExecutorError when the
    machine has fewer GPUs than one run needs."""
    wanted = load_settings().device
    if processes == 1:
        return [] if jobs <= 1 or wanted else visible_gpus()
    if wanted == "cpu":
        return []
    if wanted is not None and wanted != "cuda":
        raise ExecutorError(f"ABLATE_DEVICE={wanted} names one device, but --devices {processes} trains each run on "
                            f"{processes}; unset it, or set it to cuda (every visible GPU) or cpu")
    gpus = visible_gpus()
    if wanted == "cuda" and not gpus:
        raise ExecutorError("ABLATE_DEVICE=cuda: this machine has no CUDA device")
    if gpus and len(gpus) < processes:
        raise ExecutorError(f"--devices {processes}: this machine shows {len(gpus)} GPU{'s' if len(gpus) > 1 else ''} "
                            f"({', '.join(gpus)}); ask for at most {len(gpus)}, or set ABLATE_DEVICE=cpu to run the "
                            "processes on the CPU")
    return gpus


class GpuPool:
    """The GPUs and how many runs each holds now; `take` gives the least used, lowest index first.

    Lives in a manager process and is called from the workers; the manager serves each worker in a
    thread of its own, hence the lock.
    """

    def __init__(self, devices: list[str]):
        self._holders = dict.fromkeys(devices, 0)
        self._lock = threading.Lock()

    def take(self, count: int = 1) -> list[str]:
        """`count` different GPUs, the least used first (ties: the lowest index), in index order."""
        with self._lock:
            order = sorted(self._holders, key=lambda name: self._holders[name])  # stable: ties keep index order
            taken = [name for name in self._holders if name in order[:count]]
            for device in taken:
                self._holders[device] += 1
            return taken

    def give_back(self, devices: list[str]) -> None:
        with self._lock:
            for device in devices:
                self._holders[device] -= 1


class _PoolManager(BaseManager):
    """A manager process serving one `GpuPool` to joblib's worker processes."""


_PoolManager.register("GpuPool", GpuPool)


@contextmanager
def shared_pool(devices: list[str]) -> Iterator[GpuPool]:
    """A `GpuPool` over `devices` that worker processes can share (a proxy to it), for the body's duration."""
    with _PoolManager(ctx=get_context("spawn")) as manager:  # spawn: no fork of a process holding CUDA or torch threads
        yield manager.GpuPool(devices)


@contextmanager
def _devices_of(pool: GpuPool | None, run: PlannedRun, processes: int) -> Iterator[list[str] | None]:
    """The devices of the body's run: GPUs taken from `pool` (one per process) with one line naming them,
    N times the CPU for a run on N processes without GPUs, or None (one process, `pick_device` chooses)."""
    if pool is None:
        yield ["cpu"] * processes if processes > 1 else None
        return
    from ablate.run import placed_on  # the run stage sits below execute; torch only where runs train

    devices = pool.take(processes)
    try:
        print(f"{_describe(run)} on {'+'.join(devices)}", flush=True)  # from the worker: the parent learns only of ends
        with placed_on(devices[0]) if processes == 1 else nullcontext():
            yield devices if processes > 1 else None
    finally:
        pool.give_back(devices)


def runner_on(devices: list[str] | None) -> Runner | None:
    """What trains a run on `devices` (one process each, `ablate.distributed.run_distributed`); None: one
    process, `ablate.run.run_and_store`."""
    if devices is None:
        return None

    def on_devices(spec: Any, grid: str, run_id: str, folder: Path, axes: dict[str, Any], progress: Any) -> dict[str, Any]:
        from ablate.distributed import run_distributed

        # The live logs chosen for this process (ablate run --log): the ranks are new processes and do not share it.
        return run_distributed(spec, len(devices), grid, run_id, folder, axes=axes, devices=devices, logs=chosen_logs())

    return on_devices


def _run_quietly(run: PlannedRun, grid: str, results_root: Path, retry_failed: bool,
                 logs: tuple[str, ...] = (), pool: GpuPool | None = None, processes: int = 1) -> dict[str, Any] | None:
    with logging_to(logs), _devices_of(pool, run, processes) as devices:  # in a worker process: the parent's logs, its GPUs
        return run_claimed(run, grid, results_root, retry_failed, runner=runner_on(devices))


def sharing_note(jobs: int, devices: list[str], processes: int = 1) -> str | None:
    """One line when the workers' processes (`jobs` runs of `processes` each) must share the GPUs; None when
    each has its own."""
    if jobs * processes <= len(devices):
        return None
    most = -(-jobs * processes // len(devices))  # ceiling: the processes at once on the busiest GPU
    who = f"{jobs} workers" if processes == 1 else f"{jobs} workers of {processes} processes each"
    what = "runs" if processes == 1 else "processes"
    return (f"ablate: {who} share {len(devices)} GPU{'s' if len(devices) > 1 else ''} "
            f"({', '.join(devices)}): up to {most} {what} at once on one GPU")


def run_local(
    todo: list[PlannedRun], grid: str, results_root: Path, total: int, jobs: int = 1, retry_failed: bool = True,
    show_progress: bool = True, say: Say = print, processes: int = 1,
) -> Summary:
    """Run `todo` (the grid's `total` planned runs less those already done) here, in order or `jobs` at once
    (each on a GPU of its own where the machine has several; `say` tells when workers must share), each run
    training on `processes` devices (`ablate run --devices N`)."""
    summary = Summary(grid=grid, total=total, skipped=total - len(todo))
    if not todo:
        return summary
    outer = tqdm(total=len(todo), desc=f"grid {grid}", unit="run", position=0, disable=not show_progress)
    devices = worker_devices(jobs, processes)
    if processes > 1 and not devices:
        say(f"ablate: each run trains on {processes} processes on the CPU (gloo), train.batch_size split between them")
    if jobs <= 1 and processes == 1:
        for run in todo:
            _advance(outer, summary, _run_with_bar(run, grid, results_root, show_progress, retry_failed))
    elif jobs <= 1:  # one run at a time on `processes` devices; its ranks report no steps to this process
        with shared_pool(devices) if devices else nullcontext() as pool:
            for run in todo:
                _advance(outer, summary, _run_quietly(run, grid, results_root, retry_failed, chosen_logs(), pool, processes))
    else:
        # Worker processes, each with its own torch threads: runs are independent and write their own files.
        logs = chosen_logs()
        note = sharing_note(jobs, devices, processes) if devices else None
        if note:
            say(note)
        with shared_pool(devices) if devices else nullcontext() as pool:
            tasks = (delayed(_run_quietly)(run, grid, results_root, retry_failed, logs, pool, processes) for run in todo)
            for result in Parallel(n_jobs=jobs, return_as="generator_unordered")(tasks):
                _advance(outer, summary, result)
    outer.close()
    return summary


def _advance(outer: tqdm, summary: Summary, result: dict[str, Any] | None) -> None:
    """Count a finished run and move the grid's progress bar on by one."""
    _count(summary, result)
    outer.set_postfix(done=summary.completed, failed=len(summary.failed))
    outer.update(1)


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

    def __init__(self, grid: str, results_root: Path, jobs: int = 1, retry_failed: bool = True, processes: int = 1):
        super().__init__(grid, results_root, retry_failed)
        self.jobs = jobs
        self.processes = processes  # devices (training processes) per run: `ablate run --devices N`

    def submit(self, todo: list[PlannedRun], total: int, check: Check, say: Say) -> Started:
        check(todo)
        if self.processes > 1:
            check_divisible(todo, self.processes, f"--devices {self.processes}")
            worker_devices(self.jobs, self.processes)  # enough GPUs? (ExecutorError before any training)
        return Started(todo, total)

    def follow(self, started: Started, say: Say, show_progress: bool) -> Summary:
        return run_local(started.runs, self.grid, self.results_root, started.total, jobs=self.jobs,
                         retry_failed=self.retry_failed, show_progress=show_progress, say=say, processes=self.processes)
