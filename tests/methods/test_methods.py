"""The method seam (`ablate.methods.base.Method` and the `METHODS` registry): the registry matches the spec
models, each method makes its own inputs and trains on its own split, `after_step` runs after every
optimiser step, a method's extra state survives a checkpoint, and the numbers are those of before the seam."""

from __future__ import annotations

import doctest
import importlib

import pytest
import torch

from ablate.augment import ViewMaker
from ablate.config import AugmentSpec, ModelSpec, RunSpec
from ablate.config.methods import METHOD_SPECS, SimCLRSpec, SupervisedSpec
from ablate.data import DatasetSplits, ImageData, load_dataset
from ablate.methods import METHODS, Method, MethodContext, ProbeFeatures, SimCLR, Supervised
from ablate.methods.train import CHECKPOINT_FILE, InterruptedForTest, device_settings, train
from ablate.models import build_encoder
from ablate.run import build_trainable, execute_run, seed_everything

CPU = torch.device("cpu")


def context(num_classes: int = 4, augment: AugmentSpec | None = None) -> MethodContext:
    model = ModelSpec(arch="small_cnn", proj_dim=8)
    return MethodContext(build_encoder(model, 16), ViewMaker(augment or AugmentSpec(ops=["crop", "color"])), model, num_classes)


def uint8_images(count: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (count, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def test_registry_has_the_spec_models_names_in_their_order():
    assert list(METHODS) == list(METHOD_SPECS)
    for name, method in METHODS.items():
        assert method.spec_class is METHOD_SPECS[name]


@pytest.mark.parametrize("name", list(METHOD_SPECS))
def test_each_method_takes_its_own_spec_and_refuses_another(name):
    method = METHODS[name](METHOD_SPECS[name](), context())
    assert isinstance(method, Method) and method.spec == METHOD_SPECS[name]()
    other = next(spec for other, spec in METHOD_SPECS.items() if other != name)
    with pytest.raises(TypeError, match=f"{METHODS[name].__name__} takes a {METHOD_SPECS[name].__name__}, got a {other.__name__}"):
        METHODS[name](other(), context())


def test_simclr_takes_its_temperature_from_its_spec():
    assert SimCLR(SimCLRSpec(temperature=0.07), context()).temperature == 0.07


@pytest.mark.parametrize("name", list(METHOD_SPECS))
def test_inputs_are_the_view_makers_views_one_per_view_of_an_image(name):
    made = context()
    method = METHODS[name](METHOD_SPECS[name](), made)
    draw = "single" if name == "supervised" else "pair"  # every self-supervised method compares two views
    images, labels = uint8_images(8), torch.arange(8) % 4
    inputs = method.make_inputs(images, labels, torch.Generator().manual_seed(5))
    expected = getattr(made.views, draw)(images, torch.Generator().manual_seed(5))
    expected = expected if isinstance(expected, tuple) else (expected,)
    assert len(inputs) == len(expected) == method.views_per_image
    assert all(torch.equal(a, b) for a, b in zip(inputs, expected, strict=True))


def test_each_method_trains_on_its_own_split():
    splits = DatasetSplits(pretrain=ImageData(uint8_images(6), torch.full((6,), -1)),
                           train=ImageData(uint8_images(4, seed=1), torch.arange(4)),
                           test=ImageData(uint8_images(2, seed=2), torch.arange(2)), classes=list("abcd"))
    for name, spec in METHOD_SPECS.items():
        expected = splits.train if name == "supervised" else splits.pretrain  # only the baseline reads labels
        assert METHODS[name](spec(), context()).pretraining_data(splits) is expected, name


def test_a_run_trains_on_the_methods_split(monkeypatch):
    """Unlabelled pre-training images (32) and labelled training images (64): batch 16 gives 2 or 4 steps an epoch."""
    images = uint8_images(96)
    splits = DatasetSplits(pretrain=ImageData(images[:32], torch.full((32,), -1)),
                           train=ImageData(images[32:], torch.arange(64) % 4),
                           test=ImageData(uint8_images(16, seed=3), torch.arange(16) % 4), classes=list("abcd"))
    monkeypatch.setattr("ablate.run.load_dataset", lambda spec: splits)
    steps = {}
    for name in METHOD_SPECS:
        spec = RunSpec.model_validate({"dataset": {"image_size": 16}, "method": name, "train": {"epochs": 1, "batch_size": 16},
                                       "eval": {"linear_epochs": 1, "knn_k": 5}})
        seen = []
        result = execute_run(spec, device=CPU, progress=seen.append)
        steps[name] = seen[-1]["steps_per_epoch"]
        assert ("supervised_top1" in result["metrics"]) == (name == "supervised")
    assert steps == {name: 4 if name == "supervised" else 2 for name in METHOD_SPECS}


def test_only_the_supervised_baseline_adds_metrics():
    supervised = Supervised(SupervisedSpec(), context())
    dim = supervised.encoder.feature_dim
    features = ProbeFeatures(torch.randn(6, dim), torch.arange(6) % 4, torch.randn(5, dim), torch.arange(5) % 4)
    for name, spec in METHOD_SPECS.items():
        if name != "supervised":
            assert METHODS[name](spec(), context()).extra_metrics(features) == {}, name
    metrics = supervised.extra_metrics(features)
    assert metrics == dict(zip(["supervised_top1", "supervised_top5"], supervised.classifier_accuracy(features.test, features.test_labels)))
    assert metrics["supervised_top5"] == 100.0  # four classes: every label is in the top 5


def test_a_method_without_extra_state_refuses_a_checkpoint_that_has_some():
    method = SimCLR(SimCLRSpec(), context())
    method.load_extra_state({})
    with pytest.raises(ValueError, match=r"SimCLR keeps no extra state, but the checkpoint has \['queue'\]"):
        method.load_extra_state({"queue": torch.zeros(2)})


# Known answers, computed by the code before the method seam (commit 90cab2e: `method: simclr` with
# `train.temperature: 0.2`): the first step's loss and the mean loss of a 2-step epoch. A change in
# the order parameters are created, in the random draws or in the losses changes them.
KNOWN_LOSSES = {
    "simclr": (3.50779390335083, 3.9011396169662476),
    "supervised": (2.3800976276397705, 2.353890061378479),
}


@pytest.mark.parametrize("name", list(KNOWN_LOSSES))
def test_losses_are_those_of_before_the_seam(name):
    method = {"name": name, "temperature": 0.2} if name == "simclr" else {"name": name}
    spec = RunSpec.model_validate({
        "dataset": {"name": "shapes", "image_size": 16}, "model": {"arch": "small_cnn", "proj_dim": 16}, "method": method,
        "train": {"epochs": 1, "batch_size": 16, "lr": 1.0, "warmup_epochs": 0.5},
        "augment": {"protocol": "both_branches", "ops": ["crop", "color"]}, "seed": 7,
    })
    images, labels = uint8_images(32), torch.arange(32) % 10
    seed_everything(spec.seed)
    settings = device_settings(spec, CPU)
    model, step = build_trainable(spec, 10, settings)
    first = step.loss(step.make_inputs(images[:16], labels[:16], torch.Generator().manual_seed(1)), labels[:16]).item()
    outcome = train(model, step, ImageData(images, labels), spec, settings)
    # Tolerances cover another CPU's kernels; a different initialisation or draw moves these by far more.
    assert first == pytest.approx(KNOWN_LOSSES[name][0], rel=1e-5)
    assert outcome.epoch_losses == pytest.approx([KNOWN_LOSSES[name][1]], rel=1e-5)


class EmaSimCLR(SimCLR):
    """SimCLR with state of its own, as a momentum method would have: an EMA of one weight, updated in
    `after_step` and kept in `extra_state` (not in the state_dict), and a record of the calls."""

    def __init__(self, spec, context):
        super().__init__(spec, context)
        self.calls: list[tuple[int, int]] = []
        self.seen_weights: list[torch.Tensor] = []
        self.ema = torch.zeros_like(self.head[-1].weight)

    def after_step(self, step: int, total_steps: int) -> None:
        self.calls.append((step, total_steps))
        weight = self.head[-1].weight.detach().clone()
        self.seen_weights.append(weight)
        self.ema = 0.9 * self.ema + 0.1 * weight

    def extra_state(self):
        return {"ema": self.ema.clone(), "calls": len(self.calls)}

    def load_extra_state(self, state):
        self.ema = state["ema"].clone()
        self.calls_before_resume = state["calls"]


def tiny_spec() -> RunSpec:
    """128 shapes images of 16 px, batch 16: 8 steps an epoch, 2 epochs."""
    return RunSpec.model_validate({
        "dataset": {"name": "shapes", "train_size": 128, "test_size": 40, "image_size": 16},
        "model": {"arch": "small_cnn", "proj_dim": 16},
        "train": {"epochs": 2, "batch_size": 16, "lr": 1.0, "warmup_epochs": 0.5},
        "augment": {"protocol": "both_branches", "ops": ["crop", "color"]},
        "seed": 3,
    })


def train_ema(monkeypatch, folder, stop_after_steps: int | None = None) -> EmaSimCLR:
    """Build through the registry (as a run does), with SimCLR's entry replaced by `EmaSimCLR`, and train."""
    monkeypatch.setitem(METHODS, "simclr", EmaSimCLR)
    spec = tiny_spec()
    seed_everything(spec.seed)
    settings = device_settings(spec, CPU)
    model, step = build_trainable(spec, 10, settings)
    assert isinstance(model, EmaSimCLR)
    model.initial_weight = model.head[-1].weight.detach().clone()
    train(model, step, model.pretraining_data(load_dataset(spec.dataset)), spec, settings, folder, stop_after_steps=stop_after_steps)
    return model


def test_after_step_follows_every_optimiser_step_and_its_state_survives_a_resume(monkeypatch, tmp_path):
    straight = train_ema(monkeypatch, None)
    assert straight.calls == [(step, 16) for step in range(1, 17)]
    # Called after the update: the first call already sees moved weights, the last one the final weights.
    assert not torch.equal(straight.seen_weights[0], straight.initial_weight)
    assert torch.equal(straight.seen_weights[-1], straight.head[-1].weight)

    with pytest.raises(InterruptedForTest):
        train_ema(monkeypatch, tmp_path, stop_after_steps=5)
    saved = torch.load(tmp_path / CHECKPOINT_FILE, weights_only=True)
    assert saved["method"]["calls"] == 5  # the state after step 5's after_step
    resumed = train_ema(monkeypatch, tmp_path)
    assert resumed.calls_before_resume == 5
    assert resumed.calls == [(step, 16) for step in range(6, 17)]  # numbering goes on where it stopped
    assert torch.equal(resumed.ema, straight.ema)  # restored, then updated exactly as without the interruption
    assert torch.equal(resumed.head[-1].weight, straight.head[-1].weight)


@pytest.mark.parametrize("name", list(METHOD_SPECS))
def test_the_usage_examples_in_the_docstrings_run(name):
    seed_everything(0)
    module = importlib.import_module(f"ablate.methods.{name}")  # one file per method, named as the method
    failed, attempted = doctest.testmod(module, raise_on_error=False, report=True)
    assert attempted >= 5 and failed == 0
