"""The training loop every method shares, with checkpoints and resume.

Read it top to bottom: the whole training set sits on the device as uint8; each step draws a batch
by index, makes the method's inputs (the augmented views) on the device, takes one optimiser step,
then calls the method's `after_step`. There is no DataLoader: with augmentation on the device there
is nothing left for worker processes to do. The exception is a folder too large for memory
(`ablate.data.stream`): DataLoader workers read and crop its files, in the order of the same
permutation, and the rest of the views are made on the device as for images in memory. What differs between methods is behind
`ablate.methods.base.Method`; nothing here asks which method it trains.

Every source of randomness (shuffling, augmentation parameters) comes from one torch.Generator
seeded from the run spec, and its state is saved in the checkpoint, so a run that is interrupted
and resumed takes exactly the same steps as one that is not.

At the end of each epoch the loop calls an optional epoch-end hook (`EpochEnd`: the epoch's loss and
the learning rate of its last step, among others): the online kNN monitor (`ablate.evaluate.monitor`)
and the TensorBoard log (`ablate.log`) live there, outside the per-step path. Whatever the hook
measures is kept in the training state, so it survives a resume like the losses do; its time is not
training time. The outcome lists each epoch's learning rate (that of its last step) beside its loss.

Inside a process group of several ranks (`ablate.distributed`), the loop trains the method through
DistributedDataParallel with batch norm over the global batch, each rank takes its rows of every global
batch (train.batch_size stays the global batch), draws its views from a generator of its own, and rank 0
alone writes checkpoints. On one process none of this happens.
"""

from __future__ import annotations

import io
import math
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ablate import distributed
from ablate.config import RunSpec
from ablate.data import ImageData
from ablate.methods.base import Method
from ablate.methods.optim import build_optimizer, build_schedule
from ablate.store import write_bytes_atomic

if TYPE_CHECKING:
    from ablate.data.stream import ImageFiles, StreamedBatches

CHECKPOINT_FILE = "checkpoint.pt"
LOSS_CHECK_EVERY = 10  # CUDA: steps between host syncs (NaN detection, progress); the CPU checks every step
SIDE_STREAM_PRIORITY = -1  # CUDA stream priority of the views made ahead (lower is more urgent; 0 is the default)


class CheckpointUnusable(RuntimeError):
    """The run's checkpoint.pt exists but cannot be loaded safely; the message says what to do."""


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
    measured: list[dict[str, float]] = field(default_factory=list)  # the epoch-end hook's values, with "epoch"
    epoch_end_seconds: float = 0.0  # time spent in the epoch-end hook (not training time)


@dataclass
class TrainOutcome:
    epoch_losses: list[float]
    train_seconds: float
    images_seen: int  # images drawn from the training set (each gives one view per branch)
    steps: int
    resumed_from_epoch: float | None
    epoch_lrs: list[float] = field(default_factory=list)
    measured: list[dict[str, float]] = field(default_factory=list)  # {"epoch": e, name: value, ...} per measuring epoch
    epoch_end_seconds: float = 0.0


@dataclass(frozen=True)
class EpochEnd:
    """What the loop knows when an epoch ends, given to the epoch-end hook.

    The hook may run the model (in eval mode, without gradients: `ablate.evaluate.features`), but
    must leave its weights, buffers and training mode as they were and draw from no random
    generator, so that a run gives the same weights and losses with or without it. It returns the
    values it measured ({} when it measured nothing); the loop keeps them in the checkpointed state.
    """

    epoch: int  # the epoch just finished, counted from 1
    epochs: int  # the run's epochs
    global_step: int  # optimiser steps so far
    loss: float  # the epoch's mean loss
    lr: float  # the learning rate of the epoch's last step
    train_seconds: float  # training time so far, earlier attempts of a resumed run included
    model: Method


EpochHook = Callable[[EpochEnd], dict[str, float]]


@dataclass
class DeviceSettings:
    device: torch.device
    autocast_bf16: bool
    channels_last: bool
    compile: bool = False


def device_settings(spec: RunSpec, device: torch.device) -> DeviceSettings:
    """bf16 autocast and torch.compile: on for CUDA under "auto", off on the CPU. channels_last always:
    cuDNN's tensor-core kernels want it, and oneDNN's CPU convolutions of the small CNN measured
    faster with it as well."""
    on_cuda = device.type == "cuda"
    bf16 = spec.train.precision == "bf16" or (spec.train.precision == "auto" and on_cuda)
    compiled = spec.train.compile == "on" or (spec.train.compile == "auto" and on_cuda)
    return DeviceSettings(device, autocast_bf16=bf16, channels_last=True, compile=compiled)


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

    def __call__(self, images: torch.Tensor, *args: Any) -> Any:
        """``model(images, *args)``; extra arguments (constants, such as which branch of a method to
        run) go to the model's forward as they are (torch.compile specialises on them)."""
        if self.settings.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast(self.settings):
            if self.compiled is None:
                return self.model(images, *args)
            if self.compile_checked:
                return self.compiled(images, *args)
            try:
                out = self.compiled(images, *args)
            except Exception as error:  # noqa: BLE001 - any compiler failure falls back to eager
                warnings.warn(f"torch.compile failed ({type(error).__name__}: {str(error)[:200]}); training uncompiled", stacklevel=2)
                self.compiled = None
                return self.model(images, *args)
            self.compile_checked = True
            return out


def save_checkpoint(path: Path, model: Method, optimizer, schedule, generator_state: torch.Tensor, state: TrainState) -> None:
    """Model, the method's extra state, optimiser, schedule, RNG states and loop position, written
    atomically (temp + os.replace).

    `generator_state` is the training generator's state *at the loop position saved* (before any
    views that were made ahead for the next step), so a resumed run draws them again identically.
    """
    buffer = io.BytesIO()
    torch.save(
        {
            "model": model.state_dict(),
            "method": model.extra_state(),
            "optimizer": optimizer.state_dict(),
            "schedule": schedule.state_dict(),
            "generator": generator_state,
            "cpu_rng": torch.get_rng_state(),
            "state": dict(vars(state)),
        },
        buffer,
    )
    write_bytes_atomic(path, buffer.getvalue())


def load_checkpoint(path: Path, model: Method, optimizer, schedule, generator: torch.Generator) -> TrainState | None:
    """Restore from the run's own checkpoint if there is one (weights_only: never unpickle code)."""
    if not path.exists():
        return None
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # refused (not plain weights) or unreadable: never trust it, never unpickle code
        raise CheckpointUnusable(
            f"{path} cannot be loaded with weights_only=True ({str(err).splitlines()[0][:200]}); "
            "if you did not put it there, delete it and rerun: the run then starts over from scratch"
        ) from None
    model.load_state_dict(saved["model"])
    model.load_extra_state(saved.get("method", {}))  # checkpoints written before methods had extra state lack it
    optimizer.load_state_dict(saved["optimizer"])
    schedule.load_state_dict(saved["schedule"])
    generator.set_state(saved["generator"])
    torch.set_rng_state(saved["cpu_rng"])
    return TrainState(**saved["state"])


@dataclass
class TrainStep:
    """One training step in two parts, so the views of step t + 1 can be made while step t trains.

    ``make_inputs(images_uint8, labels, generator)`` makes the network's inputs (the augmented views:
    every random draw of the step happens here); ``loss(inputs, labels)`` runs the network. Calling
    the object does both (the plain per-step loss).
    """

    make_inputs: Callable[[torch.Tensor, torch.Tensor, torch.Generator], tuple[torch.Tensor, ...]]
    loss: Callable[[tuple[torch.Tensor, ...], torch.Tensor], torch.Tensor]

    @classmethod
    def of(cls, method: Method, settings: DeviceSettings) -> TrainStep:
        """The method's step, its network run through `ModelForward` (channels_last, bf16, compile)."""
        forward = ModelForward(method, settings)
        return cls(make_inputs=method.make_inputs, loss=lambda inputs, labels: method.loss(inputs, labels, forward))


def optimizer_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, schedule) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    schedule.step()


class BatchMaker:
    """The inputs of each step of an epoch, optionally made one step ahead on a side CUDA stream.

    Views made ahead overlap augmentation with the previous step's backward pass even when an
    operator syncs the host (a sync on the side stream waits for augmentation work only, not for the
    model). Off by default: with no sync in the step the plain loop overlaps as well, and measured
    faster (see `train`). Draws happen in the same order either way, so results do not depend on
    `ahead`; `generator_state()` is the state at the loop position, before the views made ahead,
    which is what a checkpoint must hold.
    """

    def __init__(self, step: TrainStep, images: torch.Tensor | None, labels: torch.Tensor | None, order: torch.Tensor,
                 batch_size: int, generator: torch.Generator, ahead: bool,
                 streamed: Iterator[tuple[torch.Tensor, torch.Tensor]] | None = None, rows: slice = slice(None)):
        """`images`/`labels`: the training set on the device, indexed by `order`; or `streamed`: each step's
        batch in turn, read by a loader (ablate.data.stream), consumed one step after the other. `rows`: this
        process's rows of each batch (all of them on one process; ablate.distributed.rank_slice on several)."""
        self.step, self.images, self.labels, self.order, self.rows = step, images, labels, order, rows
        self.batch_size, self.generator, self.streamed = batch_size, generator, streamed
        cuda = order.device.type == "cuda"
        self.ahead = ahead
        # High priority, so that its small kernels (and any host sync inside augmentation) are not
        # queued behind the model's.
        self.side = torch.cuda.Stream(order.device, priority=SIDE_STREAM_PRIORITY) if ahead and cuda else None
        if self.side is not None:
            self.side.wait_stream(torch.cuda.current_stream(order.device))  # `order` is ready (once an epoch)
        self.pending: tuple[int, tuple[torch.Tensor, ...], torch.Tensor, torch.Tensor | None] | None = None

    def _make(self, step_index: int) -> tuple[int, tuple[torch.Tensor, ...], torch.Tensor, torch.Tensor | None]:
        # Only views made ahead need the state from before them (for a checkpoint taken meanwhile);
        # copying the generator's state every step otherwise would be work for nothing on the hot path.
        before = self.generator.get_state() if self.ahead else None
        with torch.cuda.stream(self.side) if self.side is not None else nullcontext():
            if self.streamed is not None:  # the loader's next batch: steps are made in order
                images, labels = next(self.streamed)
            else:
                index = self.order[step_index * self.batch_size : (step_index + 1) * self.batch_size][self.rows]
                images, labels = self.images[index], self.labels[index]
            inputs = self.step.make_inputs(images, labels, self.generator)
        return step_index, inputs, labels, before

    def get(self, step_index: int) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        """Inputs and labels of step `step_index` (made now, or taken from the one made ahead)."""
        made = self.pending if self.pending is not None and self.pending[0] == step_index else self._make(step_index)
        self.pending = None
        _, inputs, labels, _ = made
        if self.side is not None:
            main = torch.cuda.current_stream(labels.device)
            main.wait_stream(self.side)
            for tensor in (*inputs, labels):
                tensor.record_stream(main)  # made on the side stream, used (and freed) on the main one
        return inputs, labels

    def prepare(self, step_index: int, steps_per_epoch: int) -> None:
        """Make step `step_index`'s inputs now, if running ahead and it is in this epoch."""
        if self.ahead and step_index < steps_per_epoch:
            self.pending = self._make(step_index)

    def generator_state(self) -> torch.Tensor:
        return self.pending[3] if self.pending is not None else self.generator.get_state()


def train(
    model: Method,
    step: TrainStep,
    data: ImageData | ImageFiles,
    spec: RunSpec,
    settings: DeviceSettings,
    run_folder: Path | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
    stop_after_steps: int | None = None,
    ahead: bool = False,
    epoch_end: EpochHook | None = None,
) -> TrainOutcome:
    """Train the method `model` in place with `step` (inputs, then loss; usually `TrainStep.of(model, settings)`)
    on `data`; checkpoint into `run_folder`.

    After every optimiser step the loop calls ``model.after_step(step, total_steps)`` (step counted
    from 1), before any checkpoint of that position is written. `ahead` makes each step's views
    during the previous step, on a side CUDA stream. It is off by default: on an H200 it measured
    slower (benchmarks/results/train-h200.md vs train-h200-ahead.md), because the views are bound by
    the host's kernel launches, which the plain loop already overlaps with the GPU's work once
    nothing in the step syncs; it can pay for augmentations that sync the host.
    `stop_after_steps` ends the loop early after saving a checkpoint (used to test resume).
    `epoch_end` is called once an epoch's loss and learning rate are recorded, before its checkpoint.
    """
    device = settings.device
    loader = streamed_batches(model, data, spec, device)
    if loader is None:
        images, labels = data.images.to(device), data.labels.to(device)  # the whole training set, uint8, on the device
    else:
        images = labels = None  # a streamed folder: each step's batch comes from the loader's workers
    batch_size = spec.train.batch_size
    steps_per_epoch = len(data) // batch_size  # drop the last partial batch: NT-Xent wants full batches
    if steps_per_epoch == 0:
        raise BatchTooLarge(f"train.batch_size is {batch_size} but the training set has only {len(data)} images")
    check_every = LOSS_CHECK_EVERY if device.type == "cuda" else 1  # a CPU "sync" costs nothing
    ahead = bool(ahead)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest convolutions once

    world = distributed.world_size()
    if world > 1:  # several processes (ablate.distributed): global batch norm, DDP, the step run through the wrapper
        distributed.check_trainable(spec)
        wrapped = ModelForward(distributed.wrap_model(model, device), settings)
        step = TrainStep(model.make_inputs, lambda inputs, labels: model.loss(inputs, labels, wrapped))
        ahead = False  # each step's views come from a generator reseeded for that step (below)
    optimizer = build_optimizer(model, spec.train)
    schedule = build_schedule(optimizer, spec.train, steps_per_epoch)
    total_steps = spec.train.epochs * steps_per_epoch
    generator = torch.Generator(device=device).manual_seed(spec.seed)
    # One process: `generator` shuffles and draws the views. Several: it only shuffles (the same order on every
    # rank, and the state rank 0 checkpoints); each rank draws its views from its own, reseeded every step.
    views = torch.Generator(device=device) if world > 1 else generator
    checkpoint = run_folder / CHECKPOINT_FILE if run_folder else None
    state = (load_checkpoint(checkpoint, model, optimizer, schedule, generator) if checkpoint else None) or TrainState()
    if state.global_step:
        state.resumed_from_epoch = state.epoch + state.step_in_epoch / steps_per_epoch
    last_save = time.monotonic()
    model.train()

    def save(generator_state: torch.Tensor) -> None:
        if not distributed.is_main():  # rank 0 alone writes; every rank resumes from its checkpoint
            return
        state.loss_sum = float(running)
        save_checkpoint(checkpoint, model, optimizer, schedule, generator_state if world == 1 else generator.get_state(), state)

    while state.epoch < spec.train.epochs:
        if state.permutation is None:
            state.permutation = torch.randperm(len(data), generator=generator, device=device).cpu()
        streamed = loader.epoch(state.epoch, state.permutation, state.step_in_epoch) if loader is not None else None
        batches = BatchMaker(step, images, labels, state.permutation.to(device), batch_size, views, ahead, streamed,
                             distributed.rank_slice(batch_size))
        running = torch.tensor(state.loss_sum, device=device, dtype=torch.float64)
        started = time.perf_counter()
        while state.step_in_epoch < steps_per_epoch:
            if world > 1:
                distributed.seed_views(views, spec.seed, state.global_step)
            inputs, batch_labels = batches.get(state.step_in_epoch)
            loss = step.loss(inputs, batch_labels)
            optimizer_step(loss, optimizer, schedule)
            state.global_step += 1
            model.after_step(state.global_step, total_steps)  # e.g. a momentum (EMA) update of a target network
            # Several ranks: each loss is its own rows' mean (or already the global loss); their mean is the global
            # batch's loss, the same on every rank (one scalar all-reduce). One process: the loss itself.
            loss = distributed.mean_over_ranks(loss.detach())
            running += loss
            state.step_in_epoch += 1
            state.images_seen += batch_size
            batches.prepare(state.step_in_epoch, steps_per_epoch)  # next views, before this step's sync below
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
            if checkpoint and time.monotonic() - last_save > spec.train.checkpoint_minutes * 60:
                save(batches.generator_state())
                last_save = time.monotonic()
            started = time.perf_counter()  # after the save: writing checkpoints is not training time
            if stop_after_steps is not None and state.global_step >= stop_after_steps:
                if checkpoint:
                    save(batches.generator_state())
                raise InterruptedForTest(state.global_step)
        state.epoch_losses.append(float(running) / steps_per_epoch)
        if epoch_end is not None:
            run_epoch_end(epoch_end, state, spec.train.epochs, last_step_lr(schedule, state.global_step), model)
        state.epoch += 1
        state.step_in_epoch = 0
        state.loss_sum = 0.0
        state.permutation = None
        if checkpoint and distributed.is_main():
            save_checkpoint(checkpoint, model, optimizer, schedule, generator.get_state(), state)
            last_save = time.monotonic()

    # Each epoch's lr follows from the schedule alone: nothing to checkpoint, and right after any resume.
    epoch_lrs = [last_step_lr(schedule, epoch * steps_per_epoch) for epoch in range(1, state.epoch + 1)]
    return TrainOutcome(state.epoch_losses, state.train_seconds, state.images_seen, state.global_step, state.resumed_from_epoch,
                        epoch_lrs, state.measured, state.epoch_end_seconds)


def streamed_batches(model: Method, data: ImageData | ImageFiles, spec: RunSpec, device: torch.device) -> StreamedBatches | None:
    """The loader of a streamed split (`ablate.data.stream.ImageFiles`), or None for images held in memory.

    Its workers take the crop the method's ViewMaker names (`worker_crop`) from each full-resolution
    file, seeded by (run seed, epoch, index), so a resumed run reads the same crops. On W processes each
    rank's workers read only its rows of every global batch (`distributed.rank_slice`)."""
    from ablate.data.stream import ImageFiles, StreamedBatches  # local: in-memory runs never start a DataLoader

    if not isinstance(data, ImageFiles):
        return None
    crop = model.views.worker_crop(model.views_per_image)
    return StreamedBatches(data, crop, spec.train.batch_size, spec.seed, device,
                           rows=distributed.rank_slice(spec.train.batch_size))


def last_step_lr(schedule: torch.optim.lr_scheduler.LambdaLR, global_step: int) -> float:
    """The learning rate the schedule gave optimiser step `global_step` (counted from 1) of the first
    parameter group: every group shares it. The optimiser's own value is already the next step's."""
    return schedule.base_lrs[0] * schedule.lr_lambdas[0](global_step - 1)


def run_epoch_end(hook: EpochHook, state: TrainState, epochs: int, lr: float, model: Method) -> None:
    """Call the hook for the epoch that just ended (state.epoch, counted from 0; `lr` that of its last step);
    keep what it measured and its time."""
    started = time.perf_counter()
    end = EpochEnd(epoch=state.epoch + 1, epochs=epochs, global_step=state.global_step, loss=state.epoch_losses[-1],
                   lr=lr, train_seconds=state.train_seconds, model=model)
    measured = hook(end)
    if measured:
        state.measured.append({"epoch": end.epoch, **measured})
    state.epoch_end_seconds += time.perf_counter() - started
