"""The training loop: bit-exact resume (at an epoch end and mid-epoch), NaN detection, safe checkpoints,
and the CUDA fast-path switches (channels_last views, bf16, compile with an eager fallback) on the CPU."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from ablate.config import RunSpec
from ablate.data import load_dataset
from ablate.methods.train import (
    CHECKPOINT_FILE,
    DeviceSettings,
    InterruptedForTest,
    ModelForward,
    NonFiniteLoss,
    device_settings,
    train,
)
from ablate.run import build_trainable, seed_everything

CPU = torch.device("cpu")


def tiny_spec(**train) -> RunSpec:
    """128 shapes images of 16 px, batch 16: 8 steps an epoch, 2 epochs (a step takes ~20 ms)."""
    return RunSpec.model_validate({
        "dataset": {"name": "shapes", "train_size": 128, "test_size": 40, "image_size": 16},
        "model": {"arch": "small_cnn"},
        "train": {"epochs": 2, "batch_size": 16, "lr": 1.0, "warmup_epochs": 0.5, **train},
        "augment": {"protocol": "both_branches", "ops": ["crop", "color", "blur"]},
        "seed": 3,
    })


def fresh_training(spec: RunSpec):
    seed_everything(spec.seed)
    settings = device_settings(spec, CPU)
    model, step_loss = build_trainable(spec, 10, settings)
    return model, step_loss, settings


def train_in(folder, spec: RunSpec, stop_after_steps: int | None = None, ahead: bool = False):
    data = load_dataset(spec.dataset).pretrain
    model, step, settings = fresh_training(spec)
    outcome = train(model, step, data, spec, settings, folder, stop_after_steps=stop_after_steps, ahead=ahead)
    return model, outcome


def assert_same_weights(a: nn.Module, b: nn.Module) -> None:
    state_a, state_b = a.state_dict(), b.state_dict()
    assert state_a.keys() == state_b.keys()
    different = [name for name in state_a if not torch.equal(state_a[name], state_b[name])]
    assert not different, f"tensors differ after resume: {different[:5]}"


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    spec = tiny_spec()
    model, outcome = train_in(tmp_path_factory.mktemp("straight"), spec)
    return spec, model, outcome


@pytest.mark.parametrize("stops, ahead", [([8], False), ([5], False), ([3, 11], False), ([5], True), ([8], True)],
                         ids=["epoch-end", "mid-epoch", "twice", "mid-epoch-views-ahead", "epoch-end-views-ahead"])
def test_resumed_training_is_bit_identical(tmp_path, uninterrupted, stops, ahead):
    """Uninterrupted vs stopped after k steps (checkpoint written) and resumed by a fresh model."""
    spec, reference_model, reference = uninterrupted
    for stop in stops:
        with pytest.raises(InterruptedForTest):
            train_in(tmp_path, spec, stop_after_steps=stop, ahead=ahead)
        assert (tmp_path / CHECKPOINT_FILE).exists()
    model, outcome = train_in(tmp_path, spec, ahead=ahead)  # a new process would do exactly this: rebuild, then resume
    assert outcome.resumed_from_epoch == pytest.approx(stops[-1] / 8)
    assert outcome.steps == reference.steps == 16
    assert outcome.images_seen == reference.images_seen
    assert outcome.epoch_losses == reference.epoch_losses  # exact floats, including the resumed epoch's mean
    assert_same_weights(model, reference_model)


def test_views_made_ahead_change_nothing(tmp_path, uninterrupted):
    """The CUDA path makes step t+1's views during step t; the draws and so the numbers are the same."""
    spec, reference_model, reference = uninterrupted
    model, outcome = train_in(tmp_path, spec, ahead=True)
    assert outcome.epoch_losses == reference.epoch_losses
    assert_same_weights(model, reference_model)


def test_checkpoint_loads_with_weights_only(uninterrupted, tmp_path):
    spec = uninterrupted[0]
    with pytest.raises(InterruptedForTest):
        train_in(tmp_path, spec, stop_after_steps=5)
    saved = torch.load(tmp_path / CHECKPOINT_FILE, weights_only=True)  # no pickled code inside
    assert set(saved) == {"model", "method", "optimizer", "schedule", "generator", "cpu_rng", "state"}
    assert saved["method"] == {}  # SimCLR keeps nothing beyond its modules' state_dict
    assert saved["state"]["global_step"] == 5 and saved["state"]["step_in_epoch"] == 5
    assert saved["state"]["loss_sum"] > 0  # the mid-epoch loss total travels with it
    assert saved["schedule"]["last_epoch"] == 5
    assert not list(tmp_path.glob(".*tmp"))  # written via a temp file that was renamed


def test_absurd_lr_stops_with_non_finite_loss_within_a_few_steps():
    # Batch norm makes the loss blind to the scale of the weights, so a large lr alone does not
    # diverge; with decay, each step multiplies the weights by (1 − lr·wd) = 1 − 50 and they
    # overflow float32 after ~12 steps. The CPU checks every step, so the run stops right there.
    spec = tiny_spec(optimizer="sgd", lr=100.0, weight_decay=1.0, warmup_epochs=0, batch_size=128, epochs=40)
    with pytest.raises(NonFiniteLoss, match=r"loss became (nan|inf) at step (\d+) ") as caught:
        train_in(None, spec)
    assert int(caught.value.args[0].split(" at step ")[1].split()[0]) <= 20


def test_device_settings_follow_the_spec():
    assert device_settings(tiny_spec(), CPU) == DeviceSettings(CPU, autocast_bf16=False, channels_last=True, compile=False)
    forced = device_settings(tiny_spec(precision="bf16", compile="on"), CPU)
    assert forced.autocast_bf16 and forced.compile and forced.channels_last
    cuda = device_settings(tiny_spec(), torch.device("cuda"))
    assert cuda.autocast_bf16 and cuda.channels_last and cuda.compile
    assert not device_settings(tiny_spec(compile="off", precision="fp32"), torch.device("cuda")).compile


class Recorder(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = nn.Conv2d(3, 2, 1)
        self.seen: list[tuple[bool, torch.dtype]] = []

    def forward(self, x):
        out = self.layer(x)
        self.seen.append((x.is_contiguous(memory_format=torch.channels_last), out.dtype))
        return out


def test_model_forward_makes_channels_last_bf16_inputs():
    model = Recorder()
    forward = ModelForward(model, DeviceSettings(CPU, autocast_bf16=True, channels_last=True, compile=False))
    forward(torch.rand(2, 3, 8, 8))
    assert model.seen == [(True, torch.bfloat16)]
    plain = ModelForward(model, DeviceSettings(CPU, autocast_bf16=False, channels_last=False))
    plain(torch.rand(2, 3, 8, 8))
    assert model.seen[-1] == (False, torch.float32)


def test_compile_failure_falls_back_to_eager_with_a_warning(monkeypatch):
    calls = []

    def broken_compile(module):
        def compiled(x):
            calls.append("compiled")
            raise RuntimeError("no C++ compiler")
        return compiled

    monkeypatch.setattr(torch, "compile", broken_compile)
    model = Recorder()
    forward = ModelForward(model, DeviceSettings(CPU, autocast_bf16=False, channels_last=False, compile=True))
    x = torch.rand(2, 3, 4, 4)
    with pytest.warns(UserWarning, match="torch.compile failed.*no C\\+\\+ compiler"):
        out = forward(x)
    assert torch.equal(out, model.layer(x))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        forward(x)  # later calls go straight to eager, without trying (or warning) again
    assert calls == ["compiled"]


def test_compiled_forward_is_used_once_it_works(monkeypatch):
    monkeypatch.setattr(torch, "compile", lambda module: (lambda x: module(x) * 0 + 7))
    forward = ModelForward(Recorder(), DeviceSettings(CPU, autocast_bf16=False, channels_last=False, compile=True))
    assert torch.all(forward(torch.rand(1, 3, 2, 2)) == 7) and torch.all(forward(torch.rand(1, 3, 2, 2)) == 7)


def test_a_truncated_checkpoint_is_refused_with_what_to_do(tmp_path):
    from ablate.methods.train import CheckpointUnusable, load_checkpoint

    path = tmp_path / "checkpoint.pt"
    path.write_bytes(b"PK\x03\x04 not a whole zip file")
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    with pytest.raises(CheckpointUnusable, match="delete it and rerun"):
        load_checkpoint(path, model, optimizer, schedule, torch.Generator())
