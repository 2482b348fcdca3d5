"""One run, from spec to result: data → augment → method (any of `ablate.methods.METHODS`) → evaluate.

`run_and_store` is the unit every executor calls (in-process, joblib worker, or SLURM job). It
never raises for a failure of the run itself: the failure is recorded in the run's result.json
with its error, and the grid goes on.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import socket
import subprocess
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import ablate
from ablate import distributed
from ablate.launch import clear_records, failures_named
from ablate.bench_common import core_count
from ablate.config import RunSpec
from ablate.cpu_memory import keep_freed_memory
from ablate.data import DatasetSplits, load_dataset
from ablate.data.stream import ImageFiles
from ablate.evaluate.collapse import collapse_record, method_embeddings
from ablate.evaluate.features import extract_features
from ablate.evaluate.finetune import finetune_metrics
from ablate.evaluate.knn import knn_accuracy
from ablate.evaluate.linear import LinearProbeResult, label_subset, train_linear_probe
from ablate.evaluate.linear_paper import paper_linear_evaluation
from ablate.evaluate.monitor import KnnMonitor, build_monitor
from ablate.evaluate.probes import transform_probe_metrics
from ablate.evaluate.transfer import check_targets_available, transfer_metrics
from ablate.log import TensorBoardLog, chosen_logs, run_logs, with_step_losses
from ablate.methods import METHODS, Method, MethodContext, ProbeFeatures
from ablate.methods.train import (
    CHECKPOINT_FILE,
    DeviceSettings,
    EpochEnd,
    EpochHook,
    InterruptedForTest,
    TrainOutcome,
    TrainStep,
    device_settings,
    train,
)
from ablate.models import build_encoder
from ablate.settings import load_settings
from ablate.store import write_result

Progress = Callable[[dict[str, Any]], None]


def parse_device(text: str) -> torch.device:
    """A device name this machine has ('cpu', 'cuda', 'cuda:1'); ValueError with a one-line reason otherwise."""
    try:
        device = torch.device(text)
    except RuntimeError:
        raise ValueError(f"{text!r} is not a device name; expected e.g. cpu or cuda") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{text!r}: this machine has no CUDA device")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"{text!r}: ablate runs on cpu or cuda")
    return device


# The device an executor placed this worker's runs on (`placed_on`); a context variable so that runs in
# threads of one process (joblib's threading backend) each keep their own.
_placed_device: ContextVar[str | None] = ContextVar("ablate_placed_device", default=None)


@contextmanager
def placed_on(device: str) -> Iterator[None]:
    """Runs started in the body train on `device` (e.g. 'cuda:1') unless ABLATE_DEVICE names one: how the
    local executor gives each of its workers its own GPU (ablate.execute.local)."""
    token = _placed_device.set(device)
    try:
        yield
    finally:
        _placed_device.reset(token)


def pick_device() -> torch.device:
    """CUDA when present, else CPU; ABLATE_DEVICE overrides (e.g. 'cpu' on a GPU machine), then the device
    the executor placed this worker on (`placed_on`)."""
    wanted = load_settings().device or _placed_device.get()
    if wanted:
        return parse_device(wanted)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)  # model initialisation; augmentation and shuffling use their own generator


def git_commit() -> str | None:
    """The commit of the ablate checkout the code runs from, when it is one."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(ablate.__file__).parent, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        try:
            return torch.cuda.get_device_name(device)
        except (RuntimeError, AssertionError):  # no usable CUDA: the run has failed already; still write its result
            return str(device)
    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads)"


def provenance(device: torch.device, started: dt.datetime, uses_color: bool = True) -> dict[str, Any]:
    import kornia

    from ablate.augment.compiled import color_compile_status

    return {
        "ablate_version": ablate.__version__,
        "git_commit": git_commit(),
        "torch_version": torch.__version__,
        "kornia_version": kornia.__version__,
        "python_version": platform.python_version(),
        "device": device_name(device),
        "color": color_compile_status(uses_color),  # eager, or compiled (ABLATE_COMPILE_COLOR=1)
        "host": socket.gethostname(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "start_time": started.isoformat(timespec="seconds"),
        "end_time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def build_method(spec: RunSpec, num_classes: int, settings: DeviceSettings) -> Method:
    """The spec's method, from the registry, with its modules on settings.device (channels_last as the settings say).

    The encoder is built first, then the method's own modules: parameters are always created in
    that order, so one seed gives the same initial weights.
    """
    from ablate.augment import ViewMaker

    encoder = build_encoder(spec.model, spec.dataset.image_size)
    context = MethodContext(encoder=encoder, views=ViewMaker(spec.augment), model=spec.model, num_classes=num_classes)
    method = METHODS[spec.method.name](spec.method, context)
    method.to(settings.device)
    if settings.channels_last:
        method.to(memory_format=torch.channels_last)
    return method


def build_trainable(spec: RunSpec, num_classes: int, settings: DeviceSettings) -> tuple[Method, TrainStep]:
    """The method to train and its training step (inputs, then loss).

    The views are made on the device in float32; the network runs through `ModelForward`
    (channels_last, bf16 autocast, torch.compile as the settings say).
    """
    method = build_method(spec, num_classes, settings)
    return method, TrainStep.of(method, settings)


@dataclass(frozen=True)
class Evaluation:
    metrics: dict[str, float]
    collapse: dict[str, Any]  # ablate.evaluate.collapse.collapse_record of the test images' embeddings


def probe_features(model: Method, images: torch.Tensor, spec: RunSpec, settings: DeviceSettings) -> tuple[torch.Tensor, torch.Tensor]:
    """(h, what the linear probe and kNN read) for un-augmented images: h = f(x) from the frozen encoder,
    and the probes' input as `eval.representation` says — h itself, or z = `model.embedding(h)`, the
    output the method's loss compares (SimCLR: z = g(h), Figure 8; the supervised baseline: its class
    logits). h is returned as well because the method's own metrics and the collapse diagnostic read h.
    """
    fast = {"bf16": settings.autocast_bf16, "channels_last": settings.channels_last}
    encoded = extract_features(model.encoder, images, settings.device, **fast)
    if spec.eval.representation == "z":
        return encoded, method_embeddings(model, encoded)
    return encoded, encoded


def linear_probe(model: Method, data: DatasetSplits, spec: RunSpec, settings: DeviceSettings,
                 features: ProbeFeatures, labelled: torch.Tensor) -> LinearProbeResult:
    """The linear evaluation `eval.linear` names, on the `labelled` training examples: `features` (Adam on
    the pre-computed, un-augmented probe features; ablate.evaluate.linear) or `paper` (Nesterov SGD on
    crop + flip views through the frozen network, Appendix B.6; ablate.evaluate.linear_paper)."""
    if spec.eval.linear == "paper":
        return paper_linear_evaluation(model, data, labelled, spec, settings)
    return train_linear_probe(
        features.train[labelled], features.train_labels[labelled], features.test, features.test_labels,
        num_classes=len(data.classes), epochs=spec.eval.linear_epochs, lr=spec.eval.linear_lr,
        batch_size=spec.eval.linear_batch_size, seed=spec.seed,
    )


STREAMED_VIEW_IMAGES = 10_000  # a streamed test set's images decoded for the method's view metrics (in memory: all)


def view_task_metrics(model: Method, data: DatasetSplits, spec: RunSpec, settings: DeviceSettings) -> dict[str, float]:
    """The method's own task on two views of the test images (`Method.view_metrics`; SimCLR: Table 5's
    contrastive accuracy and entropy), drawn by a generator of their own seeded from the run's seed, so
    training's draws and the run's other numbers are untouched. A streamed test set gives its first
    STREAMED_VIEW_IMAGES images, decoded."""
    if type(model).view_metrics is Method.view_metrics:
        return {}  # the method measures none: decode nothing
    images = data.test.images
    if isinstance(data.test, ImageFiles):
        images = images[torch.arange(min(len(data.test), STREAMED_VIEW_IMAGES))]
    generator = torch.Generator(device=settings.device).manual_seed(spec.seed)
    return model.view_metrics(images.to(settings.device), spec.train.batch_size, generator)


def check_streamed_evaluations(spec: RunSpec, data: DatasetSplits) -> None:
    """Before training: the evaluations that read every training image as a tensor in memory (the paper's
    linear protocol, fine-tuning, Table 3's probes, transfer) are refused on a streamed run, which would
    otherwise decode the whole split into memory after hours of training."""
    if not isinstance(data.train, ImageFiles):
        return
    asked = [name for name, wanted in (
        ("eval.linear: paper", spec.eval.linear == "paper"), ("eval.finetune", bool(spec.eval.finetune.fractions)),
        ("eval.transform_probes", bool(spec.eval.transform_probes)), ("eval.transfer", bool(spec.eval.transfer)),
    ) if wanted]
    if asked:
        raise ValueError(f"{', '.join(asked)} read the training images from memory, and this run streams "
                         f"{spec.dataset.name!r} (dataset.stream: {spec.dataset.stream}): set dataset.stream: false "
                         "where the set fits in memory, or leave them out of this grid")


def evaluate(model: Method, data: DatasetSplits, spec: RunSpec, settings: DeviceSettings) -> Evaluation:
    """Linear probe (top-1, top-5) and kNN accuracy on the frozen encoder's features, in percent,
    then the method's own metrics (e.g. the supervised baseline's classifier accuracy, Table 1),
    and the collapse diagnostic of the method's embeddings of the test images.
    """
    device = settings.device
    train_encoded, train_features = probe_features(model, data.train.images, spec, settings)
    test_encoded, test_features = probe_features(model, data.test.images, spec, settings)
    train_labels = data.train.labels.to(device)
    test_labels = data.test.labels.to(device)
    labelled = label_subset(train_labels, spec.eval.label_fraction, spec.seed)
    probe = linear_probe(model, data, spec, settings, ProbeFeatures(train_features, train_labels, test_features, test_labels), labelled)
    knn = knn_accuracy(
        train_features[labelled], train_labels[labelled], test_features, test_labels,
        k=spec.eval.knn_k, temperature=spec.eval.knn_temperature, num_classes=len(data.classes),
    )
    metrics = {
        "linear_top1": probe.top1,
        "linear_top5": probe.top5,
        "linear_train_top1": probe.train_top1,
        "knn_top1": knn,
        "label_fraction": spec.eval.label_fraction,
        "labelled_examples": probe.train_examples,
    }
    own = model.extra_metrics(ProbeFeatures(train_encoded, train_labels, test_encoded, test_labels))
    clashing = sorted(own.keys() & metrics.keys())
    if clashing:
        raise ValueError(f"{type(model).__name__}.extra_metrics would overwrite {clashing}")
    metrics.update(own)
    metrics.update(view_task_metrics(model, data, spec, settings))  # e.g. SimCLR's Table 5 columns
    metrics.update(finetune_metrics(model, data, spec, settings))  # Table 7 (ablate.evaluate.finetune)
    metrics.update(transfer_metrics(model, spec, settings))  # Table 8 (ablate.evaluate.transfer)
    metrics.update(transform_probe_metrics(model, data, spec, settings))  # Table 3 (ablate.evaluate.probes)
    collapse = collapse_record(method_embeddings(model, test_encoded))
    return Evaluation(metrics, collapse)


def speed_metrics(outcome: TrainOutcome, views_per_image: int, encoder: torch.nn.Module, spec: RunSpec, device: torch.device) -> dict[str, float | None]:
    """Training images per second and model-FLOP utilisation (forward + backward ≈ 3× forward)."""
    from ablate.models.flops import count_flops, device_peak_flops, training_flops_per_second

    seconds = max(outcome.train_seconds, 1e-9)
    views_per_second = outcome.images_seen * views_per_image / seconds
    size = spec.dataset.image_size
    flops_per_view = count_flops(encoder, (3, size, size))
    peak = device_peak_flops(device)
    achieved = training_flops_per_second(flops_per_view, views_per_second)
    return {
        "images_per_second": outcome.images_seen / seconds,
        "encoder_gflops_per_view": flops_per_view / 1e9,
        "achieved_tflops": achieved / 1e12,
        "mfu": achieved / peak if peak else None,
    }


def monitor_for(spec: RunSpec, data: DatasetSplits, model: Method, settings: DeviceSettings) -> KnnMonitor | None:
    """The online kNN monitor ABLATE_MONITOR_EVERY asks for (ablate.evaluate.monitor), or None when it is off."""
    batch_size = spec.train.batch_size
    images_per_epoch = len(model.pretraining_data(data)) // batch_size * batch_size
    return build_monitor(spec, data, images_per_epoch, model.views_per_image, load_settings().monitor_every,
                         settings.device, bf16=settings.autocast_bf16, channels_last=settings.channels_last)


def epoch_hook(monitor: KnnMonitor | None, log: TensorBoardLog | None) -> EpochHook | None:
    """The training loop's epoch-end hook: the monitor's measurement when due, then the epoch's scalars to the log."""
    if monitor is None and log is None:
        return None

    def at_epoch_end(end: EpochEnd) -> dict[str, float]:
        measured = {"knn_top1": monitor.measure(end.model.encoder)} if monitor is not None and monitor.due(end.epoch) else {}
        if log is not None:
            log.epoch(end, measured)
        return measured

    return at_epoch_end


def training_curves(outcome: TrainOutcome) -> dict[str, list[float] | list[int]]:
    """result.json's curves: loss and learning rate per epoch, and the monitor's kNN top-1 at the epochs it measured."""
    curves: dict[str, list[float] | list[int]] = {"epoch_loss": outcome.epoch_losses, "lr": outcome.epoch_lrs}
    knn = [values for values in outcome.measured if "knn_top1" in values]
    if knn:
        curves["monitor_epochs"] = [int(values["epoch"]) for values in knn]
        curves["monitor_knn_top1"] = [values["knn_top1"] for values in knn]
    return curves


def execute_run(
    spec: RunSpec, run_folder: Path | None = None, progress: Progress | None = None, device: torch.device | None = None,
    logs: Sequence[str] = (), **train_options,
) -> dict[str, Any]:
    """Train and evaluate one spec on `device` (default: pick_device()); returns metrics, timings and
    training curves (raises on failure).

    `logs` are the live logs to write under `run_folder` (ablate.log: "tensorboard"). `train_options`
    go to `ablate.methods.train.train` (``stop_after_steps`` for resume tests).
    """
    device = device or pick_device()
    settings: DeviceSettings = device_settings(spec, device)
    seed_everything(spec.seed)
    clock = time.perf_counter()
    data = load_dataset(spec.dataset)
    data_seconds = time.perf_counter() - clock
    check_streamed_evaluations(spec, data)
    check_targets_available(spec)

    world = distributed.world_size()
    # On several processes: a rank's error is recorded, and rank 0's names every rank's (ablate.launch).
    with failures_named(run_folder, distributed.rank(), world):
        model, step_loss = build_trainable(spec, len(data.classes), settings)
        monitor = monitor_for(spec, data, model, settings)
        with run_logs(logs, run_folder) as log:
            outcome = train(model, step_loss, model.pretraining_data(data), spec, settings, run_folder,
                            with_step_losses(progress, log), epoch_end=epoch_hook(monitor, log), **train_options)
    if world > 1:  # trained on several processes: rank 0 alone evaluates (ablate.distributed)
        main = distributed.is_main()
        distributed.leave()
        if not main:
            return {}
        if device.type == "cpu":  # the ranks shared the cores (ablate.launch); the others are done now
            torch.set_num_threads(core_count())

    clock = time.perf_counter()
    evaluation = evaluate(model, data, spec, settings)
    metrics = evaluation.metrics
    eval_seconds = time.perf_counter() - clock
    metrics["final_loss"] = outcome.epoch_losses[-1]
    metrics.update(speed_metrics(outcome, model.views_per_image, model.encoder, spec, device))
    return {
        "metrics": metrics,
        "curves": training_curves(outcome),
        # "monitor": seconds in the epoch-end hook (kNN monitor, TensorBoard log), not counted in "train"
        "timings": {"data": data_seconds, "train": outcome.train_seconds, "eval": eval_seconds,
                    **({"monitor": outcome.epoch_end_seconds} if monitor is not None or logs else {})},
        "resumed_from_epoch": outcome.resumed_from_epoch,
        "processes": world,  # training processes (one per device); train.batch_size is their global batch
        "fast_path": {"bf16": settings.autocast_bf16, "channels_last": settings.channels_last, "compile": settings.compile},
        "collapse": evaluation.collapse,
    }


def error_record(error: BaseException) -> dict[str, str]:
    return {
        "type": type(error).__name__,
        "message": str(error) or type(error).__name__,
        "traceback": "".join(traceback.format_exception(error))[-4000:],
    }


def run_and_store(
    spec: RunSpec, grid: str, run_id: str, run_folder: Path, axes: dict[str, Any] | None = None,
    progress: Progress | None = None, logs: Sequence[str] | None = None, **train_options,
) -> dict[str, Any]:
    """Run one spec and write its result.json (completed or failed) atomically; return the result.

    `logs`: the live logs to write (ablate.log); None takes those chosen for this process
    (`ablate.log.logging_to`, which is how `ablate run --log` reaches the runs of every executor).

    A NaN loss, a missing file, an out-of-memory error... end as ``status: failed`` with the error's
    type and message. An interruption (Ctrl-C, a kill, `InterruptedForTest`) writes no result: the
    run stays pending and resumes from its checkpoint next time.
    """
    run_folder.mkdir(parents=True, exist_ok=True)
    started = dt.datetime.now(dt.timezone.utc)
    clock = time.perf_counter()
    result = new_result(spec, grid, run_id, axes)
    device = torch.device("cpu")  # what provenance names if even choosing the device fails
    try:
        device = pick_device()
        if device.type == "cpu":
            keep_freed_memory()  # faster CPU steps: no page faults on batch-sized tensors (see the module)
        outcome = execute_run(spec, run_folder, progress, device=device,
                              logs=chosen_logs() if logs is None else logs, **train_options)
        result.update(outcome)
        result["status"] = "completed"
    except InterruptedForTest:
        raise
    except Exception as error:  # a failed run is a result too; the grid goes on
        if isinstance(error, torch.cuda.OutOfMemoryError):
            torch.cuda.empty_cache()
        result["status"] = "failed"
        result["error"] = error_record(error)
    result["timings"]["total"] = time.perf_counter() - clock
    result["provenance"] = provenance(device, started, uses_color="color" in spec.augment.ops)
    write_result(run_folder, result)
    if result["status"] == "completed":
        (run_folder / CHECKPOINT_FILE).unlink(missing_ok=True)  # the result supersedes the training state
        clear_records(run_folder)  # ranks' error records of earlier attempts (ablate.launch)
    return result


def new_result(spec: RunSpec, grid: str, run_id: str, axes: dict[str, Any] | None) -> dict[str, Any]:
    """A run's result before it has run: what it is, no metrics yet."""
    return {"run_id": run_id, "grid": grid, "spec": spec.model_dump(mode="json"), "axes": axes or {},
            "metrics": {}, "timings": {}, "error": None}


def failed_result(spec: RunSpec, grid: str, run_id: str, axes: dict[str, Any] | None, error: BaseException) -> dict[str, Any]:
    """The failed result of a run that could not write its own (its training process died: ablate.distributed)."""
    result = new_result(spec, grid, run_id, axes)
    result.update(status="failed", error=error_record(error))
    now = dt.datetime.now(dt.timezone.utc)
    result["provenance"] = provenance(torch.device("cpu"), now, uses_color="color" in spec.augment.ops)
    result["provenance"]["device"] = None  # not known here: the ranks chose theirs
    return result
