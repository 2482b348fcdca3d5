"""Claiming a run: at most one process trains a run at a time, on one machine or across a cluster.

A claim is a lock file `results/<grid>/<run_id>/.lock`, made by hard-linking a file that already
holds the claimant's record (host, pid) to that name: link fails when the name exists, atomically
on local filesystems and on NFS (unlike flock, and unlike SQLite on a shared folder).
The holder refreshes the file's modification time while it trains (a heartbeat). A lock is stale,
and may be broken, when its holder is a dead process on this host (same host name, same pid
namespace, and the pid is gone or now belongs to a process started later), or when its heartbeat is
older than STALE_AFTER_SECONDS (a holder on another host that died, was killed or lost its node).

Breaking a stale lock is itself serialised by a second lock file, `.lock.break`: only its holder may
delete `.lock`, and only after re-checking under it that the lock it judged stale is still the one
there and still stale. Without this, two processes that both saw the same stale lock could each
delete it, the second deleting the fresh lock the first had just made, and both would train.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ablate.plan import PlannedRun
from ablate.store import RESULT_FILE, remove_orphan_temps, run_dir, run_state

LOCK_FILE = ".lock"
BREAK_FILE = ".lock.break"
HEARTBEAT_SECONDS = 30.0
STALE_AFTER_SECONDS = 300.0  # ten missed heartbeats: the holder is gone
BREAK_STALE_SECONDS = 60.0  # breaking takes milliseconds; a breaker this old died while breaking


def _pid_namespace() -> int | None:
    """Identity of this process's pid namespace: two containers may share a host name, not this."""
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None


def _process_start(pid: int) -> int | None:
    """Start time of a local process in clock ticks since boot (Linux), to tell a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    try:
        return int(stat.rsplit(")", 1)[1].split()[19])  # field 22; the name in (...) may hold spaces
    except (IndexError, ValueError):
        return None


def _holder() -> dict[str, Any]:
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "since": time.time(),
            "pidns": _pid_namespace(), "start": _process_start(pid)}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    except (OverflowError, ValueError):
        return False  # not a pid at all
    return True


def _holder_dead_here(holder: dict[str, Any]) -> bool:
    """True only when the holder certainly ran on this host, in this pid namespace, and is gone."""
    pid = holder.get("pid")
    if holder.get("host") != socket.gethostname() or not isinstance(pid, int) or pid <= 0:
        return False
    if holder.get("pidns") is not None and holder.get("pidns") != _pid_namespace():
        return False  # another container with the same host name: its pids are not ours to judge
    if not _pid_alive(pid):
        return True
    started = holder.get("start")
    return started is not None and _process_start(pid) not in (None, started)  # the pid was reused


def _read_lock(path: Path) -> tuple[os.stat_result, dict[str, Any]] | None:
    """The lock's stat and holder record, None when there is no lock. A half-written record reads as {}."""
    try:
        stat = path.stat()
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return None
    try:
        holder = json.loads(text or "{}")
    except ValueError:
        holder = {}
    return stat, holder if isinstance(holder, dict) else {}


def _stale(stat: os.stat_result, holder: dict[str, Any], now: float | None, stale_after: float) -> bool:
    age = (now if now is not None else time.time()) - stat.st_mtime
    return _holder_dead_here(holder) or age > stale_after


def lock_is_stale(path: Path, now: float | None = None) -> bool:
    """True when the lock's holder is certainly gone (dead local pid) or silent for too long."""
    seen = _read_lock(path)
    return seen is not None and _stale(seen[0], seen[1], now, STALE_AFTER_SECONDS)


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_ino, a.st_dev, a.st_mtime_ns, a.st_size) == (b.st_ino, b.st_dev, b.st_mtime_ns, b.st_size)


def _create(path: Path) -> bool:
    """Create path exclusively, holding this process's record from the first instant; False when it exists.

    The record is written to a private file first, then hard-linked to `path` (link fails when the
    name exists, atomically, NFS included). A lock is thus never seen empty, even when its creator is
    killed at once: an empty lock would have no pid to prove its holder dead.
    """
    private = path.with_name(f"{path.name}.{uuid.uuid4().hex}.tmp")
    handle = os.open(private, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    try:
        with os.fdopen(handle, "w") as record:
            json.dump(_holder(), record)
        try:
            os.link(private, path)
        except FileExistsError:
            return False
        except OSError as err:
            if private.stat().st_nlink == 2:
                return True  # NFS may report failure for a link that was made (a lost reply)
            if err.errno in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
                return _create_exclusive(path)  # a filesystem without hard links
            raise
        return True
    finally:
        private.unlink(missing_ok=True)


def _create_exclusive(path: Path) -> bool:
    """O_EXCL create, then write the record: for filesystems without hard links (briefly empty)."""
    try:
        handle = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(handle, "w") as record:
        json.dump(_holder(), record)
    return True


def _break_if(path: Path, condition: Callable[[os.stat_result, dict[str, Any]], bool]) -> bool:
    """Delete the lock at path if condition(stat, holder) holds for it, under the breaker lock (one breaker
    at a time, so two breakers cannot both act on one lock). True when this call deleted it."""
    breaker = path.with_name(BREAK_FILE)
    if not _create(breaker):
        seen = _read_lock(breaker)
        if seen is not None and _stale(seen[0], seen[1], None, BREAK_STALE_SECONDS):
            breaker.unlink(missing_ok=True)  # a breaker that died mid-break; the next try may take over
        return False  # someone else is breaking it right now
    try:
        seen = _read_lock(path)
        if seen is not None and condition(*seen):
            path.unlink(missing_ok=True)
            return True
        return False
    finally:
        breaker.unlink(missing_ok=True)


def _break_stale(path: Path, judged: os.stat_result) -> None:
    """Delete the stale lock at path, if it is still the very file judged stale."""
    _break_if(path, lambda stat, holder: _same_file(stat, judged) and _stale(stat, holder, None, STALE_AFTER_SECONDS))


def lock_holder(path: Path) -> dict[str, Any] | None:
    """The holder record of the lock at path ({} while half-written), None when there is no lock."""
    seen = _read_lock(path)
    return None if seen is None else seen[1]


def break_lock_held_by(path: Path, host: str, pid: int) -> bool:
    """Delete the lock at path if (host, pid) holds it: for a caller that knows that holder is gone."""
    return _break_if(path, lambda stat, holder: (holder.get("host"), holder.get("pid")) == (host, pid))


def try_lock(path: Path) -> bool:
    """Create the lock file exclusively; break it first if it is stale. False when someone holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        if _create(path):
            return True
        seen = _read_lock(path)
        if seen is None:
            continue  # released meanwhile: try to create it once more
        if not _stale(seen[0], seen[1], None, STALE_AFTER_SECONDS):
            return False
        _break_stale(path, seen[0])
    return _create(path)


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
    """Remove our lock; a lock another process has taken over since (ours was judged stale) is left alone."""
    seen = _read_lock(path)
    if seen is None or seen[1] and (seen[1].get("host"), seen[1].get("pid")) != (socket.gethostname(), os.getpid()):
        return
    path.unlink(missing_ok=True)


# What trains a claimed run and writes its result: `ablate.run.run_and_store`'s signature (spec, grid, run id,
# run folder, axes, progress); the local executor's `--devices N` passes one that trains on N processes.
Runner = Callable[..., dict[str, Any]]


@contextmanager
def claimed(run: PlannedRun, grid: str, results_root: Path, retry_failed: bool = True) -> Iterator[Path | None]:
    """The run's folder while this process holds the run's lock (heartbeat included); None when the run is
    done or another process holds it.

    The completion check is repeated after taking the lock: another process may have finished the
    run between our planning and our claim, and a completed run must never be trained again.
    """
    from ablate.methods.train import CHECKPOINT_FILE

    folder = run_dir(results_root, grid, run.run_id)
    lock = folder / LOCK_FILE
    if not try_lock(lock):
        yield None
        return
    try:
        state = run_state(folder)
        if state == "completed" or (state == "failed" and not retry_failed):
            yield None
            return
        remove_orphan_temps(folder, (RESULT_FILE, CHECKPOINT_FILE))  # left by a holder killed mid-write
        with heartbeat(lock):
            yield folder
    finally:
        release(lock)


def run_claimed(run: PlannedRun, grid: str, results_root: Path, retry_failed: bool = True,
                progress: Callable[[dict[str, Any]], None] | None = None, runner: Runner | None = None) -> dict[str, Any] | None:
    """Train `run` unless it is done or another process holds it; None when it was not ours to run.
    `runner` trains it and writes its result (default `ablate.run.run_and_store`)."""
    from ablate.run import run_and_store  # the run stage sits below execute

    with claimed(run, grid, results_root, retry_failed) as folder:
        if folder is None:
            return None
        return (runner or run_and_store)(run.spec, grid, run.run_id, folder, run.axes, progress)
