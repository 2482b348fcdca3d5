"""The training loop shared by SimCLR and the supervised baseline, with checkpoints and resume.

Read it top to bottom: the whole training set sits on the device as uint8; each step draws a batch
by index, makes the augmented view(s) on the device, takes one optimiser step. There is no
DataLoader: with augmentation on the device there is nothing left for worker processes to do.

Every source of randomness (shuffling, augmentation parameters) comes from one torch.Generator
seeded from the run spec, and its state is saved in the checkpoint, so a run that is interrupted
and resumed takes exactly the same steps as one that is not.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ablate.config import RunSpec
from ablate.data import ImageData
from ablate.methods.optim import build_optimizer, build_schedule
from ablate.store import write_bytes_atomic

CHECKPOINT_FILE = "checkpoint.pt"
LOSS_CHECK_EVERY = 10  # steps between host syncs: NaN detection and progress, without stalling a GPU


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite; the run is stopped instead of training on garbage."""


class BatchTooLarge(ValueError):
    """The batch is larger than the training set, so not one full step fits in an epoch."""


@dataclass
class TrainState:
    """Where training stands; saved in checkpoints so a run resumes where it stopped."""

    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    permutation: torch.Tensor | None = None  # order of the current epoch
    epoch_losses: list[float] = field(default_factory=list)
    train_seconds: float = 0.0
    images_seen: int = 0
    resumed_from_epoch: float | None = None


@dataclass
class TrainOutcome:
    epoch_losses: list[float]
    train_seconds: float
    images_seen: int  # augmented views that went through the encoder
    steps: int
    resumed_from_epoch: float | None


@dataclass
class DeviceSettings:
    device: torch.device
    autocast_bf16: bool
    channels_last: bool


def device_settings(spec: RunSpec, device: torch.device) -> DeviceSettings:
    on_cuda = device.type == "cuda"
    bf16 = spec.train.precision == "bf16" or (spec.train.precision == "auto" and on_cuda)
    return DeviceSettings(device, autocast_bf16=bf16, channels_last=on_cuda)


def _autocast(settings: DeviceSettings):
    if not settings.autocast_bf16:
        return nullcontext()
    return torch.autocast(device_type=settings.device.type, dtype=torch.bfloat16)


def save_checkpoint(path: Path, model: nn.Module, optimizer, schedule, generator: torch.Generator, state: TrainState) -> None:
    buffer = io.BytesIO()
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "schedule": schedule.state_dict(),
            "generator": generator.get_state(),
            "cpu_rng": torch.get_rng_state(),
            "state": {k: v for k, v in vars(state).items()},
        },
        buffer,
    )
    write_bytes_atomic(path, buffer.getvalue())


def load_checkpoint(path: Path, model: nn.Module, optimizer, schedule, generator: torch.Generator) -> TrainState | None:
    """Restore from the run's own checkpoint if there is one (weights_only: never unpickle code)."""
    if not path.exists():
        return None
    saved = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    schedule.load_state_dict(saved["schedule"])
    generator.set_state(saved["generator"])
    torch.set_rng_state(saved["cpu_rng"])
    state = TrainState(**saved["state"])
    state.resumed_from_epoch = state.epoch + state.step_in_epoch / max(1, _steps_hint(state))
    return state


def _steps_hint(state: TrainState) -> int:
    return int(state.permutation.numel()) if state.permutation is not None else 1


StepLoss = Callable[[torch.Tensor, torch.Tensor, torch.Generator], torch.Tensor]


def train(
    model: nn.Module,
    step_loss: StepLoss,
    data: ImageData,
    spec: RunSpec,
    settings: DeviceSettings,
    run_folder: Path | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
    stop_after_steps: int | None = None,
) -> TrainOutcome:
    """Train `model` in place. `step_loss(images_uint8, labels, generator)` returns the batch's loss.

    `stop_after_steps` ends the loop early after saving a checkpoint (used to test resume).
    """
    device = settings.device
    images = data.images.to(device)
    labels = data.labels.to(device)
    batch_size = spec.train.batch_size
    steps_per_epoch = len(data) // batch_size  # drop the last partial batch: NT-Xent wants full batches
    if steps_per_epoch == 0:
        raise BatchTooLarge(f"train.batch_size is {batch_size} but the training set has only {len(data)} images")

    optimizer = build_optimizer(model, spec.train)
    schedule = build_schedule(optimizer, spec.train, steps_per_epoch)
    generator = torch.Generator(device=device).manual_seed(spec.seed)
    checkpoint = run_folder / CHECKPOINT_FILE if run_folder else None
    state = (load_checkpoint(checkpoint, model, optimizer, schedule, generator) if checkpoint else None) or TrainState()
    last_save = time.monotonic()
    model.train()

    while state.epoch < spec.train.epochs:
        if state.permutation is None:
            state.permutation = torch.randperm(len(data), generator=generator, device=device).cpu()
        order = state.permutation.to(device)
        running = torch.zeros((), device=device)
        started = time.perf_counter()
        while state.step_in_epoch < steps_per_epoch:
            index = order[state.step_in_epoch * batch_size : (state.step_in_epoch + 1) * batch_size]
            with _autocast(settings):
                loss = step_loss(images[index], labels[index], generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            running += loss.detach().float()
            state.step_in_epoch += 1
            state.global_step += 1
            state.images_seen += batch_size
            if state.step_in_epoch % LOSS_CHECK_EVERY == 0 or state.step_in_epoch == steps_per_epoch:
                value = float(loss.detach())
                if not math.isfinite(value):
                    raise NonFiniteLoss(f"loss became {value} at epoch {state.epoch + 1}, step {state.step_in_epoch}")
                if progress:
                    progress({"epoch": state.epoch + 1, "step": state.step_in_epoch, "steps_per_epoch": steps_per_epoch, "loss": value})
            state.train_seconds += time.perf_counter() - started
            started = time.perf_counter()
            if checkpoint and time.monotonic() - last_save > spec.train.checkpoint_minutes * 60:
                save_checkpoint(checkpoint, model, optimizer, schedule, generator, state)
                last_save = time.monotonic()
            if stop_after_steps is not None and state.global_step >= stop_after_steps:
                if checkpoint:
                    save_checkpoint(checkpoint, model, optimizer, schedule, generator, state)
                raise InterruptedForTest(state.global_step)
        state.epoch_losses.append(float(running) / steps_per_epoch)
        state.epoch += 1
        state.step_in_epoch = 0
        state.permutation = None
        if checkpoint:
            save_checkpoint(checkpoint, model, optimizer, schedule, generator, state)
            last_save = time.monotonic()

    return TrainOutcome(state.epoch_losses, state.train_seconds, state.images_seen, state.global_step, state.resumed_from_epoch)


class InterruptedForTest(RuntimeError):
    """Raised by `stop_after_steps`, after the checkpoint is written, to simulate a kill."""
