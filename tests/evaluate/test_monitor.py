"""The online kNN monitor and the per-epoch curves: training is bit-identical with the monitor on or off,
the kNN value is the reference vote on the fixed subset, ABLATE_MONITOR_EVERY's cadence and auto rule,
the lr curve against the schedule's formula, and curves that survive a resume."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ablate.config import RunSpec
from ablate.data import DatasetSplits, ImageData, load_dataset
from ablate.evaluate.monitor import KnnMonitor, auto_interval, build_monitor, draw_subset, measuring_epochs
from ablate.methods.train import InterruptedForTest, device_settings, train
from ablate.run import build_trainable, epoch_hook, execute_run, seed_everything
from ablate.schema import parse_result
from ablate.settings import SettingsError, load_settings

CPU = torch.device("cpu")
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_spec(epochs: int = 2) -> RunSpec:
    """128 shapes images of 16 px, batch 16: 8 steps an epoch; 40 test images."""
    return RunSpec.model_validate({
        "dataset": {"name": "shapes", "train_size": 128, "test_size": 40, "image_size": 16},
        "model": {"arch": "small_cnn"},
        "train": {"epochs": epochs, "batch_size": 16, "lr": 1.0, "warmup_epochs": 0.5},
        "augment": {"protocol": "both_branches", "ops": ["crop", "color"]},
        "eval": {"knn_k": 10, "linear_epochs": 2},
        "seed": 3,
    })


def train_tiny(spec: RunSpec, monitor_every: int | None):
    """The model and outcome of a fresh tiny training, with the monitor measuring every `monitor_every` epochs (None: no hook)."""
    seed_everything(spec.seed)
    settings = device_settings(spec, CPU)
    data = load_dataset(spec.dataset)
    model, step = build_trainable(spec, len(data.classes), settings)
    monitor = None if monitor_every is None else build_monitor(spec, data, 128, 2, monitor_every, CPU)
    outcome = train(model, step, data.pretrain, spec, settings, epoch_end=epoch_hook(monitor, None))
    return model, outcome


def test_training_is_bit_identical_with_the_monitor_on():
    """Same weights (batch-norm running statistics included) and the same epoch losses, to the bit."""
    spec = tiny_spec()
    plain_model, plain = train_tiny(spec, None)
    rng_after_plain = torch.get_rng_state()
    monitored_model, monitored = train_tiny(spec, 1)
    assert [values["epoch"] for values in monitored.measured] == [1, 2]  # it did measure, after each epoch
    assert monitored.epoch_losses == plain.epoch_losses
    assert monitored.epoch_lrs == plain.epoch_lrs
    plain_state, monitored_state = plain_model.state_dict(), monitored_model.state_dict()
    assert plain_state.keys() == monitored_state.keys()
    assert any("running_mean" in name for name in plain_state)  # the encoder has batch norm to disturb
    assert [name for name in plain_state if not torch.equal(plain_state[name], monitored_state[name])] == []
    assert torch.equal(torch.get_rng_state(), rng_after_plain)  # the global generator drew the same
    assert monitored_model.training  # back in training mode after each measurement


class LinearEncoder(nn.Module):
    """h = W · flatten(x) + b with batch norm after it, so that eval mode matters."""

    def __init__(self, pixels: int, dim: int):
        super().__init__()
        self.linear = nn.Linear(pixels, dim)
        self.norm = nn.BatchNorm1d(dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.norm(self.linear(images.flatten(1)))


def reference_knn_top1(encoder: LinearEncoder, bank, bank_labels, queries, query_labels, k, temperature, classes) -> float:
    """Weighted kNN vote written out in float64 with loops: eval-mode batch norm uses the running statistics."""
    weight = encoder.linear.weight.detach().double()
    bias = encoder.linear.bias.detach().double()
    norm = encoder.norm
    scale = norm.weight.detach().double() / torch.sqrt(norm.running_var.double() + norm.eps)

    def embed(images):
        h = (images.double() / 255).flatten(1) @ weight.T + bias
        h = (h - norm.running_mean.double()) * scale + norm.bias.detach().double()
        return [row / math.sqrt(float((row * row).sum())) for row in h]

    bank_h, query_h = embed(bank), embed(queries)
    correct = 0
    for query, label in zip(query_h, query_labels.tolist()):
        similarities = sorted(((float((query * item).sum()), index) for index, item in enumerate(bank_h)), reverse=True)
        votes = [0.0] * classes
        for similarity, index in similarities[:k]:
            votes[int(bank_labels[index])] += math.exp(similarity / temperature)
        correct += int(max(range(classes), key=votes.__getitem__) == label)
    return 100.0 * correct / len(query_h)


def test_the_measurement_is_the_weighted_knn_vote_on_the_subset():
    torch.manual_seed(4)  # weights for which train-mode batch norm (batch statistics) would give another accuracy
    images = torch.randint(0, 256, (60, 3, 4, 4), dtype=torch.uint8)
    labels = torch.arange(60) % 3
    data = DatasetSplits(pretrain=ImageData(images[:40], labels[:40]), train=ImageData(images[:40], labels[:40]),
                         test=ImageData(images[40:], labels[40:]), classes=["a", "b", "c"])
    encoder = LinearEncoder(48, 8)
    with torch.no_grad():  # running statistics that differ from a batch's, so train-mode batch norm would give other features
        encoder.norm.running_mean.uniform_(-0.5, 0.5)
        encoder.norm.running_var.uniform_(0.5, 2.0)
    subset = draw_subset(data, seed=7, bank_size=25, query_size=12)
    monitor = KnnMonitor(subset, every=1, num_classes=3, k=5, temperature=0.1, device=CPU)
    encoder.train()
    before = {name: tensor.clone() for name, tensor in encoder.state_dict().items()}
    value = monitor.measure(encoder)
    expected = reference_knn_top1(encoder, subset.bank_images, subset.bank_labels, subset.query_images, subset.query_labels,
                                  5, 0.1, 3)
    assert value == pytest.approx(expected, abs=1e-9) and value == pytest.approx(100 * 2 / 12)
    assert encoder.training and all(torch.equal(before[name], tensor) for name, tensor in encoder.state_dict().items())


def test_the_subset_is_fixed_by_the_dataset_seed_alone():
    data = load_dataset(tiny_spec().dataset)
    torch.manual_seed(1)
    first = draw_subset(data, seed=0, bank_size=100, query_size=30)
    rng = torch.get_rng_state()
    torch.manual_seed(2)
    again = draw_subset(data, seed=0, bank_size=100, query_size=30)
    other = draw_subset(data, seed=1, bank_size=100, query_size=30)
    assert torch.equal(first.bank_images, again.bank_images) and torch.equal(first.query_labels, again.query_labels)
    assert not torch.equal(first.bank_images, other.bank_images)
    torch.manual_seed(1)
    assert torch.equal(torch.get_rng_state(), rng)  # drawing it took nothing from the global generator
    # Distinct training images with their own labels; test images with theirs.
    train_rows = {bytes(image.numpy()): int(label) for image, label in zip(data.train.images, data.train.labels)}
    assert len({bytes(image.numpy()) for image in first.bank_images}) == 100
    assert [train_rows[bytes(image.numpy())] for image in first.bank_images] == first.bank_labels.tolist()
    test_rows = {bytes(image.numpy()): int(label) for image, label in zip(data.test.images, data.test.labels)}
    assert [test_rows[bytes(image.numpy())] for image in first.query_images] == first.query_labels.tolist()
    capped = draw_subset(data, seed=0)  # 1000 and 500 asked of 128 training and 40 test images: all of them
    assert (len(capped.bank_labels), len(capped.query_labels), capped.images) == (128, 40, 168)


@pytest.mark.parametrize("epochs, monitor_images, images_per_epoch, views, expected", [
    (10, 1500, 3072, 2, 2),      # the quickstart: 1500 / 18432 = 8.1 % at every epoch, 4.1 % every 2nd
    (100, 1500, 49920, 2, 10),   # CIFAR-10, 100 epochs: epochs // 10, 0.5 % of an epoch
    (10, 1500, 3072, 1, 4),      # supervised (one view): 16.3 % an epoch, 4.07 % every 4th
    (10, 15, 50, 2, 1),          # exactly 5 % of one epoch is allowed
    (10, 16, 50, 2, 2),          # just above 5 %
    (2, 168, 128, 2, 0),         # a tiny run: 22 % an epoch, even one measurement in two epochs is too much
    (5, 1500, 0, 2, 0),          # no full batch: nothing to weigh against
])
def test_auto_interval(epochs, monitor_images, images_per_epoch, views, expected):
    assert auto_interval(epochs, monitor_images, images_per_epoch, views) == expected


def test_measuring_epochs():
    assert measuring_epochs(10, 2) == [2, 4, 6, 8, 10]
    assert measuring_epochs(10, 3) == [3, 6, 9]
    assert measuring_epochs(10, 0) == [] and measuring_epochs(3, 5) == []


@pytest.mark.parametrize("value, expected", [("", None), ("auto", None), ("0", 0), ("1", 1), (" 12 ", 12)])
def test_monitor_every_setting(value, expected):
    assert load_settings({"ABLATE_MONITOR_EVERY": value}).monitor_every == expected


@pytest.mark.parametrize("value", ["-1", "1.5", "every", "2 epochs", "\u00b2"])
def test_a_bad_monitor_every_is_one_line(value):
    with pytest.raises(SettingsError) as raised:
        load_settings({"ABLATE_MONITOR_EVERY": value})
    assert str(raised.value) == f"ABLATE_MONITOR_EVERY is {value!r}; expected auto, 0 (off) or a whole number of epochs"


def reference_lr(step: int) -> float:
    """The tiny spec's schedule at optimiser step `step` (from 0): peak 1.0 × 16 / 256, 4 warm-up steps of 16, then cosine."""
    peak, warmup, total = 16 / 256, 4, 16
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * 0.5 * (1 + math.cos(math.pi * (step - warmup) / (total - warmup)))


def test_result_curves_hold_lr_and_monitor(monkeypatch, tmp_path):
    monkeypatch.setenv("ABLATE_MONITOR_EVERY", "1")
    result = execute_run(tiny_spec(), tmp_path, device=CPU)
    curves = result["curves"]
    assert curves["lr"] == pytest.approx([reference_lr(7), reference_lr(15)], rel=1e-12)  # each epoch's last step
    assert curves["monitor_epochs"] == [1, 2]
    for value in curves["monitor_knn_top1"]:  # a share of the 40 test images, in percent
        assert 0 <= value <= 100 and value * 40 / 100 == pytest.approx(round(value * 40 / 100))
    assert result["timings"]["monitor"] > 0
    parse_result({"run_id": "r", "status": "completed", **result})  # the schema types the new curves

    monkeypatch.setenv("ABLATE_MONITOR_EVERY", "auto")  # tiny: auto finds it too costly, so it stays off
    assert set(execute_run(tiny_spec(), None, device=CPU)["curves"]) == {"epoch_loss", "lr"}


def test_curves_survive_a_resume(monkeypatch, tmp_path):
    """Interrupted after epoch 1's measurement (mid epoch 2), then resumed: the same curves as straight through."""
    monkeypatch.setenv("ABLATE_MONITOR_EVERY", "1")
    spec = tiny_spec()
    straight = execute_run(spec, tmp_path / "straight", device=CPU)
    with pytest.raises(InterruptedForTest):
        execute_run(spec, tmp_path / "resumed", device=CPU, stop_after_steps=11)
    resumed = execute_run(spec, tmp_path / "resumed", device=CPU)
    assert resumed["resumed_from_epoch"] == pytest.approx(11 / 8)
    assert resumed["curves"] == straight["curves"]
