"""Transfer (Table 8, B.8): targets written by the test (an image folder, a CIFAR-100 file) evaluated after
pre-training, their metrics read back from result.json; a target equal to the pre-training set gives
exactly the run's own linear and fine-tuning numbers; a missing target fails the run with its message."""

from __future__ import annotations

import pickle
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from pydantic import ValidationError
import torch
from PIL import Image

from ablate.config import RunSpec
from ablate.config.specs import TransferTarget
from ablate.evaluate import transfer as transfer_module
from ablate.evaluate.finetune import FinetuneResult
from ablate.evaluate.transfer import finetune_transfer, load_target
from ablate.run import run_and_store
from ablate.store import read_result

PRETRAIN_DATA = {"name": "shapes", "train_size": 96, "test_size": 40, "image_size": 16}
TINY = {
    "dataset": PRETRAIN_DATA,
    "model": {"arch": "small_cnn"},
    "train": {"epochs": 2, "batch_size": 16, "lr": 1.0, "warmup_epochs": 0.5},
    "augment": {"protocol": "one_branch", "ops": ["crop", "color"], "base_crop_scale": [0.5, 1.0]},
    "eval": {"linear_epochs": 20, "knn_k": 10,
             "finetune": {"fractions": [1.0], "epochs": [2], "batch_size": 32, "lr": 0.5, "scratch": False}},
    "seed": 1,
}
COLOURS = {"red": (220, 30, 30), "green": (30, 220, 30), "blue": (30, 30, 220)}
FOLDER_SIDE = 24  # decoded at 24 px, seen by the encoder at the pre-training 16 px

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(autouse=True)
def on_cpu(monkeypatch, tmp_path):
    monkeypatch.setenv("ABLATE_DEVICE", "cpu")
    monkeypatch.setenv("ABLATE_CACHE", str(tmp_path / "cache"))


def write_colour_folder(root: Path, train_per_class: int = 12, test_per_class: int = 6) -> None:
    """root/{train,test}/<colour>/*.png: each image its class's colour plus pixel noise (std 20)."""
    generator = np.random.default_rng(0)
    for split, count in (("train", train_per_class), ("test", test_per_class)):
        for name, colour in COLOURS.items():
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                pixels = np.array(colour, dtype=np.float64) + 20 * generator.standard_normal((FOLDER_SIDE, FOLDER_SIDE, 3))
                Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(root / split / name / f"{i}.png")


def write_cifar100(root: Path, train_count: int = 30, test_count: int = 10) -> None:
    """The CIFAR-100 "python version" files: pickled dicts, data N×3072 (R, G, B planes), fine_labels."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    generator = np.random.default_rng(1)
    for name, count in (("train", train_count), ("test", test_count)):
        fine = [int(label) for label in generator.integers(0, 100, count)]
        data = generator.integers(0, 256, (count, 3072), dtype=np.uint8)
        with open(folder / name, "wb") as handle:
            pickle.dump({"data": data, "fine_labels": fine, "coarse_labels": [f // 5 for f in fine],
                         "filenames": [f"{i}.png" for i in range(count)], "batch_label": name}, handle, protocol=2)
    with open(folder / "meta", "wb") as handle:
        pickle.dump({"fine_label_names": [f"fine{i}" for i in range(100)],
                     "coarse_label_names": [f"coarse{i}" for i in range(20)]}, handle, protocol=2)


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """One tiny SimCLR run with three targets, through run_and_store; result.json read back from disk."""
    folder = tmp_path_factory.mktemp("targets")
    write_colour_folder(folder / "colours")
    write_cifar100(folder / "c100")
    targets = [
        {"label": "same", "dataset": PRETRAIN_DATA, "finetune": True},
        {"label": "colours", "dataset": {"name": "folder", "root": str(folder / "colours"), "image_size": FOLDER_SIDE},
         "finetune": True},
        {"label": "c100", "dataset": {"name": "cifar100", "root": str(folder / "c100")}},
    ]
    spec = RunSpec.model_validate({**TINY, "eval": {**TINY["eval"], "transfer": targets}})
    run_folder = folder / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ABLATE_DEVICE", "cpu")
        patch.setenv("ABLATE_CACHE", str(folder / "cache"))
        returned = run_and_store(spec, "transfer", "r", run_folder)
    assert returned["status"] == "completed", returned["error"]
    return read_result(run_folder)


def test_every_target_has_its_metrics_in_result_json(stored):
    metrics = stored["metrics"]
    transfer = sorted(name for name in metrics if name.startswith("transfer_"))
    assert transfer == sorted([
        "transfer_same_linear_top1", "transfer_same_linear_top5", "transfer_same_finetune_top1", "transfer_same_finetune_top5",
        "transfer_colours_linear_top1", "transfer_colours_linear_top5",
        "transfer_colours_finetune_top1", "transfer_colours_finetune_top5",
        "transfer_c100_linear_top1", "transfer_c100_linear_top5",  # linear only: finetune was not asked
    ])
    assert all(0.0 <= metrics[name] <= 100.0 for name in transfer)
    # 10 test images: every accuracy is a multiple of 10 %.
    hits = metrics["transfer_c100_linear_top1"] / 10
    assert hits == pytest.approx(round(hits))


def test_a_target_equal_to_the_pretraining_set_repeats_the_runs_own_numbers(stored):
    metrics = stored["metrics"]
    # Same images, all labels, same seed and settings: the same probe and the same fine-tuning, bit for bit.
    assert metrics["transfer_same_linear_top1"] == metrics["linear_top1"]
    assert metrics["transfer_same_linear_top5"] == metrics["linear_top5"]
    assert metrics["transfer_same_finetune_top1"] == metrics["finetune_100pct_top1"]
    assert metrics["transfer_same_finetune_top5"] == metrics["finetune_100pct_top5"]


def test_an_easy_folder_target_is_learned(stored):
    metrics = stored["metrics"]
    assert metrics["transfer_colours_linear_top1"] >= 90.0  # 3 colours, chance 33 %
    assert metrics["transfer_colours_linear_top5"] == 100.0  # 3 classes: the top 5 hold them all
    assert metrics["transfer_colours_finetune_top5"] == 100.0


def test_target_images_are_resized_to_the_pretraining_side(tmp_path):
    write_colour_folder(tmp_path / "colours", train_per_class=2, test_per_class=1)
    target = TransferTarget(label="c", dataset={"name": "folder", "root": str(tmp_path / "colours"), "image_size": FOLDER_SIDE})
    data = load_target(target, side=16)
    assert data.train.images.shape == (6, 3, 16, 16) and data.test.images.shape == (3, 3, 16, 16)
    assert data.classes == ["blue", "green", "red"] and data.test.labels.tolist() == [0, 1, 2]
    # A flat colour (plus noise of std 20) stays its colour on average after resizing.
    means = data.test.images.float().mean(dim=(2, 3))
    assert torch.allclose(means[2], torch.tensor([220.0, 30.0, 30.0]), atol=4)


def test_a_missing_target_fails_the_run_with_the_datasets_message(tmp_path, monkeypatch):
    missing = tmp_path / "nowhere"
    spec = RunSpec.model_validate({**TINY, "eval": {"linear_epochs": 2, "knn_k": 10, "transfer": [
        {"label": "gone", "dataset": {"name": "cifar100", "root": str(missing)}}]}})
    import ablate.run

    trained = []
    monkeypatch.setattr(ablate.run, "train", lambda *args, **kwargs: trained.append(1))
    result = run_and_store(spec, "transfer", "missing", tmp_path / "run")
    assert result["status"] == "failed" and trained == []  # refused before pre-training
    assert result["error"]["type"] == "DatasetUnavailable"
    assert result["error"]["message"].startswith("CIFAR-100 not found") and str(missing) in result["error"]["message"]
    assert read_result(tmp_path / "run")["status"] == "failed"


def test_repeated_labels_are_refused_when_the_grid_is_read():
    with pytest.raises(ValidationError, match="transfer targets' labels must differ .they name the metrics.; repeated: a"):
        RunSpec.model_validate({"eval": {"transfer": [{"label": "a", "dataset": {"name": "shapes"}},
                                                      {"label": "a", "dataset": {"name": "folder"}}]}})


@pytest.mark.parametrize("target_epochs, recipe, expected", [
    (7, {"fractions": [1.0], "epochs": [2]}, 7),  # the target's own
    (None, {"fractions": [0.1, 1.0], "epochs": [5, 2]}, 2),  # eval.finetune's for 100 %
    (None, {}, 30),  # the paper's (B.5's 10 % value, ablate's choice for 100 %)
])
def test_fine_tuning_epochs_of_a_target(monkeypatch, target_epochs, recipe, expected):
    asked = []

    def record(encoder, feature_dim, train, test, num_classes, spec, epochs, crop, settings, seed):
        asked.append(epochs)
        return FinetuneResult(1.0, 2.0, len(train), 1)

    monkeypatch.setattr(transfer_module, "fine_tune", record)
    spec = RunSpec.model_validate({"eval": {"finetune": recipe}})
    target = TransferTarget(label="t", dataset={"name": "shapes"}, finetune=True, finetune_epochs=target_epochs)
    model = SimpleNamespace(encoder=SimpleNamespace(feature_dim=8))  # only what finetune_transfer reads
    data = SimpleNamespace(train=[0, 1], test=[0], classes=["a", "b"])
    assert finetune_transfer(model, data, target, spec, None) == (1.0, 2.0) and asked == [expected]
