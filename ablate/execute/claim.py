"""Claiming a run: at most one process trains a run at a time, on one machine or across a cluster.

A claim is a lock file `results/<grid>/<run_id>/.lock` created with O_CREAT | O_EXCL, which is
atomic on local filesystems and on NFSv3+ (unlike flock, and unlike SQLite on a shared folder).
The holder refreshes the file's modification time while it trains (a heartbeat). A lock is stale,
and may be broken, when its holder is a dead process on this host, or when its heartbeat is older
than STALE_AFTER_SECONDS (a holder on another host that died, was killed or lost its node).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ablate.plan import PlannedRun
from ablate.store import run_dir, run_state

LOCK_FILE = ".lock"
HEARTBEAT_SECONDS = 30.0
STALE_AFTER_SECONDS = 300.0  # ten missed heartbeats: the holder is gone


def _holder() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def lock_is_stale(path: Path, now: float | None = None) -> bool:
    """True when the lock's holder is certainly gone (dead local pid) or silent for too long."""
    try:
        age = (now or time.time()) - path.stat().st_mtime
        holder = json.loads(path.read_text() or "{}")
    except FileNotFoundError:
        return False  # released meanwhile: not stale, just gone
    except (OSError, ValueError):
        holder = {}
        age = (now or time.time()) - path.stat().st_mtime if path.exists() else 0.0
    if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int):
        if not _pid_alive(holder["pid"]):
            return True
    return age > STALE_AFTER_SECONDS


def try_lock(path: Path) -> bool:
    """Create the lock file exclusively; break it first if it is stale. False when someone holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            handle = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if not lock_is_stale(path):
                return False
            # Break a stale lock by renaming it away first: of several processes racing to break
            # it, only one rename succeeds, so only one of them goes on to create a new lock.
            grave = path.with_name(f"{LOCK_FILE}.stale.{os.getpid()}.{time.time_ns()}")
            try:
                os.rename(path, grave)
            except FileNotFoundError:
                return False
            grave.unlink(missing_ok=True)
            continue
        with os.fdopen(handle, "w") as lock_file:
            json.dump(_holder(), lock_file)
        return True
    return False


@contextmanager
def heartbeat(path: Path, interval: float = HEARTBEAT_SECONDS) -> Iterator[None]:
    """Touch the lock file every `interval` seconds while the body runs."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(interval):
            try:
                os.utime(path)
            except FileNotFoundError:
                return

    thread = threading.Thread(target=beat, name="ablate-lock-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=1)


def release(path: Path) -> None:
    path.unlink(missing_ok=True)


def run_claimed(run: PlannedRun, grid: str, results_root: Path, retry_failed: bool = True,
                progress: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any] | None:
    """Train `run` unless it is done or another process holds it; None when it was not ours to run.

    The completion check is repeated after taking the lock: another process may have finished the
    run between our planning and our claim, and a completed run must never be trained again.
    """
    from ablate.run import run_and_store  # the run stage sits below execute

    folder = run_dir(results_root, grid, run.run_id)
    lock = folder / LOCK_FILE
    if not try_lock(lock):
        return None
    try:
        state = run_state(folder)
        if state == "completed" or (state == "failed" and not retry_failed):
            return None
        with heartbeat(lock):
            return run_and_store(run.spec, grid, run.run_id, folder, run.axes, progress)
    finally:
        release(lock)
