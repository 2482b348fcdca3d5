"""Concurrent writers: 8 `ablate run` processes on one grid at once lose nothing and train each run once;
8 processes racing for one lock (free, stale by a dead local pid, stale by an old heartbeat, or held)
end with exactly the right number of holders; 8 processes rewriting one result.json never expose a
partial file. Plus the claim rules one by one (stale, pid reuse, pid namespaces, the double-break race).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from faults_helpers import ROUND_SECONDS, race_for_locks, results_of, tiny_grid, training_starts, write_same_result

from ablate.config import load_grid
from ablate.execute import claim
from ablate.plan import plan_grid
from ablate.store import RESULT_FILE, read_result, write_result

PROCESSES = 8
SPAWN = multiprocessing.get_context("spawn")  # fresh interpreters: no torch threads inherited from pytest


def completed_now(stdout: str) -> int:
    """Runs this `ablate run` trained; 0 when it started after the others had finished everything."""
    found = re.search(r"(\d+) completed now", stdout)
    assert found or "runs are already done; nothing to train" in stdout, stdout
    return int(found.group(1)) if found else 0


@pytest.mark.parametrize("inject, axes, rounds", [
    ("log_train", "  pair: [crop, color]\n  seed: [0, 1]\n", 1),  # 8 real (tiny) trainings
    ("fake_train", "  pair: [crop, color, blur, noise]\n", 3),  # 16 runs, training replaced by a 50 ms sleep
], ids=["real-training", "fake-training"])
@pytest.mark.slow
def test_eight_processes_on_one_grid_train_each_run_once(tmp_path, zygote, inject, axes, rounds):
    for round_ in range(rounds):
        folder = tmp_path / f"round{round_}"
        folder.mkdir()
        (folder / "shared.yaml").write_text(tiny_grid("shared", axes=axes))
        expected = {run.run_id for run in plan_grid(load_grid(folder / "shared.yaml"))}
        log = folder / "training-starts.log"
        env = {"FAULTS_TRAIN_LOG": str(log), "FAULTS_TRAIN_SECONDS": "0.05"}
        children = [zygote.start(["run", "shared.yaml", "--quiet"], folder, inject=inject, env=env) for _ in range(PROCESSES)]
        codes = [child.wait() for child in children]
        assert codes == [0] * PROCESSES, [child.stderr[-2000:] for child in children]
        starts = training_starts(log)
        assert sorted(run_id for run_id, _ in starts) == sorted(expected), "a run trained twice, or not at all"
        assert len({pid for _, pid in starts}) >= 2, "the processes did not overlap"
        assert sum(completed_now(child.stdout) for child in children) == len(expected)
        results = results_of(folder / "results", "shared")
        assert set(results) == expected and all(r["status"] == "completed" for r in results.values())
        assert not list((folder / "results").rglob("*.tmp")), "temporary files left behind"


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def write_lock(path: Path, holder: dict, age: float = 0.0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(holder))
    if age:
        os.utime(path, (time.time() - age, time.time() - age))


LOCK_KINDS = {
    # kind: (how the lock looks before the race, how many racers must win)
    "free": (None, 1),
    "dead-local-pid": (lambda: {"host": socket.gethostname(), "pid": dead_pid()}, 1),
    "old-heartbeat-elsewhere": (lambda: {"host": "node-that-died", "pid": 1}, 1),
    "held-here": (lambda: claim._holder(), 0),
    "held-elsewhere": (lambda: {"host": "busy-node", "pid": 1}, 0),
}


@pytest.mark.slow
def test_racing_for_one_lock_gives_exactly_one_holder(tmp_path):
    kinds = list(LOCK_KINDS) * 8  # 40 rounds, 8 racers each
    paths = []
    for index, kind in enumerate(kinds):
        path = tmp_path / f"round{index}-{kind}" / claim.LOCK_FILE
        path.parent.mkdir()
        make, _ = LOCK_KINDS[kind]
        if make is not None:
            write_lock(path, make(), age=claim.STALE_AFTER_SECONDS + 100 if kind == "old-heartbeat-elsewhere" else 0)
        paths.append(str(path))
    queue, go, start = SPAWN.Queue(), SPAWN.Event(), SPAWN.Value("d", 0.0)
    workers = [SPAWN.Process(target=race_for_locks, args=(paths, queue, go, start)) for _ in range(PROCESSES)]
    for worker in workers:
        worker.start()
    assert [queue.get(timeout=120) for _ in workers] == ["ready"] * PROCESSES
    start.value = time.time() + 0.2
    go.set()
    outcomes = [queue.get(timeout=120) for _ in range(PROCESSES * len(paths))]
    for worker in workers:
        worker.join(timeout=30)
    assert time.time() > start.value + (len(paths) - 1) * ROUND_SECONDS
    for index, kind in enumerate(kinds):
        winners = [pid for round_, pid, won in outcomes if round_ == index and won]
        assert len(winners) == LOCK_KINDS[kind][1], (kind, winners)
        if winners:  # the lock now names its one holder
            assert json.loads(Path(paths[index]).read_text())["pid"] == winners[0]
        assert not list(Path(paths[index]).parent.glob(".lock.*")), "breaker or private files left behind"


def test_eight_writers_of_one_result_never_expose_a_partial_file(tmp_path):
    folder = tmp_path / "abc123"
    folder.mkdir()
    seen, problems, stop = [0], [], threading.Event()

    def read_constantly() -> None:
        while not stop.is_set():
            try:
                result = read_result(folder)
            except Exception as err:  # noqa: BLE001
                problems.append(repr(err))
                continue
            if result is not None:
                seen[0] += 1

    reader = threading.Thread(target=read_constantly)
    reader.start()
    go = SPAWN.Event()
    writers = [SPAWN.Process(target=write_same_result, args=(str(folder), writer, 20, go)) for writer in range(PROCESSES)]
    for writer in writers:
        writer.start()
    go.set()
    for writer in writers:
        writer.join(timeout=120)
    stop.set()
    reader.join()
    assert [writer.exitcode for writer in writers] == [0] * PROCESSES
    assert problems == [] and seen[0] > 0
    final = json.loads((folder / RESULT_FILE).read_text())
    assert final["round"] == 19 and final["status"] == "completed"
    assert sorted(p.name for p in folder.iterdir()) == [RESULT_FILE]


# --------------------------------------------------------------------------------- claim, rule by rule


def test_lock_is_exclusive_and_names_its_holder(tmp_path):
    lock = tmp_path / "run" / claim.LOCK_FILE
    assert claim.try_lock(lock) and not claim.try_lock(lock)
    holder = json.loads(lock.read_text())
    assert (holder["host"], holder["pid"]) == (socket.gethostname(), os.getpid())
    claim.release(lock)
    assert not lock.exists() and claim.try_lock(lock)


def test_stale_rules(tmp_path):
    lock = tmp_path / claim.LOCK_FILE
    here = socket.gethostname()
    write_lock(lock, {"host": here, "pid": dead_pid()})
    assert claim.lock_is_stale(lock), "a dead pid on this host"
    write_lock(lock, claim._holder())
    assert not claim.lock_is_stale(lock), "this very process"
    write_lock(lock, {**claim._holder(), "start": 1})
    assert claim.lock_is_stale(lock), "our pid, but a process started at another time: the holder's pid was reused"
    write_lock(lock, {"host": here, "pid": dead_pid(), "pidns": 1})
    assert not claim.lock_is_stale(lock), "another pid namespace (container) with our host name: not ours to judge"
    write_lock(lock, {"host": "elsewhere", "pid": 1}, age=claim.STALE_AFTER_SECONDS - 30)
    assert not claim.lock_is_stale(lock), "another host, heartbeat recent enough"
    write_lock(lock, {"host": "elsewhere", "pid": 1}, age=claim.STALE_AFTER_SECONDS + 30)
    assert claim.lock_is_stale(lock), "another host, silent for too long"
    lock.write_text("{half a rec")
    assert not claim.lock_is_stale(lock), "a fresh unreadable lock is respected until its heartbeat ages"


def test_a_lock_another_process_just_made_survives_a_late_breaker(tmp_path):
    """B judged the old lock stale; A broke it and made a fresh one; B's break must not remove A's lock."""
    lock = tmp_path / claim.LOCK_FILE
    write_lock(lock, {"host": socket.gethostname(), "pid": dead_pid()})
    judged_by_b = lock.stat()
    assert claim.try_lock(lock)  # A
    fresh = lock.read_text()
    claim._break_stale(lock, judged_by_b)  # B, a moment late
    assert lock.read_text() == fresh


def test_breaker_lock_serialises_breaking_and_expires(tmp_path):
    lock = tmp_path / claim.LOCK_FILE
    write_lock(lock, {"host": "elsewhere", "pid": 1}, age=claim.STALE_AFTER_SECONDS + 30)
    breaker = tmp_path / claim.BREAK_FILE
    write_lock(breaker, {"host": "elsewhere", "pid": 2})
    assert not claim.try_lock(lock), "someone else is breaking it right now"
    write_lock(breaker, {"host": "elsewhere", "pid": 2}, age=claim.BREAK_STALE_SECONDS + 5)
    assert claim.try_lock(lock), "a breaker dead for a minute is cleared, then the stale lock broken and taken"
    assert not breaker.exists()
    assert json.loads(lock.read_text())["pid"] == os.getpid()


def test_release_leaves_a_lock_that_was_taken_over(tmp_path):
    lock = tmp_path / claim.LOCK_FILE
    write_lock(lock, {"host": "elsewhere", "pid": 1})
    claim.release(lock)
    assert lock.exists()


def test_heartbeat_refreshes_the_lock(tmp_path):
    lock = tmp_path / claim.LOCK_FILE
    assert claim.try_lock(lock)
    os.utime(lock, (time.time() - 1000, time.time() - 1000))
    with claim.heartbeat(lock, interval=0.02):
        time.sleep(0.15)
    assert time.time() - lock.stat().st_mtime < 5


def test_run_completed_by_another_process_after_planning_is_not_trained(tmp_path, monkeypatch):
    import ablate.run

    grid = load_grid_text(tmp_path, tiny_grid("late", axes="  seed: [0]\n"))
    (run,) = plan_grid(grid)
    folder = tmp_path / "results" / "late" / run.run_id
    write_result(folder, {"run_id": run.run_id, "status": "completed"})  # finished elsewhere, after our plan

    def must_not_train(*args, **kwargs):
        raise AssertionError("a completed run was trained again")

    monkeypatch.setattr(ablate.run, "run_and_store", must_not_train)
    assert claim.run_claimed(run, "late", tmp_path / "results") is None
    assert not (folder / claim.LOCK_FILE).exists()


def load_grid_text(folder: Path, text: str):
    path = folder / "grid.yaml"
    path.write_text(text)
    return load_grid(path)
