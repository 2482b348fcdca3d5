"""Fine-tuning with few labels (Table 7, B.5): the copy changes and the original does not, the subset is
class-balanced and fixed by the seed alone, the paper's optimiser and epochs, the metric names, and a
fine-tuned network that learns an easy task."""

from __future__ import annotations

import pytest
import torch

from ablate.augment.crop import Crop
from ablate.config import ModelSpec, RunSpec
from ablate.config.specs import FinetuneSpec
from ablate.data import DatasetSplits, ImageData
from ablate.evaluate import finetune as finetune_module
from ablate.evaluate.finetune import epochs_for, epochs_per_fraction, fine_tune, finetune_metrics, fraction_label
from ablate.methods.train import DeviceSettings
from ablate.models import build_encoder
from ablate.run import build_method

CPU = DeviceSettings(torch.device("cpu"), autocast_bf16=False, channels_last=True)
SIDE = 16
COLOURS = torch.tensor([[220, 30, 30], [30, 220, 30], [30, 30, 220], [220, 220, 30]], dtype=torch.float32)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def colour_set(per_class: int, seed: int) -> ImageData:
    """An easy 4-class set: each image is its class's colour plus pixel noise (std 25 of 255)."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(4).repeat_interleave(per_class)
    base = COLOURS[labels].view(-1, 3, 1, 1).expand(-1, 3, SIDE, SIDE)
    noisy = base + 25 * torch.randn(base.shape, generator=generator)
    return ImageData(noisy.clamp(0, 255).to(torch.uint8), labels)


def numbered_set(classes: int, per_class: int) -> ImageData:
    """Image i is flat with value i, so a subset is recognised from its pixels; labels cycle through the classes."""
    n = classes * per_class
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 3, SIDE, SIDE).contiguous()
    return ImageData(images, torch.arange(n) % classes)


def small_encoder(seed: int = 0):
    torch.manual_seed(seed)
    return build_encoder(ModelSpec(arch="small_cnn"), SIDE)


class OptimizerSpy:
    """Wraps finetune_optimizer and keeps every optimiser it made (their parameters are the trained copy's)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        self.made: list[torch.optim.Optimizer] = []
        real = finetune_module.finetune_optimizer

        def spy(*args, **kwargs):
            optimizer = real(*args, **kwargs)
            self.made.append(optimizer)
            return optimizer

        monkeypatch.setattr(finetune_module, "finetune_optimizer", spy)


def tune(encoder, train: ImageData, test: ImageData, spec: FinetuneSpec, epochs: int, seed: int = 0):
    return fine_tune(encoder, encoder.feature_dim, train, test, 4, spec, epochs, Crop(), CPU, seed)


# ------------------------------------------------------------------------------------------ names and epochs


@pytest.mark.parametrize("fraction, label", [(0.01, "1pct"), (0.1, "10pct"), (1.0, "100pct"), (0.005, "0p5pct"),
                                             (0.25, "25pct"), (0.125, "12p5pct")])
def test_fraction_label(fraction, label):
    assert fraction_label(fraction) == label


def test_epochs_default_to_the_papers_60_and_30():
    assert epochs_per_fraction(FinetuneSpec(fractions=[0.01, 0.1, 1.0])) == [60, 30, 30]
    assert epochs_per_fraction(FinetuneSpec(fractions=[0.005, 0.02])) == [60, 30]
    own = FinetuneSpec(fractions=[0.01, 0.1], epochs=[7, 3])
    assert epochs_per_fraction(own) == [7, 3]
    assert epochs_for(own, 0.1) == 3 and epochs_for(own, 1.0) == 30  # a fraction it does not list: the paper's


def test_spec_refuses_mismatched_epochs_and_bad_fractions():
    with pytest.raises(ValueError, match="one epoch count per fraction"):
        FinetuneSpec(fractions=[0.01, 0.1], epochs=[5])
    with pytest.raises(ValueError, match=r"inside \(0, 1\]"):
        FinetuneSpec(fractions=[0.0, 0.5])
    with pytest.raises(ValueError, match="once"):
        FinetuneSpec(fractions=[0.1, 0.1])


# ---------------------------------------------------------------------------------- optimiser and weights


def test_nesterov_sgd_without_weight_decay_trains_a_copy_and_leaves_the_encoder(monkeypatch):
    spy = OptimizerSpy(monkeypatch)
    encoder = small_encoder()
    encoder.train(False)  # a frozen-evaluation state; fine-tuning must not change it either
    before = {name: value.clone() for name, value in encoder.state_dict().items()}
    train, test = colour_set(6, seed=1), colour_set(2, seed=2)  # 24 training images
    spec = FinetuneSpec(lr=0.4, batch_size=16)
    tune(encoder, train, test, spec, epochs=2)

    (optimizer,) = spy.made
    assert isinstance(optimizer, torch.optim.SGD) and len(optimizer.param_groups) == 1
    group = optimizer.param_groups[0]
    assert group["nesterov"] is True and group["momentum"] == 0.9 and group["weight_decay"] == 0.0
    assert group["initial_lr"] == pytest.approx(0.4 * 16 / 256)  # lr per 256 images × the batch
    tuned = group["params"]
    # Every parameter of the encoder copy and the head is trained: feature_dim → 4 head (weight, bias) at the end.
    assert len(tuned) == len(list(encoder.parameters())) + 2 and tuned[-2].shape == (4, encoder.feature_dim)
    copies = tuned[: len(tuned) - 2]
    assert all(copy.data_ptr() != original.data_ptr() for copy, original in zip(copies, encoder.parameters()))
    moved = [not torch.equal(copy, original) for copy, original in zip(copies, encoder.parameters())]
    assert all(moved)  # fine-tuning moves every encoder tensor (a linear probe would move none)
    after = encoder.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert encoder.training is False


def test_batches_cover_every_image_once_per_epoch_and_the_lr_decays_to_zero(monkeypatch):
    spy = OptimizerSpy(monkeypatch)
    train, test = colour_set(5, seed=1), colour_set(1, seed=2)  # 20 images, batch 8 → 3 batches of 7, 7, 6
    result = tune(small_encoder(), train, test, FinetuneSpec(batch_size=8), epochs=3)
    assert result.steps == 9 and result.train_examples == 20
    assert spy.made[0].param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)  # cosine to zero, no warm-up


def test_fine_tuning_learns_an_easy_task_far_above_chance():
    train, test = colour_set(40, seed=1), colour_set(25, seed=2)
    result = tune(small_encoder(), train, test, FinetuneSpec(lr=2.0, batch_size=32), epochs=4)
    assert result.top1 >= 90.0  # chance is 25 %
    assert result.top5 == 100.0  # 4 classes: the top 5 hold them all


# ---------------------------------------------------------------------------------------- the label subset


def method_and_data(spec: RunSpec):
    data = numbered_set(classes=10, per_class=20)
    splits = DatasetSplits(pretrain=data, train=data, test=numbered_set(classes=10, per_class=1), classes=[str(i) for i in range(10)])
    torch.manual_seed(0)
    return build_method(spec, 10, CPU), splits


def seen_subsets(monkeypatch, spec: RunSpec) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """What fine_tune was asked to train on, per call: (image numbers, labels, epochs)."""
    calls = []

    def record(encoder, feature_dim, train, test, num_classes, recipe, epochs, crop, settings, seed):
        calls.append((train.images[:, 0, 0, 0].long(), train.labels, epochs))
        return finetune_module.FinetuneResult(50.0, 90.0, len(train), 1)

    monkeypatch.setattr(finetune_module, "fine_tune", record)
    model, data = method_and_data(spec)
    finetune_metrics(model, data, spec, CPU)
    return calls


BASE = {"dataset": {"image_size": SIDE}, "eval": {"finetune": {"fractions": [0.1]}}, "seed": 3}


def test_the_subset_is_class_balanced_and_depends_on_the_seed_only(monkeypatch):
    first = seen_subsets(monkeypatch, RunSpec.model_validate(BASE))
    assert len(first) == 2  # fine-tuned, then from scratch: both on the same images
    numbers, labels, epochs = first[0]
    assert torch.equal(numbers, first[1][0]) and epochs == 30
    counts = [int((labels == c).sum()) for c in range(10)]
    assert counts == [2] * 10  # 10 % of 20 per class
    assert torch.equal(labels, numbers % 10)  # the labels are those of the chosen images
    other_settings = {
        "dataset": {"image_size": SIDE}, "model": {"width": 2}, "train": {"lr": 0.1, "epochs": 3},
        "augment": {"crop_scale": [0.5, 1.0], "flip_p": 0.0},
        "eval": {"label_fraction": 0.5, "linear_epochs": 3,
                 "finetune": {"fractions": [0.1], "epochs": [2], "lr": 1.0, "batch_size": 8, "scratch": False}},
        "seed": 3,
    }
    again = seen_subsets(monkeypatch, RunSpec.model_validate(other_settings))
    assert len(again) == 1 and torch.equal(again[0][0], numbers) and again[0][2] == 2
    another_seed = seen_subsets(monkeypatch, RunSpec.model_validate({**BASE, "seed": 4}))
    assert not torch.equal(another_seed[0][0], numbers)
    assert [int((another_seed[0][1] == c).sum()) for c in range(10)] == [2] * 10


# ------------------------------------------------------------------------------------------ the metrics


def test_metric_names_per_fraction_and_the_global_random_state_is_left_alone():
    spec = RunSpec.model_validate({"dataset": {"image_size": SIDE},
                                   "eval": {"finetune": {"fractions": [0.1, 1.0], "epochs": [1, 1], "batch_size": 64}}})
    model, data = method_and_data(spec)
    encoder_before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    rng_before = torch.get_rng_state()
    metrics = finetune_metrics(model, data, spec, CPU)
    assert sorted(metrics) == sorted(f"{start}_{p}_{k}" for start in ("finetune", "scratch") for p in ("10pct", "100pct")
                                     for k in ("top1", "top5"))
    assert all(0.0 <= value <= 100.0 for value in metrics.values())
    assert torch.equal(torch.get_rng_state(), rng_before)  # the evaluations after it draw what they would without it
    assert all(torch.equal(v, encoder_before[k]) for k, v in model.encoder.state_dict().items())
    no_scratch = spec.model_copy(update={"eval": spec.eval.model_copy(update={"finetune": FinetuneSpec(fractions=[1.0], epochs=[1], scratch=False)})})
    assert sorted(finetune_metrics(model, data, no_scratch, CPU)) == ["finetune_100pct_top1", "finetune_100pct_top5"]
    assert finetune_metrics(model, data, RunSpec.model_validate({"dataset": {"image_size": SIDE}}), CPU) == {}
