"""One run from spec to result.json: resume gives the same result, NaN is a recorded failure,
`method` is a grid axis, speed is reported, and the shipped CIFAR grids run on a tiny CIFAR file."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ablate.config import RunSpec, load_grid
from ablate.methods.train import CHECKPOINT_FILE, InterruptedForTest
from ablate.plan import plan_grid
from ablate.run import run_and_store
from ablate.store import RESULT_FILE, read_result

REPO = Path(__file__).parents[1]
TINY = {
    "dataset": {"name": "shapes", "train_size": 96, "test_size": 40, "image_size": 16},
    "model": {"arch": "small_cnn"},
    "train": {"epochs": 2, "batch_size": 16, "lr": 1.0, "warmup_epochs": 0.5},  # 6 steps an epoch
    "augment": {"protocol": "one_branch", "ops": ["crop", "color"], "base_crop_scale": [0.5, 1.0]},
    "eval": {"linear_epochs": 5, "knn_k": 10},
    "seed": 1,
}
SAME_IN_BOTH = ["linear_top1", "linear_top5", "linear_train_top1", "knn_top1", "final_loss", "labelled_examples"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(autouse=True)
def on_cpu(monkeypatch):
    monkeypatch.setenv("ABLATE_DEVICE", "cpu")


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    folder = tmp_path_factory.mktemp("straight")
    return run_and_store(RunSpec.model_validate(TINY), "g", "r", folder)


@pytest.mark.parametrize("stop", [6, 4], ids=["epoch-end", "mid-epoch"])
def test_interrupted_and_resumed_run_gives_the_same_result(tmp_path, straight, stop):
    spec = RunSpec.model_validate(TINY)
    with pytest.raises(InterruptedForTest):
        run_and_store(spec, "g", "r", tmp_path, stop_after_steps=stop)
    assert read_result(tmp_path) is None  # an interruption leaves the run pending, not failed
    assert (tmp_path / CHECKPOINT_FILE).exists()
    resumed = run_and_store(spec, "g", "r", tmp_path)
    assert straight["status"] == resumed["status"] == "completed"
    assert resumed["resumed_from_epoch"] == pytest.approx(stop / 6) and straight["resumed_from_epoch"] is None
    assert {k: resumed["metrics"][k] for k in SAME_IN_BOTH} == {k: straight["metrics"][k] for k in SAME_IN_BOTH}
    assert resumed["curves"] == straight["curves"]  # every epoch's mean loss, bit for bit
    assert not (tmp_path / CHECKPOINT_FILE).exists()  # a completed result supersedes the checkpoint


def test_result_reports_speed_and_settings(straight):
    metrics = straight["metrics"]
    train_seconds = straight["timings"]["train"]
    assert metrics["images_per_second"] == pytest.approx(2 * 6 * 16 / train_seconds)
    assert metrics["encoder_gflops_per_view"] > 0
    assert metrics["achieved_tflops"] == pytest.approx(3 * 2 * metrics["images_per_second"] * metrics["encoder_gflops_per_view"] / 1e3)
    assert metrics["mfu"] is None  # a CPU has no peak in the table
    assert straight["fast_path"] == {"bf16": False, "channels_last": True, "compile": False}


def test_non_finite_loss_is_recorded_as_a_failed_run(tmp_path):
    spec = RunSpec.model_validate({**TINY, "train": {"epochs": 30, "batch_size": 96, "lr": 100.0, "optimizer": "sgd",
                                                      "weight_decay": 1.0, "warmup_epochs": 0}})
    result = run_and_store(spec, "g", "nan", tmp_path)
    assert result["status"] == "failed"
    assert result["error"]["type"] == "NonFiniteLoss"
    step = int(result["error"]["message"].split(" at step ")[1].split()[0])
    assert step <= 20
    assert json.loads((tmp_path / RESULT_FILE).read_text())["error"]["type"] == "NonFiniteLoss"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_device_the_machine_lacks_fails_the_run_with_a_result(tmp_path, monkeypatch):
    # E.g. a SLURM job whose environment says ABLATE_DEVICE=cuda on a node without a GPU: the run's
    # result records the failure (the grid goes on) instead of the process dying without one.
    monkeypatch.setenv("ABLATE_DEVICE", "cuda")
    result = run_and_store(RunSpec.model_validate(TINY), "g", "nocuda", tmp_path)
    assert result["status"] == "failed" and result["error"]["type"] == "ValueError"
    assert result["error"]["message"] == "'cuda': this machine has no CUDA device"
    saved = json.loads((tmp_path / RESULT_FILE).read_text())
    assert saved["status"] == "failed" and saved["provenance"]["device"].startswith("cpu")


def test_method_is_a_grid_axis(tmp_path):
    grid_file = tmp_path / "methods.yaml"
    grid_file.write_text(json.dumps({"name": "methods", **TINY, "train": {**TINY["train"], "epochs": 1},
                                     "grid": {"method": ["simclr", "supervised"]}}))
    planned = plan_grid(load_grid(grid_file))
    assert [run.spec.method.name for run in planned] == ["simclr", "supervised"]
    assert planned[0].run_id != planned[1].run_id
    results = {run.spec.method.name: run_and_store(run.spec, "methods", run.run_id, tmp_path / run.run_id, run.axes) for run in planned}
    assert all(result["status"] == "completed" for result in results.values())
    assert results["supervised"]["axes"] == {"method": "supervised"}
    assert 0 <= results["supervised"]["metrics"]["supervised_top1"] <= results["supervised"]["metrics"]["supervised_top5"] <= 100
    assert "supervised_top1" not in results["simclr"]["metrics"]
    # The supervised baseline sees one view per image, SimCLR two: images/s counts images, not views.
    assert results["supervised"]["metrics"]["achieved_tflops"] == pytest.approx(
        3 * results["supervised"]["metrics"]["images_per_second"] * results["supervised"]["metrics"]["encoder_gflops_per_view"] / 1e3)


def write_tiny_cifar10(root: Path, per_batch: int = 16, test_count: int = 30) -> Path:
    """A cifar-10-batches-py folder in the real pickle format (5 training batches, a test batch, meta)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    generator = np.random.default_rng(0)

    def batch(count: int, name: str) -> dict:
        return {"batch_label": name, "labels": [int(v) for v in generator.integers(0, 10, count)],
                "data": generator.integers(0, 256, (count, 3072), dtype=np.uint8), "filenames": [f"{i}.png" for i in range(count)]}

    for index in range(1, 6):
        (folder / f"data_batch_{index}").write_bytes(pickle.dumps(batch(per_batch, f"training batch {index} of 5"), protocol=2))
    (folder / "test_batch").write_bytes(pickle.dumps(batch(test_count, "testing batch 1 of 1"), protocol=2))
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": names, "num_cases_per_batch": per_batch}, protocol=2))
    return root


@pytest.mark.parametrize("grid", ["pairwise", "color", "batch-size", "model-size"])
def test_shipped_cifar_grids_plan_with_command_line_overrides(tmp_path, grid):
    overrides = ["train.epochs=1", "train.warmup_epochs=0", "dataset.train_size=40", f"dataset.root={tmp_path}"]
    planned = plan_grid(load_grid(REPO / "grids" / f"{grid}.yaml", overrides))
    expected = {"pairwise": 49, "color": 12, "batch-size": 4, "model-size": 9}[grid]  # --set train.epochs replaces that axis
    assert len(planned) == expected
    for run in planned:
        assert run.spec.dataset.name == "cifar10" and run.spec.dataset.root == str(tmp_path)
        assert run.spec.train.epochs == 1 and run.spec.dataset.train_size == 40
        assert run.spec.model.stem == "cifar" and run.spec.train.optimizer == "lars"
        assert run.spec.method.name == "supervised" or run.spec.method.temperature == 0.5


def test_pairwise_grid_is_figure_5(tmp_path):
    grid = load_grid(REPO / "grids" / "pairwise.yaml")
    assert grid.grid["pair"] == ["crop", "cutout", "color", "sobel", "noise", "blur", "rotate"]
    assert grid.augment.protocol == "one_branch" and grid.model.arch == "resnet18"
    planned = plan_grid(grid)
    assert sorted(tuple(run.spec.augment.ops) for run in planned)[:3] == [("blur",), ("blur", "color"), ("blur", "crop")]


@pytest.mark.slow
def test_pairwise_grid_runs_on_a_tiny_cifar_file_from_the_command_line(tmp_path):
    root = write_tiny_cifar10(tmp_path / "data")
    command = [sys.executable, "-m", "ablate", "run", str(REPO / "grids" / "pairwise.yaml"), "--quiet",
               "--results-dir", str(tmp_path / "results"),
               "--set", "train.epochs=1", "--set", "train.warmup_epochs=0", "--set", "train.batch_size=16",
               "--set", "dataset.train_size=32", "--set", f"dataset.root={root}",
               "--set", "model.arch=small_cnn", "--set", "grid.pair=[crop, color]", "--set", "eval.linear_epochs=2"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env={**os.environ, "ABLATE_DEVICE": "cpu", "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 runs: 4 completed now, 0 already done, 0 failed" in done.stdout
    results = [json.loads(path.read_text()) for path in (tmp_path / "results" / "pairwise").glob("*/result.json")]
    assert sorted(tuple(r["spec"]["augment"]["ops"]) for r in results) == [("color",), ("color", "crop"), ("crop",), ("crop", "color")]
    for result in results:
        assert result["spec"]["dataset"]["name"] == "cifar10" and result["metrics"]["labelled_examples"] == 32
        assert result["timings"]["train"] > 0 and len(result["curves"]["epoch_loss"]) == 1


def test_evaluations_that_need_images_in_memory_are_refused_on_a_streamed_run_before_training(tmp_path):
    from types import SimpleNamespace

    from ablate.data.stream import ImageFiles
    from ablate.run import check_streamed_evaluations

    files = ImageFiles(tmp_path, ("a/1.jpg",), torch.zeros(1, dtype=torch.long), 32)
    streamed, in_memory = SimpleNamespace(train=files), SimpleNamespace(train=object())
    spec = RunSpec(dataset={"name": "folder", "stream": True}, eval={"finetune": {"fractions": [0.1]}, "linear": "paper"})
    with pytest.raises(ValueError) as refused:
        check_streamed_evaluations(spec, streamed)  # type: ignore[arg-type]
    assert str(refused.value) == (
        "eval.linear: paper, eval.finetune read the training images from memory, and this run streams 'folder' "
        "(dataset.stream: True): set dataset.stream: false where the set fits in memory, or leave them out of this grid")
    check_streamed_evaluations(spec, in_memory)  # type: ignore[arg-type]  # in memory: all allowed
    check_streamed_evaluations(RunSpec(dataset={"name": "folder", "stream": True}), streamed)  # type: ignore[arg-type]
