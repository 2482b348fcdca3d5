"""Starting the processes of one run on several devices, and ending them all when one fails.

A run on W processes (`ablate.distributed`) must never hang: if one rank dies, raises or hangs, the
others are left waiting in a collective. Three mechanisms bound that:

* every collective has a timeout (ABLATE_DIST_TIMEOUT_S, `ablate.distributed.init`): a rank waiting for
  a hung one raises after it; a rank whose peer died raises at once (the peer's socket closes);
* each rank that raises writes a record (`rank-<r>.json`: type, message, host, pid, time) into the
  run folder's `.ranks/` before it exits, and rank 0, on its own error, gathers the records into one
  message naming every rank (`RanksFailed`) — the failed result says which rank failed first and why,
  not only that rank 0 lost contact. A rank that wrote nothing was killed, crashed or hung;
* the launcher (`launch`, for `ablate run --devices N` and tests) watches the processes: once one has
  failed, or rank 0 is done, the others get a short grace and are then stopped, and it reports how
  each ended (exit status, signal). On SLURM srun does this part (`--kill-on-bad-exit`,
  `ablate.execute.slurm`).

Processes are started by hand rather than with `torch.multiprocessing.spawn`, because spawn stops the
others as soon as one fails and reports only the first process it finds failed — often rank 0, whose
error is the consequence ("connection closed by peer"), not the cause.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing import get_all_start_methods, get_context, get_start_method, set_start_method
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

RECORDS_FOLDER = ".ranks"  # in the run folder
FAILURE_GRACE_S = 10.0  # after a rank failed: time for the others to fail on their own and rank 0 to write the result
AFTER_MAIN_GRACE_S = 10.0  # after rank 0 ended well: the others have long left the process group by then
STOP_GRACE_S = 5.0  # between SIGTERM and SIGKILL
RECORDS_WAIT_S = 1.0  # rank 0 waits this long for the other ranks' records before naming them


class RanksFailed(RuntimeError):
    """Training on several processes failed; the message names each rank and how it ended."""


# ------------------------------------------------------------------------------------ rank records


def records_folder(run_folder: Path) -> Path:
    return Path(run_folder) / RECORDS_FOLDER


def clear_records(run_folder: Path) -> None:
    """Forget an earlier attempt's records (before the ranks of a new attempt start)."""
    shutil.rmtree(records_folder(run_folder), ignore_errors=True)


def first_line(text: str, limit: int = 300) -> str:
    line = next((part.strip() for part in str(text).splitlines() if part.strip()), "")
    return line if len(line) <= limit else line[: limit - 1] + "…"


def write_record(run_folder: Path, rank: int, error: BaseException) -> None:
    """Record that `rank` raised `error` (atomically: a reader never sees half a record)."""
    from ablate.store import write_json_atomic

    folder = records_folder(run_folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomic(folder / f"rank-{rank}.json", {
        "rank": rank, "type": type(error).__name__, "message": first_line(str(error) or type(error).__name__),
        "host": socket.gethostname(), "pid": os.getpid(), "at": time.time(),
    })


def read_records(run_folder: Path) -> dict[int, dict[str, Any]]:
    """rank -> record, for the ranks that wrote one."""
    import json

    records = {}
    for path in sorted(records_folder(run_folder).glob("rank-*.json")):
        try:
            record = json.loads(path.read_text())
            records[int(record["rank"])] = record
        except (OSError, ValueError, KeyError, TypeError):
            continue  # unreadable: that rank is reported as having said nothing
    return records


def wait_for_records(run_folder: Path, world: int, seconds: float = RECORDS_WAIT_S) -> dict[int, dict[str, Any]]:
    """The records, once every rank has written one or `seconds` have passed (a rank that raised at the same
    moment as this one may still be writing)."""
    end = time.monotonic() + seconds
    records = read_records(run_folder)
    while len(records) < world and time.monotonic() < end:
        time.sleep(0.05)
        records = read_records(run_folder)
    return records


# ------------------------------------------------------------------------------- naming a failure


@dataclass(frozen=True)
class RankExit:
    """How one process of a launch ended."""

    rank: int
    exitcode: int | None  # negative: killed by that signal; None: never ended on its own
    stopped: bool = False  # still running after the grace: stopped by the launcher

    def describe(self) -> str:
        if self.stopped:
            return "was still running (hung) and was stopped"
        if self.exitcode is not None and self.exitcode < 0:
            try:
                return f"was killed by {signal.Signals(-self.exitcode).name}"
            except ValueError:  # a number this platform has no name for
                return f"was killed by signal {-self.exitcode}"
        return f"exited with status {self.exitcode}"


def describe_failure(records: dict[int, dict[str, Any]], world: int, exits: dict[int, RankExit] | None = None) -> str:
    """One message naming how each rank of a failed run ended, the likely cause first.

    A rank that reported nothing comes first (it was killed, crashed or hung: the others then only lost
    contact with it); then the reports, earliest first. The same error on every rank is said once.
    """
    exits = exits or {}
    silent = [rank for rank in range(world) if rank not in records]
    parts = []
    for rank in silent:
        how = exits[rank].describe() if rank in exits else "reported no error (killed, crashed or hung)"
        parts.append(f"rank {rank} {how}")
    reports = sorted(records.values(), key=lambda record: record["at"])
    errors = {(record["type"], record["message"]) for record in reports}
    if len(reports) == world and len(errors) == 1:
        kind, message = errors.pop()
        parts.append(f"every rank raised {kind}: {message}")
    else:
        parts += [f"rank {record['rank']} raised {record['type']}: {record['message']}" for record in reports]
    return f"training on {world} processes failed: " + "; ".join(parts)


@contextmanager
def failures_named(run_folder: Path | None, rank: int, world: int) -> Iterator[None]:
    """Around a rank's share of a run: its error is recorded in the run folder, and rank 0 raises
    `RanksFailed` naming every rank's. Nothing changes on one process."""
    if world == 1 or run_folder is None:
        yield
        return
    try:
        yield
    except Exception as error:
        from ablate.methods.train import InterruptedForTest  # here: that module imports this one's users

        if isinstance(error, InterruptedForTest):
            raise  # a simulated kill, not a failure
        try:
            write_record(run_folder, rank, error)
        except OSError:
            pass  # a full or read-only disk: the record is a courtesy, the error itself still ends the run
        if rank == 0:
            raise RanksFailed(describe_failure(wait_for_records(run_folder, world), world)) from error
        raise


# ------------------------------------------------------------------------------------- launching


def _rank_main(rank: int, world: int, port: int, device: str, work: Callable[..., Any], args: tuple) -> None:
    """One rank: its device, its share of the CPU, the process group, then ``work(device, *args)``."""
    import torch

    from ablate import distributed
    from ablate.bench_common import core_count

    on = torch.device(device)
    os.environ.update(LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world))  # as torchrun sets them (stream workers read it)
    # A spawned process inherits "spawn" as its start method; its DataLoader workers (streamed folders) would each
    # import torch again at every loader's start. They touch no CUDA and no process group: the platform's default
    # (fork on Linux), as in a process torchrun or srun starts.
    set_start_method(get_all_start_methods()[0], force=True)
    if on.type == "cuda":
        torch.cuda.set_device(on)
    else:  # the CPU's cores are shared by the ranks
        torch.set_num_threads(max(1, core_count() // world))
    distributed.init(rank, world, "127.0.0.1", port, on)
    try:
        work(on, *args)
    finally:
        distributed.leave()


def launch(work: Callable[..., Any], devices: list[str], *args: Any) -> list[RankExit]:
    """Run ``work(device, *args)`` in one new process per entry of `devices` (rank r on devices[r]), joined in
    one process group on this machine; return how each ended. `work` must be a module-level function.

    Once a rank fails (non-zero exit), the others have FAILURE_GRACE_S to end on their own (a rank whose
    peer died fails at once; rank 0 writes the failed result); once rank 0 has ended well, AFTER_MAIN_GRACE_S.
    Whoever is still running then is stopped (SIGTERM, then SIGKILL): a hung rank never hangs the launch.
    """
    from ablate.distributed import free_port

    world = len(devices)
    port = free_port()
    context = get_context("spawn")  # no fork of a process holding CUDA or torch threads
    processes = [context.Process(target=_rank_main, args=(rank, world, port, devices[rank], work, args),
                                 name=f"ablate-rank-{rank}") for rank in range(world)]
    stopped: set[int] = set()
    try:
        with _standard_start_method():
            for process in processes:
                process.start()
        stopped = _watch(processes)
    finally:  # also on Ctrl-C or any error here: no rank outlives the launch
        _stop([process for process in processes if process.pid is not None and process.exitcode is None])
    for process in processes:
        process.join()
    return [RankExit(rank, None if rank in stopped else process.exitcode, rank in stopped)
            for rank, process in enumerate(processes)]


@contextmanager
def _standard_start_method() -> Iterator[None]:
    """While the ranks start: a start method the new processes know. A spawned child is told the parent's global
    start method and sets it; inside a joblib worker (`ablate run --jobs N --devices M`) that is "loky", which
    the child has no context for, so it would fail before running anything."""
    current = get_start_method(allow_none=True)
    if current in (None, "fork", "spawn", "forkserver"):
        yield
        return
    set_start_method("spawn", force=True)  # what the ranks are started with anyway; each then sets its own
    try:
        yield
    finally:
        set_start_method(current, force=True)


def _watch(processes: list[Any]) -> set[int]:
    """Wait until every process has ended, stopping the rest once the grace after a failure, or after rank 0
    ended well, has passed; the ranks that had to be stopped."""
    deadline: float | None = None
    while True:
        running = [process for process in processes if process.exitcode is None]
        if not running:
            return set()
        if deadline is None:
            if any(process.exitcode not in (None, 0) for process in processes):
                deadline = time.monotonic() + FAILURE_GRACE_S
            elif processes[0].exitcode == 0:
                deadline = time.monotonic() + AFTER_MAIN_GRACE_S
        if deadline is not None and time.monotonic() >= deadline:
            _stop(running)
            return {processes.index(process) for process in running}
        timeout = 1.0 if deadline is None else max(0.0, min(1.0, deadline - time.monotonic()))
        wait([process.sentinel for process in running], timeout=timeout)


def _stop(processes: list[Any]) -> None:
    for process in processes:
        process.terminate()
    end = time.monotonic() + STOP_GRACE_S
    for process in processes:
        process.join(max(0.0, end - time.monotonic()))
        if process.exitcode is None:
            process.kill()


def failed_exits(exits: list[RankExit]) -> dict[int, RankExit]:
    """The ranks that did not end well (non-zero status, a signal, or stopped)."""
    return {exit_.rank: exit_ for exit_ in exits if exit_.stopped or exit_.exitcode != 0}
