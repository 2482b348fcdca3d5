"""Table 3's transformation probes: each probe's labels are what was applied, its chance level is the
majority share counted here, a probe reads a label that the features hold to 100 % and stays at chance on
features that hold nothing, and the frozen network is left bit-identical."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ablate.augment.noise import Noise
from ablate.augment.sobel import Sobel
from ablate.config import AugmentSpec, RunSpec
from ablate.config.specs import TRANSFORM_PROBES
from ablate.data import DatasetSplits, ImageData
from ablate.evaluate.probes import (
    PAPER_TABLE3,
    PROBE_CLASSES,
    balanced_labels,
    majority_share,
    probe_seed,
    transform_for_probe,
    transform_probe_metrics,
)
from ablate.methods.train import device_settings
from ablate.run import build_trainable, evaluate

CPU = torch.device("cpu")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def colourful(n: int, seed: int, size: int = 8) -> torch.Tensor:
    """Random float images in [0, 1] whose channels differ (so a grayscale one is told apart exactly)."""
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_rotation_labels_are_the_quarter_turns_applied_and_exactly_balanced():
    images = colourful(40, seed=1)
    views, labels = transform_for_probe("rotation", images, generator())
    assert [int((labels == quarters).sum()) for quarters in range(4)] == [10, 10, 10, 10]
    for image, view, quarters in zip(images, views, labels.tolist()):
        expected = image
        for _ in range(quarters):  # one counter-clockwise quarter turn at a time: row i of the turn is column W-1-i
            expected = expected.transpose(1, 2).flip(1)
        assert torch.equal(view, expected)


@pytest.mark.parametrize("probe", ["noise", "sobel"])
def test_binary_probes_transform_exactly_the_images_labelled_1_and_split_evenly(probe):
    images = 0.3 + 0.4 * colourful(31, seed=2)  # mid-grey: noise of std 0.1 is almost never clipped
    views, labels = transform_for_probe(probe, images, generator(3))
    assert int(labels.sum()) == 15 and int((labels == 0).sum()) == 16  # 31 = 16 + 15: the remainder to class 0
    kept = labels == 0
    assert torch.equal(views[kept], images[kept])  # originals untouched, bit for bit
    changed = views[~kept]
    if probe == "sobel":
        assert torch.allclose(changed, Sobel()(images[~kept]), atol=1e-6)
        assert torch.equal(changed[:, 0], changed[:, 1]) and torch.equal(changed[:, 1], changed[:, 2])  # an edge map
    else:
        difference = changed - images[~kept]  # 15 × 192 draws of N(0, 0.1²): std within 5 %, mean within 0.01
        assert difference.std().item() == pytest.approx(Noise().std, rel=0.05)
        assert difference.mean().abs().item() < 0.01


def test_colour_labels_say_which_images_were_turned_to_grayscale_at_the_runs_probability():
    images = colourful(2000, seed=4)
    views, labels = transform_for_probe("color", images, generator(5), AugmentSpec())
    gray = (views[:, 0] == views[:, 1]).all(dim=(1, 2)) & (views[:, 1] == views[:, 2]).all(dim=(1, 2))
    assert torch.equal(gray.long(), labels)
    assert abs(int(labels.sum()) - 400) < 72  # p = 0.2 of 2000: 400, binomial std 17.9, 4 std
    _, none = transform_for_probe("color", images[:50], generator(5), AugmentSpec(grayscale_p=0.0))
    assert int(none.sum()) == 0  # the run's grayscale probability decides the balance


def test_the_same_seed_gives_the_same_probe_set_and_seeds_differ_by_probe_and_split():
    images = colourful(16, seed=6)
    first, labels_first = transform_for_probe("noise", images, generator(7))
    second, labels_second = transform_for_probe("noise", images, generator(7))
    assert torch.equal(first, second) and torch.equal(labels_first, labels_second)
    seeds = {probe_seed(0, probe, split) for probe in PROBE_CLASSES for split in ("train", "test")}
    assert len(seeds) == 8 and probe_seed(0, "noise", "train") == probe_seed(0, "noise", "train") != probe_seed(1, "noise", "train")


def test_majority_share_and_balanced_labels_against_counts():
    assert majority_share(torch.tensor([0, 0, 0, 1, 1]), 2) == pytest.approx(60.0)
    assert majority_share(torch.tensor([3, 3, 1, 0]), 4) == pytest.approx(50.0)
    labels = balanced_labels(10, 4, generator(), CPU)
    assert sorted(labels.tolist()) == [0, 0, 0, 1, 1, 1, 2, 2, 3, 3]


def test_the_probes_are_exactly_the_names_a_grid_file_may_use():
    assert tuple(PROBE_CLASSES) == TRANSFORM_PROBES


def test_unknown_probe_is_refused_by_name():
    with pytest.raises(ValueError, match="unknown transformation probe 'blur'"):
        transform_for_probe("blur", colourful(2, seed=0), generator())


class MarkerReader(nn.Module):
    """A stand-in method: h = the image's pixels (they hold a rotation of the marked image perfectly),
    z = random numbers that ignore the image (they hold nothing)."""

    def __init__(self):
        super().__init__()
        self.encoder = nn.Flatten()
        self.noise = torch.Generator().manual_seed(11)

    def embedding(self, features: torch.Tensor) -> torch.Tensor:
        return torch.randn(features.shape[0], 16, generator=self.noise)


def marked_splits(train: int, test: int) -> DatasetSplits:
    """Dark noisy 8 px images, each with one bright pixel in the top-left corner: its corner after a
    rotation names the rotation."""
    images = (torch.rand(train + test, 3, 8, 8, generator=generator(12)) * 4).to(torch.uint8)
    images[:, :, 0, 0] = 255
    labels = torch.zeros(train + test, dtype=torch.long)
    first = ImageData(images[:train], labels[:train])
    return DatasetSplits(pretrain=first, train=first, test=ImageData(images[train:], labels[train:]), classes=["x"])


def test_a_probe_reads_a_label_the_features_hold_to_100_percent_and_random_features_at_chance():
    spec = RunSpec.model_validate({"eval": {"transform_probes": ["rotation"], "linear_epochs": 100, "linear_batch_size": 64}})
    metrics = transform_probe_metrics(MarkerReader(), marked_splits(400, 402), spec, device_settings(spec, CPU))
    assert metrics["transform_probe_rotation_h"] == 100.0
    assert metrics["transform_probe_rotation_chance"] == pytest.approx(100 * 101 / 402)  # 402 = 101 + 101 + 100 + 100
    # Random features: 25 % in expectation; 9 points is 4 binomial std at n = 402.
    assert abs(metrics["transform_probe_rotation_z"] - 25.0) < 9.0
    assert set(metrics) == {f"transform_probe_rotation_{part}" for part in ("h", "z", "chance")}


def test_no_probe_asked_gives_no_metric():
    spec = RunSpec()
    assert transform_probe_metrics(MarkerReader(), marked_splits(8, 8), spec, device_settings(spec, CPU)) == {}


def test_every_probe_through_evaluate_leaves_the_method_bit_identical_and_names_its_metrics():
    spec = RunSpec.model_validate({
        "dataset": {"name": "shapes", "image_size": 16}, "model": {"arch": "small_cnn"},
        "eval": {"transform_probes": list(PROBE_CLASSES), "linear_epochs": 2, "knn_k": 5},
    })
    settings = device_settings(spec, CPU)
    model, _ = build_trainable(spec, 2, settings)
    with torch.no_grad():  # non-trivial batch-norm statistics, as after training
        model(torch.rand(32, 3, 16, 16) * 3)
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    images = (colourful(48, seed=13, size=16) * 255).to(torch.uint8)
    labels = torch.arange(48) % 2
    train = ImageData(images[:32], labels[:32])
    splits = DatasetSplits(pretrain=train, train=train, test=ImageData(images[32:], labels[32:]), classes=["a", "b"])
    metrics = evaluate(model, splits, spec, settings).metrics
    assert all(torch.equal(before[name], tensor) for name, tensor in model.state_dict().items())
    assert model.training
    for probe in PROBE_CLASSES:
        assert 0 <= metrics[f"transform_probe_{probe}_h"] <= 100 and 0 <= metrics[f"transform_probe_{probe}_z"] <= 100
    assert metrics["transform_probe_rotation_chance"] == 25.0  # 16 test images, 4 of each
    assert metrics["transform_probe_noise_chance"] == metrics["transform_probe_sobel_chance"] == 50.0
    assert metrics["transform_probe_color_chance"] >= 50.0
    assert set(PAPER_TABLE3) == set(PROBE_CLASSES)
