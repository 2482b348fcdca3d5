"""Training-speed benchmarks behind `ablate bench train` (and benchmarks/bench_train.py).

Both modes time ablate's real training loop (`ablate.methods.train.train`, the code every run uses),
not a re-implementation of it.

* **device** mode (the default on CUDA): a ResNet-18 (CIFAR stem) SimCLR step at batch 512, two views
  made on the device by `ViewMaker` (both_branches, crop + colour + blur), bf16 autocast,
  channels_last, torch.compile, LARS, on random uint8 data of CIFAR-10's shape (50,000×3×32×32)
  preloaded on the device. It also times the same loop with the views made once (model, loss and
  optimiser only) to separate the model's speed from augmentation's. It reports ms per step, images/s, achieved TFLOP/s (model FLOPs from
  `count_flops`, ×3 for forward + backward, ×2 views), the MFU against the device's dense bf16 peak,
  the time of one CIFAR-10 epoch (97 steps of 512, augmentation included) and the share of a step
  spent making the views. Targets (issue 4): MFU ≥ 35 %, epoch ≤ 1.5 s on an H100/H200, views
  ≤ 10 % of a step.
* **cpu** mode (the default on a CPU): ablate's step (small CNN, 32 px images as uint8 in memory,
  views made by `ViewMaker` on the whole batch) against the same model, loss and optimiser fed the
  usual way: a torchvision DataLoader over per-image ``torchvision.transforms.v2`` (RandomResizedCrop,
  flip, ColorJitter p=0.8, Grayscale p=0.2; the same operators and ranges), one worker per core.
  Same process, same images, same number of steps; images/s of both and their ratio.

Each writes a Markdown table naming the machine (CPU model or GPU, torch / torchvision / kornia
versions, load average) — `write_markdown`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from ablate import bench_common
from ablate.augment.color import Color
from ablate.augment.crop import Crop
from ablate.bench_common import TwoViewDataset, core_count, load_average, torchvision_simclr_views
from ablate.config import RunSpec
from ablate.cpu_memory import keep_freed_memory
from ablate.data import ImageData
from ablate.methods.train import TrainStep, device_settings, train
from ablate.run import build_trainable, seed_everything

CIFAR_TRAIN_IMAGES = 50_000


# ------------------------------------------------------------------------------------------ machine


def machine(device: torch.device) -> dict[str, str]:
    info = bench_common.machine(device)
    if device.type == "cuda":
        info["cuda"] = str(torch.version.cuda)
    info["load average (1 min, at start)"] = load_average()
    return info


def say(message: str) -> None:
    """Progress on stderr, so a benchmark cut short by a timeout still leaves its numbers so far."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(device: torch.device, fn) -> float:
    """Wall seconds of fn(), the device synchronised before and after."""
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


# --------------------------------------------------------------------------------- device mode


def device_spec(arch: str, batch_size: int, compile_model: bool, precision: str = "bf16") -> RunSpec:
    """The benchmarked run: CIFAR-10-shaped input, ResNet (CIFAR stem), LARS, SimCLR views crop + colour + blur."""
    return RunSpec.model_validate({
        "dataset": {"name": "cifar10", "image_size": 32},
        "model": {"arch": arch, "stem": "cifar" if arch != "small_cnn" else "auto"},
        "train": {"epochs": 1, "batch_size": batch_size, "lr": 1.0, "optimizer": "lars", "warmup_epochs": 0,
                  "precision": precision, "compile": "on" if compile_model else "off", "checkpoint_minutes": 10_000},
        "augment": {"protocol": "both_branches", "ops": ["crop", "color", "blur"]},
    })


def device_benchmark(
    device: str | torch.device = "cuda",
    arch: str = "resnet18",
    batch_size: int = 512,
    dataset_size: int = CIFAR_TRAIN_IMAGES,
    compile_model: bool = True,
    warmup_steps: int = 20,
    augment_repeats: int = 20,
    ahead: bool = False,
) -> dict[str, Any]:
    """Time one epoch of ablate's training loop on `dataset_size` random uint8 images on the device.

    A first, short call of `train` (warmup_steps steps) compiles the model and warms the caches; the
    timed call is one full epoch of the same model, i.e. exactly what a run does after its first steps.
    """
    from ablate.augment import ViewMaker
    from ablate.models.flops import count_flops, device_peak_flops, training_flops_per_second

    device = torch.device(device)
    spec = device_spec(arch, batch_size, compile_model, "bf16" if device.type == "cuda" else "fp32")
    settings = device_settings(spec, device)
    seed_everything(0)
    generator = torch.Generator(device=device).manual_seed(0)
    images = torch.randint(0, 256, (dataset_size, 3, 32, 32), dtype=torch.uint8, device=device, generator=generator)
    labels = torch.zeros(dataset_size, dtype=torch.long, device=device)
    model, step_loss = build_trainable(spec, 10, settings)

    say(f"{arch}, batch {batch_size}, {dict(vars(settings))}: {warmup_steps} warm-up steps (compiling)...")
    warm = ImageData(images[: warmup_steps * batch_size], labels[: warmup_steps * batch_size])
    compile_seconds = _timed(device, lambda: train(model, step_loss, warm, spec, settings, ahead=ahead))
    say(f"warm-up took {compile_seconds:.1f} s")
    data = ImageData(images, labels)
    steps = dataset_size // batch_size
    outcome = {}
    epoch_seconds = _timed(device, lambda: outcome.update(result=train(model, step_loss, data, spec, settings, ahead=ahead)))
    step_seconds = epoch_seconds / steps
    say(f"one epoch of {steps} steps: {epoch_seconds:.3f} s ({1000 * step_seconds:.2f} ms a step)")

    fixed = step_loss.make_inputs(images[:batch_size], labels[:batch_size], generator)
    model_only = TrainStep(lambda *_: fixed, step_loss.loss)  # the same loop, with the views made once
    model_seconds = _timed(device, lambda: train(model, model_only, data, spec, settings, ahead=False)) / steps
    say(f"the same loop with fixed views (no augmentation): {1000 * model_seconds:.2f} ms a step")

    maker = ViewMaker(spec.augment)
    batch = images[:batch_size]
    maker.pair(batch, generator)
    augment_seconds = _timed(device, lambda: [maker.pair(batch, generator) for _ in range(augment_repeats)]) / augment_repeats
    _sync(device)
    start = time.perf_counter()
    for _ in range(augment_repeats):
        maker.pair(batch, generator)
    augment_host_seconds = (time.perf_counter() - start) / augment_repeats  # launching only (no sync at the end)
    _sync(device)
    say(f"views of one batch: {1000 * augment_seconds:.2f} ms ({1000 * augment_host_seconds:.2f} ms to launch)")

    flops_per_view = count_flops(model.encoder, (3, 32, 32))
    peak = device_peak_flops(device)
    achieved = training_flops_per_second(flops_per_view, 2 * batch_size / step_seconds)  # two views per image
    model_only_achieved = training_flops_per_second(flops_per_view, 2 * batch_size / model_seconds)
    return {
        "mode": "device",
        "machine": machine(device),
        "device": str(device),
        "arch": arch,
        "batch_size": batch_size,
        "dataset_size": dataset_size,
        "steps": steps,
        "settings": {"bf16": settings.autocast_bf16, "channels_last": settings.channels_last, "compile": settings.compile,
                     "views_ahead": ahead},
        "warmup_steps": warmup_steps,
        "warmup_seconds": compile_seconds,
        "epoch_seconds": epoch_seconds,
        "ms_per_step": 1000 * step_seconds,
        "images_per_second": steps * batch_size / epoch_seconds,
        "gflops_per_view": flops_per_view / 1e9,
        "achieved_tflops": achieved / 1e12,
        "peak_tflops": peak / 1e12 if peak else None,
        "mfu": achieved / peak if peak else None,
        "model_only_ms_per_step": 1000 * model_seconds,
        "model_only_mfu": model_only_achieved / peak if peak else None,
        "augment_ms": 1000 * augment_seconds,
        "augment_host_ms": 1000 * augment_host_seconds,
        "augment_fraction": augment_seconds / step_seconds,
        "final_loss": outcome["result"].epoch_losses[-1],
    }


# ------------------------------------------------------------------------------------ cpu mode


def cpu_spec(batch_size: int) -> RunSpec:
    return RunSpec.model_validate({
        "dataset": {"name": "shapes", "image_size": 32},
        "model": {"arch": "small_cnn"},
        "train": {"epochs": 1, "batch_size": batch_size, "lr": 1.0, "optimizer": "lars", "warmup_epochs": 0,
                  "precision": "fp32", "compile": "off", "checkpoint_minutes": 10_000},
        "augment": {"protocol": "both_branches", "ops": ["crop", "color"]},
    })


def torchvision_views(spec: RunSpec):
    """The DataLoader side's per-image pipeline: the same crop and colour settings as the ablate side's spec."""
    return torchvision_simclr_views(spec.dataset.image_size, Crop.from_spec(spec.augment), Color.from_spec(spec.augment),
                                    blur=None, to_float=True)


def _forever(loader) -> Iterator:
    while True:
        yield from loader


def cpu_benchmark(batch_size: int = 256, steps: int = 12, workers: int | None = None, dataset_size: int | None = None) -> dict[str, Any]:
    """images/s of ablate's training loop vs the same model, loss and optimiser fed by a DataLoader.

    Both train a fresh copy of the same network (same seed) for `steps` steps on the same shapes
    images, after an untimed warm-up (2 steps; for the DataLoader this also starts its workers,
    which are persistent). The DataLoader side is timed from its first timed batch to its last
    optimiser step; worker start-up is excluded.
    """
    from ablate.data import load_dataset
    from ablate.methods.optim import build_optimizer, build_schedule

    device = torch.device("cpu")
    keep_freed_memory()  # as ablate's CPU runs do (ablate/run.py); before the DataLoader forks, so its workers too
    workers = workers if workers is not None else core_count()
    spec = cpu_spec(batch_size)
    dataset_size = dataset_size or steps * batch_size
    spec = spec.model_copy(update={"dataset": spec.dataset.model_copy(update={"train_size": dataset_size, "test_size": 10})})
    images = load_dataset(spec.dataset).train.images
    settings = device_settings(spec, device)
    info = machine(device)

    # ablate: the real loop on (warm-up + timed) steps' worth of images.
    seed_everything(0)
    model, step_loss = build_trainable(spec, 10, settings)
    train(model, step_loss, ImageData(images[: 2 * batch_size], torch.zeros(2 * batch_size, dtype=torch.long)), spec, settings)
    timed = ImageData(images[: steps * batch_size], torch.zeros(steps * batch_size, dtype=torch.long))
    ablate_seconds = _timed(device, lambda: train(model, step_loss, timed, spec, settings))

    # torchvision: the same SimCLR model, NT-Xent, LARS and schedule; views from the DataLoader.
    seed_everything(0)
    model, _ = build_trainable(spec, 10, settings)
    optimizer = build_optimizer(model, spec.train)
    schedule = build_schedule(optimizer, spec.train, steps)
    loader = torch.utils.data.DataLoader(
        TwoViewDataset(images[: steps * batch_size], torchvision_views(spec)), batch_size=batch_size, shuffle=True, drop_last=True,
        num_workers=workers, persistent_workers=workers > 0, prefetch_factor=4 if workers > 0 else None,
        generator=torch.Generator().manual_seed(0),
    )
    batches = _forever(loader)

    def torchvision_step() -> None:
        view1, view2 = next(batches)
        loss = model.loss((view1, view2), torch.empty(0, dtype=torch.long))  # SimCLR's loss reads no labels
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()

    for _ in range(2):
        torchvision_step()
    torchvision_seconds = _timed(device, lambda: [torchvision_step() for _ in range(steps)])

    images_done = steps * batch_size
    ablate_rate = images_done / ablate_seconds
    torchvision_rate = images_done / torchvision_seconds
    info["load average (1 min, at end)"] = load_average()
    return {
        "mode": "cpu",
        "machine": info,
        "batch_size": batch_size,
        "steps": steps,
        "workers": workers,
        "ablate_images_per_second": ablate_rate,
        "torchvision_images_per_second": torchvision_rate,
        "ratio": ablate_rate / torchvision_rate,
    }


# ------------------------------------------------------------------------------------- output


def markdown(results: dict[str, Any]) -> str:
    lines = []
    if results["mode"] == "device":
        mfu = results["mfu"]
        model_mfu = "n/a" if results["model_only_mfu"] is None else f"{100 * results['model_only_mfu']:.1f} %"
        peak = "unknown device" if results["peak_tflops"] is None else f"{results['peak_tflops']:.0f} TFLOP/s"
        lines += [
            f"# Training benchmark: {results['arch']} SimCLR step on {results['machine'].get('gpu', results['device'])}",
            "",
            f"ablate's training loop (`ablate.methods.train.train`): batch {results['batch_size']}, two views made on the "
            "device by ViewMaker (both_branches: crop, color s=1, blur), LARS, "
            f"{'bf16 autocast' if results['settings']['bf16'] else 'fp32'}, "
            f"{'channels_last' if results['settings']['channels_last'] else 'NCHW'}, "
            f"torch.compile {'on' if results['settings']['compile'] else 'off'}, views made "
            f"{'one step ahead on a side stream' if results['settings']['views_ahead'] else 'in the step'}; random uint8 data of CIFAR-10's shape "
            f"({results['dataset_size']:,}×3×32×32) preloaded on the device. One timed epoch of {results['steps']} steps "
            f"after {results['warmup_steps']} warm-up steps (compilation included there: {results['warmup_seconds']:.1f} s).",
            "",
            "| metric | value | target |",
            "|---|---:|---:|",
            f"| ms per step | {results['ms_per_step']:.2f} | |",
            f"| images/s (two views each) | {results['images_per_second']:,.0f} | |",
            f"| model GFLOP per view (forward) | {results['gflops_per_view']:.3f} | |",
            f"| achieved TFLOP/s (3 × forward × 2 views) | {results['achieved_tflops']:.1f} | |",
            f"| MFU vs dense bf16 peak ({peak}) | {'n/a' if mfu is None else f'{100 * mfu:.1f} %'} | ≥ 35 % |",
            f"| one CIFAR-10 epoch ({results['steps']} steps of {results['batch_size']}) | {results['epoch_seconds']:.2f} s | ≤ 1.5 s |",
            f"| views of one batch (ViewMaker.pair; host time to launch it) | {results['augment_ms']:.2f} ms "
            f"({results['augment_host_ms']:.2f} ms) | |",
            f"| share of a step making the views | {100 * results['augment_fraction']:.1f} % | ≤ 10 % |",
            f"| the same loop with fixed views (model, loss, LARS only): ms per step | {results['model_only_ms_per_step']:.2f} | |",
            f"| the same loop with fixed views: MFU | {model_mfu} | |",
        ]
    else:
        lines += [
            "# Training benchmark (CPU): ablate's step vs the same model fed by a torchvision DataLoader",
            "",
            f"SimCLR, small CNN, 32 px `shapes` images, batch {results['batch_size']}, {results['steps']} timed steps each "
            "after 2 warm-up steps, same process. ablate: the real training loop, views made by ViewMaker on the whole "
            "uint8 batch in memory (crop + flip, color s=1 + grayscale). torchvision: per-image transforms.v2 "
            "(RandomResizedCrop, flip, ColorJitter p=0.8, Grayscale p=0.2) in a DataLoader with "
            f"{results['workers']} persistent workers (start-up excluded); same network, NT-Xent, LARS and schedule.",
            "",
            "| pipeline | images/s |",
            "|---|---:|",
            f"| ablate (ViewMaker, in-process) | {results['ablate_images_per_second']:,.0f} |",
            f"| torchvision DataLoader ({results['workers']} workers) | {results['torchvision_images_per_second']:,.0f} |",
            f"| ratio ablate / torchvision | {results['ratio']:.2f}× |",
        ]
    lines += ["", "| machine | |", "|---|---|"] + [f"| {key} | {value} |" for key, value in results["machine"].items()]
    return "\n".join(lines) + "\n"


def write_markdown(results: dict[str, Any], out: Path) -> Path:
    return write_text(out, markdown(results))


def write_text(out: Path, text: str) -> Path:
    """A benchmark's table, written atomically."""
    from ablate.store import write_bytes_atomic

    out = Path(out)
    write_bytes_atomic(out, text.encode("utf-8"))
    return out


def default_out(device: torch.device) -> Path:
    return Path("benchmarks") / "results" / f"train-{torch.device(device).type}.md"


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def train_mode(device: torch.device, mode: str) -> str:
    """'device' (ResNet-18 step on data preloaded on the device) on CUDA, 'cpu' (vs a DataLoader) on a CPU, unless forced."""
    return mode if mode != "auto" else ("device" if device.type == "cuda" else "cpu")


def run_train_benchmark(device: str | torch.device | None = None, mode: str = "auto", out: Path | None = None, **options) -> dict[str, Any]:
    """`ablate bench train`: device mode on CUDA, cpu mode on a CPU (mode='device'/'cpu' forces one)."""
    device = torch.device(device or default_device())
    chosen = train_mode(device, mode)
    results = device_benchmark(device, **options) if chosen == "device" else cpu_benchmark(**options)
    write_markdown(results, Path(out) if out else default_out(device))
    return results


class BenchmarkUnavailable(Exception):
    """benchmarks/bench_augment.py is not there (ablate installed from a wheel, not run from a checkout)."""


def augment_script_candidates() -> list[Path]:
    return [Path(__file__).resolve().parents[1] / "benchmarks" / "bench_augment.py", Path.cwd() / "benchmarks" / "bench_augment.py"]


def load_augment_benchmark():
    """benchmarks/bench_augment.py of this checkout (it lives beside the package, not inside it)."""
    import importlib.util

    for path in augment_script_candidates():
        if path.is_file():
            spec = importlib.util.spec_from_file_location("ablate_bench_augment", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)  # type: ignore[union-attr]
            return module
    raise BenchmarkUnavailable("benchmarks/bench_augment.py not found: run `ablate bench augment` from an ablate checkout")


def bench_command(args) -> int:
    """`ablate bench train|augment` (the CLI's handler): run, print the table, write it to --out."""
    device = torch.device(args.device or default_device())
    if args.what == "augment":
        module = load_augment_benchmark()
        if args.keep_freed_memory:
            keep_freed_memory()  # process-wide, before any pipeline allocates or forks
        results = module.run_benchmark(device, args.batch or 256, args.repeats)
        text = module.markdown(results)
        out = write_text(Path(args.out) if args.out else Path("benchmarks") / "results" / f"augment-{device.type}.md", text)
    else:
        options: dict[str, Any] = {}
        chosen = train_mode(device, args.mode)
        if args.batch:
            options["batch_size"] = args.batch
        if chosen == "device" and args.no_compile:
            options["compile_model"] = False
        if chosen == "cpu" and args.steps:
            options["steps"] = args.steps
        out = Path(args.out) if args.out else default_out(device)
        results = run_train_benchmark(device, chosen, out, **options)  # chosen is not "auto": not resolved again
        text = markdown(results)
    print(text)
    print(f"written to {out}")
    return 0
