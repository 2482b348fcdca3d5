"""Shared by tests/faults: tiny grids, the `ablate` command as a user runs it, a fork server for fast
kill trials, injected faults, and a watcher that reads every result.json the moment it appears.

Why a fork server (Zygote): `python -m ablate run` spends ~5-10 s importing torch, torchvision and
kornia on a busy 2-core machine, and the training of a tiny grid takes ~2 s. Twenty-odd SIGKILL trials
through fresh interpreters would take minutes and mostly kill imports. The Zygote imports everything
once, then forks a child per command that calls exactly what `python -m ablate` calls,
`ablate.cli.main(argv)`, with its stdout and stderr in files. The child is an ordinary process that
the test kills with SIGKILL. A few tests still start real `python -m ablate` processes, to show the
two paths agree.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TESTS_FAULTS = Path(__file__).parent
REPO = TESTS_FAULTS.parents[1]


def tiny_grid(name: str = "tiny", axes: str = "  pair: [crop, color]\n", train: str = "epochs: 1, batch_size: 32",
              extra: str = "") -> str:
    """A grid of shapes at 16 px, 200 training images: a run trains in well under a second."""
    return (
        f"name: {name}\n"
        "dataset: {name: shapes, train_size: 200, test_size: 100, image_size: 16}\n"
        "model: {arch: small_cnn}\n"
        f"train: {{{train}, lr: 0.5, warmup_epochs: 0}}\n"
        "augment: {protocol: one_branch, base_crop_scale: [0.5, 1.0]}\n"
        "eval: {linear_epochs: 5, knn_k: 10}\n"
        f"{extra}"
        "grid:\n"
        f"{axes}"
    )


def child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "ABLATE_DEVICE": "cpu", "PYTHONPATH": str(REPO), **extra})
    return env


def ablate(*args: str, cwd: Path, timeout: float = 300, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`python -m ablate ARGS` in a fresh interpreter, as a user types it."""
    from cli_helpers import run_ablate  # here, not at the top: the zygote imports this module without tests/ on its path

    return run_ablate(*args, cwd=cwd, env=env or child_env(), timeout=timeout)


# ------------------------------------------------------------------------------------------ results


def results_of(results_root: Path, grid: str) -> dict[str, dict[str, Any]]:
    """run_id -> parsed result.json for every run folder of the grid that has one."""
    found = {}
    for path in sorted((results_root / grid).glob("*/result.json")):
        found[path.parent.name] = json.loads(path.read_text())
    return found


class ResultWatcher(threading.Thread):
    """Polls result.json files under a folder while trials run and parses every one it sees.

    It records a problem when a file it sees is not a complete, valid result (partial or corrupt
    content visible under a result path), or when a result it once saw as completed later changes
    (a completed run written again, i.e. trained twice).
    """

    def __init__(self, root: Path, pattern: str = "*/*/result.json", interval: float = 0.003):
        super().__init__(daemon=True)
        self.root, self.pattern, self.interval = root, pattern, interval
        self.stop = threading.Event()
        self.completed: dict[Path, str] = {}
        self.problems: list[str] = []
        self.reads = 0

    def run(self) -> None:
        while not self.stop.is_set():
            for path in self.root.glob(self.pattern):
                self.check(path)
            time.sleep(self.interval)

    def check(self, path: Path) -> None:
        try:
            text = path.read_text()
        except FileNotFoundError:
            return
        self.reads += 1
        try:
            result = json.loads(text)
            assert result["status"] in ("completed", "failed") and result["run_id"] == path.parent.name
        except Exception as err:  # noqa: BLE001 - any reason is a problem to report
            self.problems.append(f"{path}: unreadable result visible ({type(err).__name__}: {text[:60]!r})")
            return
        if path in self.completed and self.completed[path] != text:
            self.problems.append(f"{path}: a completed result was written again")
        if result["status"] == "completed":
            self.completed.setdefault(path, text)

    def finish(self) -> None:
        self.stop.set()
        self.join(timeout=5)
        for path in self.root.glob(self.pattern):  # one last look, after the final writes
            self.check(path)


# ---------------------------------------------------------------------------------- injected faults


def apply_injection(name: str | None) -> None:
    """Faults a forked `ablate` process applies to itself before calling main (see Zygote)."""
    if name is None:
        return
    if name == "fake_train":
        import ablate.run

        ablate.run.run_and_store = fake_run_and_store
    elif name == "log_train":
        import ablate.run

        real = ablate.run.run_and_store

        def logged(spec, grid, run_id, *args, **kwargs):
            log_training_start(run_id)
            return real(spec, grid, run_id, *args, **kwargs)

        ablate.run.run_and_store = logged
    elif name == "fail_seed":
        _fail_seed()
    elif name == "disk_fills":
        _disk_fills_after_first_result()
    elif name == "nonatomic_writes":
        _write_in_place_slowly()
    else:
        raise ValueError(f"unknown injection {name!r}")


def log_training_start(run_id: str) -> None:
    """One line 'run_id pid' appended to $FAULTS_TRAIN_LOG (O_APPEND: lines of racing processes never mix)."""
    handle = os.open(os.environ["FAULTS_TRAIN_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(handle, f"{run_id} {os.getpid()}\n".encode())
    finally:
        os.close(handle)


def training_starts(log: Path) -> list[tuple[str, int]]:
    if not log.exists():
        return []
    return [(line.split()[0], int(line.split()[1])) for line in log.read_text().splitlines()]


def fake_run_and_store(spec, grid, run_id, run_folder, axes=None, progress=None, **_):
    """Stands in for training: logs that training started, waits, writes a result."""
    from ablate.store import write_result

    log_training_start(run_id)
    time.sleep(float(os.environ.get("FAULTS_TRAIN_SECONDS", "0.05")))
    result = {"run_id": run_id, "grid": grid, "status": "completed", "spec": spec.model_dump(mode="json"),
              "axes": axes or {}, "metrics": {"linear_top1": 50.0}, "timings": {}, "error": None,
              "provenance": {"pid": os.getpid(), "start_time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}}
    write_result(run_folder, result)
    return result


def _fail_seed() -> None:
    """Runs whose seed is $FAULTS_FAIL_SEED raise $FAULTS_FAIL_ERROR (oom | exception) instead of training."""
    import torch

    import ablate.run

    real = ablate.run.execute_run
    seed = int(os.environ["FAULTS_FAIL_SEED"])
    kind = os.environ.get("FAULTS_FAIL_ERROR", "exception")

    def execute_run(spec, *args, **kwargs):
        if spec.seed == seed:
            if kind == "oom":
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (injected)")
            raise RuntimeError("injected failure in the middle of a run")
        return real(spec, *args, **kwargs)

    ablate.run.execute_run = execute_run


def _write_in_place_slowly() -> None:
    """The bug the store guards against: results written in place, in pieces (the watcher must see it)."""
    import ablate.store

    def write_in_place(path: Path, payload: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as handle:
            for start in range(0, len(payload), 256):
                handle.write(payload[start:start + 256])
                handle.flush()
                time.sleep(0.002)

    ablate.store.write_bytes_atomic = write_in_place


def _disk_fills_after_first_result() -> None:
    """The disk is full from the moment one result.json is on it: every later fsync raises ENOSPC."""
    real_fsync = os.fsync
    state = {"results": 0}

    def fsync(fd: int) -> None:
        try:
            name = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            name = ""
        if state["results"] >= 1:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)
        if ".result.json." in name:
            state["results"] += 1

    os.fsync = fsync


# ------------------------------------------------------------------------------------- fork server


@dataclass
class Child:
    """One forked `ablate` command: its pid and the files its output and exit status go to."""

    pid: int
    folder: Path
    started: float = field(default_factory=time.monotonic)

    @property
    def stdout(self) -> str:
        return (self.folder / "stdout").read_text()

    @property
    def stderr(self) -> str:
        return (self.folder / "stderr").read_text()

    def exit_code(self) -> int | None:
        """main's return value once it returned, None while running (or when killed)."""
        try:
            return int((self.folder / "exit").read_text())
        except (FileNotFoundError, ValueError):
            return None

    def alive(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def wait(self, timeout: float = 120) -> int:
        deadline = time.monotonic() + timeout
        while self.alive():
            if time.monotonic() > deadline:
                self.kill()
                raise TimeoutError(f"ablate child {self.pid} still running after {timeout} s")
            time.sleep(0.01)
        code = self.exit_code()
        if code is None:
            raise RuntimeError(f"ablate child {self.pid} died without an exit status; stderr:\n{self.stderr[-3000:]}")
        return code

    def kill(self) -> bool:
        """SIGKILL; True when it was still running (False: it had already finished)."""
        if self.exit_code() is not None:
            return False
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            return False
        while self.alive():
            time.sleep(0.002)
        return True


class Zygote:
    """A server process with ablate imported that forks `ablate.cli.main(argv)` children on request."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", "import faults_helpers; faults_helpers.zygote_main()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=TESTS_FAULTS,
            env=child_env(PYTHONPATH=os.pathsep.join([str(REPO), str(TESTS_FAULTS)])),
        )
        ready = self.process.stdout.readline()
        if ready.strip() != "ready":
            raise RuntimeError(f"zygote did not start: {ready!r}")
        self.count = 0

    def start(self, argv: list[str], cwd: Path, inject: str | None = None, env: dict[str, str] | None = None) -> Child:
        self.count += 1
        folder = Path(cwd) / f".child-{self.count}"
        folder.mkdir(parents=True)
        request = {"argv": argv, "cwd": str(cwd), "inject": inject, "env": env or {}, "folder": str(folder)}
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        return Child(int(self.process.stdout.readline()), folder)

    def run(self, argv: list[str], cwd: Path, inject: str | None = None, env: dict[str, str] | None = None,
            timeout: float = 120) -> tuple[int, Child]:
        child = self.start(argv, cwd, inject, env)
        return child.wait(timeout), child

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=10)


def zygote_main() -> None:
    """The server loop: import once, then one fork per request line; children are reaped automatically."""
    import torch

    import ablate.cli
    import ablate.data
    import ablate.execute.local
    import ablate.run

    for name in ablate.data.LOADERS:  # the dataset modules (torchvision) too
        ablate.data.loader_of(name)
    torch.set_num_threads(1)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # no zombies: a finished child's pid disappears
    print("ready", flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(request)
        print(pid, flush=True)


def _child(request: dict[str, Any]) -> None:
    code = 99
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        folder = Path(request["folder"])
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        for fd, name in ((1, "stdout"), (2, "stderr")):
            handle = os.open(folder / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(handle, fd)
            os.close(handle)
        os.chdir(request["cwd"])
        os.environ.update(request["env"])
        apply_injection(request["inject"])
        import ablate.cli

        code = ablate.cli.main(request["argv"])
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 1
    except BaseException:  # noqa: BLE001 - shown to the test through the stderr file
        import traceback

        traceback.print_exc()
        code = 98
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            (Path(request["folder"]) / "exit").write_text(str(code))
        finally:
            os._exit(code)


# ------------------------------------------------------------------------- lock races (multiprocessing)


ROUND_SECONDS = 0.04


def race_for_locks(paths: list[str], queue, go, start) -> None:
    """Worker: once told to go, call try_lock on path i at start + i x ROUND_SECONDS; report (i, pid, won)."""
    from ablate.execute.claim import try_lock

    queue.put("ready")
    go.wait()
    for index, path in enumerate(paths):
        moment = start.value + index * ROUND_SECONDS
        time.sleep(max(0.0, moment - time.time() - 0.003))
        while time.time() < moment:  # the last few ms spinning, so that the processes start together
            pass
        queue.put((index, os.getpid(), try_lock(Path(path))))


def write_same_result(folder: str, writer: int, rounds: int, go) -> None:
    """Worker: write a (large-ish) result for one run again and again, as racing finishers would."""
    from ablate.store import write_result

    go.wait()
    for round_ in range(rounds):
        write_result(Path(folder), {"run_id": Path(folder).name, "status": "completed", "writer": writer,
                                    "round": round_, "padding": "x" * 200_000})
