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
import warnings
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
LOSS_CHECK_EVERY = 10  # CUDA: steps between host syncs (NaN detection, progress); the CPU checks every step


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite; the run is stopped instead of training on garbage."""


class BatchTooLarge(ValueError):
    """The batch is larger than the training set, so not one full step fits in an epoch."""


class InterruptedForTest(RuntimeError):
    """Raised by `stop_after_steps`, after the checkpoint is written, to simulate a kill."""


@dataclass
class TrainState:
    """Where training stands; saved in checkpoints so a run resumes where it stopped."""

    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    permutation: torch.Tensor | None = None  # order of the current epoch
    epoch_losses: list[float] = field(default_factory=list)
    loss_sum: float = 0.0  # sum of the current epoch's step losses so far (a mid-epoch resume continues it)
    train_seconds: float = 0.0
    images_seen: int = 0
    resumed_from_epoch: float | None = None


@dataclass
class TrainOutcome:
    epoch_losses: list[float]
    train_seconds: float
    images_seen: int  # images drawn from the training set (each gives one view per branch)
    steps: int
    resumed_from_epoch: float | None


@dataclass
class DeviceSettings:
    device: torch.device
    autocast_bf16: bool
    channels_last: bool
    compile: bool = False


def device_settings(spec: RunSpec, device: torch.device) -> DeviceSettings:
    """bf16 autocast, channels_last and torch.compile: on for CUDA under "auto", off on the CPU."""
    on_cuda = device.type == "cuda"
    bf16 = spec.train.precision == "bf16" or (spec.train.precision == "auto" and on_cuda)
    compiled = spec.train.compile == "on" or (spec.train.compile == "auto" and on_cuda)
    return DeviceSettings(device, autocast_bf16=bf16, channels_last=on_cuda, compile=compiled)


def autocast(settings: DeviceSettings):
    """bf16 autocast where the settings ask for it, else nothing."""
    if not settings.autocast_bf16:
        return nullcontext()
    return torch.autocast(device_type=settings.device.type, dtype=torch.bfloat16)


class ModelForward:
    """``model(x)`` the fast way for the settings: channels_last input, bf16 autocast, torch.compile.

    Augmentation happens before this call, in float32 and outside autocast, so only the network
    runs in bf16. The compiled module shares the model's parameters (its state_dict is unchanged).
    Compilation happens at the first call; if it fails there (no compiler, unsupported op), a
    warning says so and training goes on uncompiled rather than dying.
    """

    def __init__(self, model: nn.Module, settings: DeviceSettings):
        self.model = model
        self.settings = settings
        self.compiled: Callable[[torch.Tensor], torch.Tensor] | None = torch.compile(model) if settings.compile else None
        self.compile_checked = False

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if self.settings.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast(self.settings):
            if self.compiled is None:
                return self.model(images)
            if self.compile_checked:
                return self.compiled(images)
            try:
                out = self.compiled(images)
            except Exception as error:  # noqa: BLE001 - any compiler failure falls back to eager
                warnings.warn(f"torch.compile failed ({type(error).__name__}: {str(error)[:200]}); training uncompiled", stacklevel=2)
                self.compiled = None
                return self.model(images)
            self.compile_checked = True
            return out


def save_checkpoint(path: Path, model: nn.Module, optimizer, schedule, generator: torch.Generator, state: TrainState) -> None:
    """Model, optimiser, schedule, RNG states and loop position, written atomically (temp + os.replace)."""
    buffer = io.BytesIO()
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "schedule": schedule.state_dict(),
            "generator": generator.get_state(),
            "cpu_rng": torch.get_rng_state(),
            "state": dict(vars(state)),
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
    return TrainState(**saved["state"])


StepLoss = Callable[[torch.Tensor, torch.Tensor, torch.Generator], torch.Tensor]


def take_step(step_loss: StepLoss, images: torch.Tensor, labels: torch.Tensor, index: torch.Tensor,
              generator: torch.Generator, optimizer: torch.optim.Optimizer, schedule) -> torch.Tensor:
    """One optimiser step on the batch images[index]; returns the loss (still on the device, no sync)."""
    loss = step_loss(images[index], labels[index], generator)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    schedule.step()
    return loss.detach()


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
    images = data.images.to(device)  # the whole training set, uint8, on the device: no DataLoader
    labels = data.labels.to(device)
    batch_size = spec.train.batch_size
    steps_per_epoch = len(data) // batch_size  # drop the last partial batch: NT-Xent wants full batches
    if steps_per_epoch == 0:
        raise BatchTooLarge(f"train.batch_size is {batch_size} but the training set has only {len(data)} images")
    check_every = LOSS_CHECK_EVERY if device.type == "cuda" else 1  # a CPU "sync" costs nothing

    optimizer = build_optimizer(model, spec.train)
    schedule = build_schedule(optimizer, spec.train, steps_per_epoch)
    generator = torch.Generator(device=device).manual_seed(spec.seed)
    checkpoint = run_folder / CHECKPOINT_FILE if run_folder else None
    state = (load_checkpoint(checkpoint, model, optimizer, schedule, generator) if checkpoint else None) or TrainState()
    if state.global_step:
        state.resumed_from_epoch = state.epoch + state.step_in_epoch / steps_per_epoch
    last_save = time.monotonic()
    model.train()

    def save() -> None:
        state.loss_sum = float(running)
        save_checkpoint(checkpoint, model, optimizer, schedule, generator, state)

    while state.epoch < spec.train.epochs:
        if state.permutation is None:
            state.permutation = torch.randperm(len(data), generator=generator, device=device).cpu()
        order = state.permutation.to(device)
        running = torch.tensor(state.loss_sum, device=device, dtype=torch.float64)
        started = time.perf_counter()
        while state.step_in_epoch < steps_per_epoch:
            index = order[state.step_in_epoch * batch_size : (state.step_in_epoch + 1) * batch_size]
            loss = take_step(step_loss, images, labels, index, generator, optimizer, schedule)
            running += loss
            state.step_in_epoch += 1
            state.global_step += 1
            state.images_seen += batch_size
            last_of_epoch = state.step_in_epoch == steps_per_epoch
            if state.step_in_epoch % check_every == 0 or last_of_epoch:
                value = float(loss)  # the only host sync of the step, every `check_every` steps
                if not math.isfinite(value):
                    raise NonFiniteLoss(
                        f"loss became {value} at step {state.global_step} (epoch {state.epoch + 1}, step "
                        f"{state.step_in_epoch} of {steps_per_epoch}); lower train.lr (now {spec.train.lr} per 256 "
                        f"images) or train.weight_decay (now {spec.train.weight_decay})"
                    )
                if progress and (state.step_in_epoch % LOSS_CHECK_EVERY == 0 or last_of_epoch):
                    progress({"epoch": state.epoch + 1, "step": state.step_in_epoch, "steps_per_epoch": steps_per_epoch, "loss": value})
            state.train_seconds += time.perf_counter() - started
            started = time.perf_counter()
            if checkpoint and time.monotonic() - last_save > spec.train.checkpoint_minutes * 60:
                save()
                last_save = time.monotonic()
            if stop_after_steps is not None and state.global_step >= stop_after_steps:
                if checkpoint:
                    save()
                raise InterruptedForTest(state.global_step)
        state.epoch_losses.append(float(running) / steps_per_epoch)
        state.epoch += 1
        state.step_in_epoch = 0
        state.loss_sum = 0.0
        state.permutation = None
        if checkpoint:
            save_checkpoint(checkpoint, model, optimizer, schedule, generator, state)
            last_save = time.monotonic()

    return TrainOutcome(state.epoch_losses, state.train_seconds, state.images_seen, state.global_step, state.resumed_from_epoch)
