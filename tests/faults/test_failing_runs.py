"""Failing runs: an exception, a NaN loss, a batch larger than the data, or out-of-memory marks that run
failed with its error, the other runs go on, `ablate run` exits 1 naming each failed run, and
`--retry-failed` reruns only the failed ones (never a completed one).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from faults_helpers import ablate, results_of, tiny_grid

pytestmark = pytest.mark.slow  # seconds of real processes each; `pytest -m 'not slow'` leaves them out

# 4 runs: (128, 0.5) trains; (128, 100) diverges (lr 100 x 128/256 with weight decay 1 multiplies the
# weights by -49 each step, float32 overflows after ~12 steps); (512, *) cannot take one full batch of 200.
DIVERGING = tiny_grid(
    "diverging",
    axes="  train.batch_size: [128, 512]\n  train.lr: [0.5, 100]\n",
    train="epochs: 20, batch_size: 128, optimizer: sgd, weight_decay: 1.0",
)


def file_bytes(results_root: Path, grid: str) -> dict[str, bytes]:
    return {p.parent.name: p.read_bytes() for p in (results_root / grid).glob("*/result.json")}


@pytest.fixture(scope="module")
def diverged(tmp_path_factory):
    folder = tmp_path_factory.mktemp("diverging")
    (folder / "diverging.yaml").write_text(DIVERGING)
    first = ablate("run", "diverging.yaml", "--quiet", cwd=folder)
    return folder, first


def test_nan_and_batch_too_large_fail_their_runs_and_the_others_go_on(diverged):
    folder, first = diverged
    assert first.returncode == 1, first.stderr
    assert "Traceback" not in first.stderr
    assert "4 runs: 1 completed now, 0 already done, 3 failed" in first.stdout
    results = results_of(folder / "results", "diverging")
    assert len(results) == 4
    by_axes = {(r["spec"]["train"]["batch_size"], r["spec"]["train"]["lr"]): r for r in results.values()}
    good = by_axes[128, 0.5]
    assert good["status"] == "completed" and 0 <= good["metrics"]["linear_top1"] <= 100
    nan = by_axes[128, 100]
    assert nan["status"] == "failed" and nan["error"]["type"] == "NonFiniteLoss"
    step = re.search(r"loss became (?:nan|inf|-inf) at (?:epoch \d+, )?step (\d+)", nan["error"]["message"])
    assert step and int(step.group(1)) < 20, "stopped within a few steps of diverging, not at the end of its 20"
    assert "lower train.lr" in nan["error"]["message"]
    for lr in (0.5, 100):
        big = by_axes[512, lr]
        assert big["status"] == "failed" and big["error"]["type"] == "BatchTooLarge"
        assert "train.batch_size is 512 but the training set has only 200 images" in big["error"]["message"]
    for run_id, result in results.items():  # `ablate run` names every failed run with its message
        if result["status"] == "failed":
            assert f"  failed {run_id}: {result['error']['message']}" in first.stdout


def test_rerun_without_retry_trains_nothing_and_still_exits_1(diverged):
    folder, _ = diverged
    before = file_bytes(folder / "results", "diverging")
    again = ablate("run", "diverging.yaml", "--quiet", cwd=folder)
    assert again.returncode == 1
    assert "3 of them failed earlier; rerun them with --retry-failed" in again.stdout
    assert file_bytes(folder / "results", "diverging") == before


def test_retry_failed_reruns_only_the_failed_runs(diverged, zygote):
    folder, _ = diverged
    before = file_bytes(folder / "results", "diverging")
    code, child = zygote.run(["run", "diverging.yaml", "--quiet", "--retry-failed"], folder)
    assert code == 1, child.stderr
    assert "4 runs: 0 completed now, 1 already done, 3 failed" in child.stdout
    after = file_bytes(folder / "results", "diverging")
    completed = [run_id for run_id, data in before.items() if json.loads(data)["status"] == "completed"]
    assert len(completed) == 1
    for run_id in before:
        if run_id in completed:
            assert after[run_id] == before[run_id], "a completed run was trained again"
        else:
            assert after[run_id] != before[run_id], "a failed run was not retried"
            assert json.loads(after[run_id])["status"] == "failed"  # same spec, same failure


@pytest.mark.parametrize("error, expected_type, expected_message", [
    ("exception", "RuntimeError", "injected failure in the middle of a run"),
    ("oom", "OutOfMemoryError", "CUDA out of memory. Tried to allocate 20.00 GiB"),
])
def test_exception_or_out_of_memory_fails_one_run_then_retry_finishes_it(tmp_path, zygote, error, expected_type, expected_message):
    (tmp_path / "seeds.yaml").write_text(tiny_grid("seeds", axes="  seed: [0, 1, 2]\n"))
    env = {"FAULTS_FAIL_SEED": "1", "FAULTS_FAIL_ERROR": error}
    code, child = zygote.run(["run", "seeds.yaml", "--quiet"], tmp_path, inject="fail_seed", env=env)
    assert code == 1, child.stderr
    assert "3 runs: 2 completed now, 0 already done, 1 failed" in child.stdout
    results = results_of(tmp_path / "results", "seeds")
    by_seed = {r["spec"]["seed"]: r for r in results.values()}
    assert by_seed[0]["status"] == by_seed[2]["status"] == "completed"
    failed = by_seed[1]
    assert failed["status"] == "failed" and failed["error"]["type"] == expected_type
    assert expected_message in failed["error"]["message"] and expected_type in failed["error"]["traceback"]
    assert f"failed {failed['run_id']}: {expected_message}" in child.stdout
    before = file_bytes(tmp_path / "results", "seeds")

    code, child = zygote.run(["run", "seeds.yaml", "--quiet", "--retry-failed"], tmp_path)  # the fault is gone
    assert code == 0, child.stderr
    assert "3 runs: 1 completed now, 2 already done, 0 failed" in child.stdout
    after = file_bytes(tmp_path / "results", "seeds")
    assert json.loads(after[failed["run_id"]])["status"] == "completed"
    assert {k: v for k, v in after.items() if k != failed["run_id"]} == {k: v for k, v in before.items() if k != failed["run_id"]}
