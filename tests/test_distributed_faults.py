"""A run on several processes whose rank dies, raises or hangs ends as failed within a bounded time, its result
naming the rank and how it ended; and `ablate run --devices N` trains each run on N processes.

Faults are made inside the spawned rank by wrapping its optimiser step (`ablate.methods.train.optimizer_step`)
at the second step: SIGKILL (a crash or the OOM killer), an exception, or a sleep (a hang). Nothing in
ablate knows about them. Every rank trains on the CPU with gloo.
"""

from __future__ import annotations

import json
import os
import signal
import time
from functools import partial
from pathlib import Path

import pytest

from ablate import distributed
from ablate.config import RunSpec
from ablate.launch import RECORDS_FOLDER
from cli_helpers import run_ablate

FAULT_AT_STEP = 2
TIMEOUT_S = 4  # ABLATE_DIST_TIMEOUT_S in the hang test: a rank waits this long for a hung peer


def tiny_spec() -> RunSpec:
    """64 shapes images of 16 px, global batch 16 (8 a rank): 4 steps an epoch, 3 epochs."""
    return RunSpec.model_validate({
        "dataset": {"name": "shapes", "train_size": 64, "test_size": 16, "image_size": 16},
        "model": {"arch": "small_cnn"},
        "train": {"epochs": 3, "batch_size": 16, "lr": 0.5, "warmup_epochs": 0.5},
        "augment": {"protocol": "both_branches", "ops": ["crop", "color"]},
        "eval": {"linear_epochs": 2, "knn_k": 5},
        "seed": 3,
    })


def faulty_rank(fault: str, faulty: int, device, *args) -> None:
    """`distributed.run_rank`, with rank `faulty`'s second optimiser step replaced by `fault`."""
    import ablate.methods.train as training

    if distributed.rank() == faulty:
        real_step = training.optimizer_step
        steps = []

        def step(*step_args, **step_kwargs):
            steps.append(1)
            if len(steps) == FAULT_AT_STEP:
                if fault == "die":
                    os.kill(os.getpid(), signal.SIGKILL)
                if fault == "raise":
                    raise ValueError("injected: this rank's step failed")
                if fault == "hang":
                    time.sleep(3600)
            return real_step(*step_args, **step_kwargs)

        training.optimizer_step = step
    distributed.run_rank(device, *args)


def run_with_fault(folder: Path, fault: str, faulty: int) -> tuple[dict, float]:
    started = time.monotonic()
    result = distributed.run_distributed(tiny_spec(), 2, "faults", "run0", folder, axes={"seed": 3},
                                         work=partial(faulty_rank, fault, faulty))
    return result, time.monotonic() - started


def stored(folder: Path) -> dict:
    return json.loads((folder / "result.json").read_text())


@pytest.mark.slow
def test_a_rank_killed_mid_run_fails_the_run_naming_it(tmp_path):
    result, seconds = run_with_fault(tmp_path, "die", faulty=1)
    assert result == stored(tmp_path)
    assert result["status"] == "failed" and result["error"]["type"] == "RanksFailed"
    message = result["error"]["message"]
    assert message.startswith("training on 2 processes failed: rank 1 was killed by SIGKILL; rank 0 raised RuntimeError: "), message
    assert result["axes"] == {"seed": 3} and result["spec"] == tiny_spec().model_dump(mode="json")
    assert seconds < 60, f"ended {seconds:.0f}s after the start"


@pytest.mark.slow
def test_a_rank_that_raises_is_named_before_the_ranks_that_lost_it(tmp_path):
    result, _ = run_with_fault(tmp_path, "raise", faulty=1)
    message = result["error"]["message"]
    assert result["status"] == "failed"
    assert message.startswith("training on 2 processes failed: rank 1 raised ValueError: injected: this rank's step failed; "
                              "rank 0 raised RuntimeError: "), message
    records = sorted(path.name for path in (tmp_path / RECORDS_FOLDER).iterdir())
    assert records == ["rank-0.json", "rank-1.json"]  # each rank's own record, kept beside the failed result


@pytest.mark.slow
def test_a_hung_rank_fails_the_run_within_the_collective_timeout(tmp_path, monkeypatch):
    monkeypatch.setenv("ABLATE_DIST_TIMEOUT_S", str(TIMEOUT_S))
    result, seconds = run_with_fault(tmp_path, "hang", faulty=1)
    message = result["error"]["message"]
    assert result["status"] == "failed"
    assert message.startswith("training on 2 processes failed: rank 1 was still running (hung) and was stopped; "
                              "rank 0 raised RuntimeError: "), message
    assert "Timed out" in message or "timed out" in message.lower(), message
    # start-up, the timeout, the records wait and the launcher's grace after rank 0: nowhere near the hour asleep
    assert TIMEOUT_S < seconds < 60, f"ended {seconds:.0f}s after the start"


@pytest.mark.slow
def test_rank_zero_killed_still_leaves_a_failed_result(tmp_path):
    """Also on a retry (--retry-failed): the earlier attempt's failed result is replaced, not taken for this one's."""
    from ablate.run import failed_result
    from ablate.store import write_result

    write_result(tmp_path, failed_result(tiny_spec(), "faults", "run0", {}, RuntimeError("the earlier attempt's error")))
    os.utime(tmp_path / "result.json", (time.time() - 60, time.time() - 60))
    result, _ = run_with_fault(tmp_path, "die", faulty=0)
    assert result == stored(tmp_path) and result["status"] == "failed"
    assert "earlier attempt" not in result["error"]["message"] and result["axes"] == {"seed": 3}
    message = result["error"]["message"]
    assert message.startswith("training on 2 processes failed: rank 0 was killed by SIGKILL; rank 1 raised RuntimeError: "), message
    assert result["provenance"]["device"] is None  # written by the launcher, which trained on no device


# ------------------------------------------------------------------------------------- ablate run --devices

GRID = """name: devices
dataset: {name: shapes, train_size: 64, test_size: 16, image_size: 16}
model: {arch: small_cnn}
train: {epochs: 2, batch_size: 16, lr: 0.5, warmup_epochs: 0.5}
augment: {protocol: both_branches, ops: [crop, color]}
eval: {linear_epochs: 2, knn_k: 5}
grid:
  seed: [0]
"""


def cpu_env() -> dict[str, str]:
    return {**os.environ, "ABLATE_DEVICE": "cpu"}


@pytest.mark.slow
def test_ablate_run_devices_trains_each_run_on_that_many_processes(tmp_path):
    (tmp_path / "devices.yaml").write_text(GRID)
    done = run_ablate("run", "devices.yaml", "--devices", "2", "--executor", "local", "--quiet", "--log", "tensorboard",
                      cwd=tmp_path, env=cpu_env())
    assert done.returncode == 0, done.stdout + done.stderr
    assert "each run trains on 2 processes on the CPU" in done.stdout
    run_id = next((tmp_path / "results" / "devices").glob("*/result.json")).parent.name
    assert f"{run_id}: epoch 1/2 done on 2 processes, loss " in done.stdout  # rank 0's progress, an epoch a line
    assert f"{run_id}: epoch 2/2 done on 2 processes, loss " in done.stdout
    (result_file,) = (tmp_path / "results" / "devices").glob("*/result.json")
    result = json.loads(result_file.read_text())
    assert result["status"] == "completed" and result["processes"] == 2
    # no checkpoint, no rank records left; rank 0 wrote the live log asked for
    assert sorted(path.name for path in result_file.parent.iterdir()) == ["result.json", "tensorboard"]
    assert list((result_file.parent / "tensorboard").glob("events.out.tfevents.*"))
    assert len(result["curves"]["epoch_loss"]) == 2 and 0.0 <= result["metrics"]["linear_top1"] <= 100.0


@pytest.mark.slow
def test_devices_with_jobs_trains_runs_side_by_side_from_joblib_workers(tmp_path):
    """--jobs 2 --devices 2: each joblib worker launches its run's ranks (started from a worker whose start method
    is joblib's own, which the ranks must not inherit)."""
    (tmp_path / "devices.yaml").write_text(GRID.replace("seed: [0]", "seed: [0, 1]"))
    done = run_ablate("run", "devices.yaml", "--devices", "2", "--jobs", "2", "--executor", "local", "--quiet",
                      cwd=tmp_path, env=cpu_env())
    assert done.returncode == 0, done.stdout + done.stderr
    results = [json.loads(path.read_text()) for path in (tmp_path / "results" / "devices").glob("*/result.json")]
    assert sorted((r["spec"]["seed"], r["status"], r["processes"]) for r in results) == [(0, "completed", 2), (1, "completed", 2)]


@pytest.mark.parametrize("args, env, expected", [
    (["--devices", "3"], {}, "train.batch_size 16 is not divisible by the 3 processes of --devices 3"),
    (["--devices", "2", "--executor", "slurm"], {}, "--devices 2 is for the local executor"),
    (["--devices", "0"], {}, "argument --devices: "),
])
def test_bad_devices_are_refused_before_any_training(tmp_path, args, env, expected):
    (tmp_path / "devices.yaml").write_text(GRID)
    refused = run_ablate("run", "devices.yaml", *args, cwd=tmp_path, env={**os.environ, **env})
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert expected in refused.stderr and "Traceback" not in refused.stderr
    assert not (tmp_path / "results" / "devices").exists() or not list((tmp_path / "results" / "devices").glob("*/result.json"))


def test_devices_need_as_many_gpus_and_no_single_named_device(monkeypatch):
    from ablate.execute import ExecutorError, local

    monkeypatch.setattr(local, "visible_gpus", lambda: ["cuda:0", "cuda:1", "cuda:2"])
    monkeypatch.delenv("ABLATE_DEVICE", raising=False)
    assert local.worker_devices(jobs=1, processes=2) == ["cuda:0", "cuda:1", "cuda:2"]  # the pool the runs take 2 from
    with pytest.raises(ExecutorError, match=r"^--devices 4: this machine shows 3 GPUs \(cuda:0, cuda:1, cuda:2\); ask for at most 3"):
        local.worker_devices(jobs=1, processes=4)
    monkeypatch.setenv("ABLATE_DEVICE", "cuda:1")
    with pytest.raises(ExecutorError, match="^ABLATE_DEVICE=cuda:1 names one device, but --devices 2 trains each run on 2"):
        local.worker_devices(jobs=1, processes=2)
    monkeypatch.setenv("ABLATE_DEVICE", "cpu")
    assert local.worker_devices(jobs=2, processes=2) == []  # every rank on the CPU
    monkeypatch.setattr(local, "visible_gpus", lambda: [])
    monkeypatch.delenv("ABLATE_DEVICE")
    assert local.worker_devices(jobs=1, processes=2) == []


def children_of(pid: int) -> set[int]:
    """Pids of the processes whose parent is `pid` (Linux /proc)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[1] == str(pid):  # field 4, ppid
            found.add(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"  # a zombie has ended


@pytest.mark.slow
def test_ctrl_c_stops_every_rank_and_keeps_the_checkpoint(tmp_path):
    """Ctrl-C (SIGINT to `ablate run` alone, as a supervisor would send it): the launcher stops its ranks, the run
    stays pending with rank 0's checkpoint for the next attempt to resume from (as tests/test_distributed.py
    resumes one)."""
    import subprocess
    import sys

    (tmp_path / "devices.yaml").write_text(GRID.replace("epochs: 2", "epochs: 300"))
    command = [sys.executable, "-m", "ablate", "run", "devices.yaml", "--devices", "2", "--executor", "local", "--quiet"]
    parent = subprocess.Popen(command, cwd=tmp_path, env=cpu_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list((tmp_path / "results" / "devices").glob("*/checkpoint.pt")) and time.monotonic() < deadline:
        time.sleep(0.2)
    ranks = set()
    for launcher in children_of(parent.pid):  # ablate run -> (multiprocessing helpers) and the two ranks
        ranks |= children_of(launcher) | {launcher}
    assert list((tmp_path / "results" / "devices").glob("*/checkpoint.pt")), "rank 0 wrote no checkpoint in time"
    parent.send_signal(signal.SIGINT)
    _, err = parent.communicate(timeout=60)
    assert parent.returncode == 130, err
    assert "interrupted; completed runs are kept" in err
    deadline = time.monotonic() + 15
    while any(alive(pid) for pid in ranks) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [pid for pid in ranks if alive(pid)], "a rank outlived the command"
    (folder,) = (tmp_path / "results" / "devices").iterdir()
    assert not (folder / "result.json").exists() and (folder / "checkpoint.pt").exists()


def test_a_failure_names_silent_ranks_first_then_the_reports_earliest_first():
    from ablate.launch import RankExit, describe_failure

    def record(rank: int, kind: str, message: str, at: float) -> dict:
        return {"rank": rank, "type": kind, "message": message, "at": at}

    lost = record(0, "RuntimeError", "Connection closed by peer", 20.0)
    cause = record(2, "ValueError", "bad batch", 10.0)
    assert describe_failure({0: lost, 2: cause}, 4, {1: RankExit(1, -11), 3: RankExit(3, None, stopped=True)}) == (
        "training on 4 processes failed: rank 1 was killed by SIGSEGV; rank 3 was still running (hung) and was stopped; "
        "rank 2 raised ValueError: bad batch; rank 0 raised RuntimeError: Connection closed by peer")
    assert describe_failure({0: lost}, 2) == ("training on 2 processes failed: rank 1 reported no error (killed, crashed "
                                              "or hung); rank 0 raised RuntimeError: Connection closed by peer")
    same = {rank: record(rank, "NonFiniteLoss", "loss became nan at step 7", 5.0 - rank) for rank in range(3)}
    assert describe_failure(same, 3) == "training on 3 processes failed: every rank raised NonFiniteLoss: loss became nan at step 7"
    assert RankExit(1, 3).describe() == "exited with status 3" and RankExit(1, -200).describe() == "was killed by signal 200"
