"""Benchmark: SimCLR's two views (crop + color(s=1) + grayscale + blur) by ablate vs the alternatives.

Times, in one process, on the same input (a batch of float32 3×32×32 images in [0, 1]):

  (a) ablate     ``ViewMaker`` (both_branches, ops [crop, color, blur]), the whole batch at once;
                 as a run computes it by default (eager) and with ABLATE_COMPILE_COLOR=1 (the colour
                 distortion through torch.compile; its one-off compile time is reported apart).
  (b) kornia     ``kornia.augmentation`` modules with the same settings in an ``ImageSequential``
                 (RandomResizedCrop, RandomHorizontalFlip, ColorJitter p=0.8, RandomGrayscale p=0.2,
                 RandomGaussianBlur p=0.5), called once per view on the batch.
  (c) torchvision per-image ``torchvision.transforms.v2`` (the usual CIFAR SimCLR pipeline), two views per
                 image, in a DataLoader with one worker per core (CPU runs only). Worker start-up is
                 excluded fairly: workers are persistent and a first, untimed pass starts them; each
                 timed pass is a fresh epoch over the batch's images (8 loader batches per worker, so
                 every worker is busy), from ``iter(loader)`` to the last images received.

Each is warmed up, then all are timed round-robin; the median and the best repeat are reported (ms for both views of the batch). On CUDA
the timings synchronise the device. Run:

    python benchmarks/bench_augment.py [--device cuda] [--batch 256] [--repeats 20] [--out FILE.md] [--keep-freed-memory]

By default every pipeline runs with the C allocator as the process has it. ablate's own CPU runs
keep freed memory in the process (ablate/cpu_memory.py), which removes the page faults of fresh
batch-sized tensors; ``--keep-freed-memory`` measures all three pipelines that way (it is
process-wide, so it cannot be given to one pipeline alone in one process).

``run_benchmark(device, batch_size, repeats)`` returns the same numbers as a dict (``ablate bench augment``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any
from pathlib import Path

import kornia.augmentation as K
import torch
import torchvision
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing ablate
from ablate import bench_common
from ablate.augment import ViewMaker
from ablate.augment.blur import Blur
from ablate.augment.color import COMPILED_COLOR, Color
from ablate.augment.crop import Crop
from ablate.bench_common import TwoViewDataset, load_average, torchvision_simclr_views
from ablate.cpu_memory import keep_freed_memory

SIZE = 32
COMPILED = "ablate, colour compiled"  # ABLATE_COMPILE_COLOR=1


# ----------------------------------------------------------------------------------- pipelines


def ablate_views(device: torch.device, compile_color: bool = False) -> Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    maker = ablate_maker(compile_color)
    generator = torch.Generator(device=device).manual_seed(0)
    return lambda x: maker.pair(x, generator)


def ablate_maker(compile_color: bool = False) -> ViewMaker:
    """ViewMaker(both_branches, [crop, color(s=1), blur]) from the grid spec; from the same operators where
    pydantic (needed only to validate grid files) is missing, e.g. on a bare GPU machine.

    ``compile_color`` sets the colour operator's compile switch (what ABLATE_COMPILE_COLOR=1 does in
    a run) explicitly, so the variable in the benchmark's own environment changes nothing.
    """
    try:
        from ablate.config import AugmentSpec
    except ImportError:
        maker = ViewMaker.from_operators("both_branches", [Crop(), Color(strength=1.0), Blur()])
    else:
        maker = ViewMaker(AugmentSpec(protocol="both_branches", ops=["crop", "color", "blur"], color_strength=1.0))
    for op in maker.ops:
        if isinstance(op, Color):
            op.compile = compile_color
    return maker


def kornia_views(device: torch.device) -> Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    s = 1.0
    pipeline = K.ImageSequential(
        K.RandomResizedCrop((SIZE, SIZE), scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)),
        K.RandomHorizontalFlip(p=0.5),
        K.ColorJitter(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s, p=0.8),
        K.RandomGrayscale(p=0.2),
        K.RandomGaussianBlur((3, 3), (0.1, 2.0), p=0.5),
    ).to(device)
    return lambda x: (pipeline(x), pipeline(x))


def torchvision_loader(images: torch.Tensor, workers: int) -> Callable[[], int]:
    """One timed pass = one fresh epoch over the images through persistent workers; returns images seen."""
    loader = DataLoader(
        TwoViewDataset(images, torchvision_simclr_views(SIZE, Crop(), Color(strength=1.0), Blur(), to_float=False)),
        batch_size=max(1, len(images) // (8 * max(workers, 1))),
        shuffle=False,
        num_workers=workers,
        persistent_workers=workers > 0,
    )

    def one_pass() -> int:
        return sum(int(view1.shape[0]) for view1, _ in loader)

    return one_pass


# -------------------------------------------------------------------------------------- timing


def interleaved_medians(
    fns: dict[Any, Callable[[], object]], device: torch.device, warmup: int, repeats: dict[Any, int]
) -> dict[Any, float]:
    """Median ms of each fn (``interleaved_times``)."""
    return {name: statistics.median(values) for name, values in interleaved_times(fns, device, warmup, repeats).items()}


def interleaved_times(
    fns: dict[Any, Callable[[], object]], device: torch.device, warmup: int, repeats: dict[Any, int]
) -> dict[Any, list[float]]:
    """Wall times (ms) of each fn after warm-up, measured round-robin (a, b, c, a, b, c, ...).

    Interleaving makes a change of machine load (other processes on a shared box) hit every
    pipeline alike instead of whichever happened to run during it. CUDA is synchronised around each call.
    """
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    sync()
    times: dict[Any, list[float]] = {name: [] for name in fns}
    for round_ in range(max(repeats.values())):
        for name, fn in fns.items():
            if round_ >= repeats[name]:
                continue
            start = time.perf_counter()
            fn()
            sync()
            times[name].append((time.perf_counter() - start) * 1000)
    return times


def machine(device: torch.device) -> dict[str, str]:
    return {**bench_common.machine(device), "device": str(device)}


def run_benchmark(device: str | torch.device = "cpu", batch_size: int = 256, repeats: int = 20) -> dict:
    """Median ms for both views of one batch by (a) ablate, (b) kornia.augmentation, (c) torchvision (CPU)."""
    device = torch.device(device)
    images = torch.rand((batch_size, 3, SIZE, SIZE), generator=torch.Generator().manual_seed(0))
    on_device = images.to(device)
    results: dict = {"machine": machine(device), "batch": batch_size, "repeats": repeats, "ms": {}}
    ablate = ablate_views(device)
    compiled = ablate_views(device, compile_color=True)
    start = time.perf_counter()
    compiled(on_device)  # compiles (torch.compile's on-disk cache as this machine has it)
    results["compile s"] = time.perf_counter() - start
    results["compile failure"] = COMPILED_COLOR.failure  # then that row ran eagerly, and the table says so
    korn = kornia_views(device)
    fns: dict[str, Callable[[], object]] = {
        "ablate": lambda: ablate(on_device),
        COMPILED: lambda: compiled(on_device),
        "kornia.augmentation": lambda: korn(on_device),
    }
    counts = dict.fromkeys(fns, repeats)
    if device.type == "cpu":
        workers = int(results["machine"]["cores"])
        fns["torchvision DataLoader"] = torchvision_loader(images, workers)
        counts["torchvision DataLoader"] = max(3, repeats // 2)
        results["workers"] = workers
    results["load before"] = load_average()
    times = interleaved_times(fns, device, warmup=3, repeats=counts)
    results["ms"] = {name: statistics.median(values) for name, values in times.items()}
    # The fastest repeat too: on a shared machine other processes only ever add time, so the best
    # of each pipeline is its least disturbed run (the median is the typical one).
    results["ms best"] = {name: min(values) for name, values in times.items()}
    results["ms per stage"] = ablate_stage_ms(on_device, repeats)
    results["load after"] = load_average()
    if device.type == "cuda":
        big = torch.rand((512, 3, SIZE, SIZE), device=device)
        at_512 = interleaved_medians({"eager": lambda: ablate(big), "compiled": lambda: compiled(big)}, device, 5,
                                     {"eager": repeats, "compiled": repeats})
        results["ms ablate batch 512"], results["ms ablate colour compiled batch 512"] = at_512["eager"], at_512["compiled"]
        results["ms resnet18 step batch 512"] = resnet18_step_ms(device, 512, repeats)
        results["cpu vs device max difference"] = check_device(device)
        results["device syncs per pair"] = count_syncs(device)
    return results


def ablate_stages(images: torch.Tensor, compile_color: bool = False) -> dict[str, Callable[[], object]]:
    """ablate's pair of views cut into stages: drawing every parameter, then each operator on both views.

    Each operator runs on the previous one's output (crop on the images, color on the crops, ...)
    with parameters drawn once from a generator seeded 0, so the last stage returns the very views
    ``ViewMaker.pair`` makes from that seed, and the stages add up to one pair of views (less
    ``ViewMaker``'s chunking and Python glue).
    """
    maker = ablate_maker(compile_color)
    batch, _, height, width = images.shape
    generator = torch.Generator(device=images.device).manual_seed(0)
    params = maker.sample_pair(batch, height, width, generator, images.device)
    stages: dict[str, Callable[[], object]] = {
        "draw parameters": lambda: maker.sample_pair(batch, height, width, generator, images.device)
    }
    inputs = [images, images]  # view 1, view 2
    for index, op in enumerate(maker.ops):
        views = (params.view1.ops[index], params.view2.ops[index])
        stages[op.name] = lambda op=op, inputs=inputs, views=views: [op.apply(x, p) for x, p in zip(inputs, views)]
        inputs = stages[op.name]()
    return stages


def ablate_stage_ms(images: torch.Tensor, repeats: int) -> dict[str, dict[str, float]]:
    """Where ablate's time goes: median ms of each stage (both views), eager and with the colour compiled.

    All stages of both variants are timed in one round-robin, like the pipelines, so that a change
    of machine load hits both columns alike.
    """
    variants = {"eager": ablate_stages(images), "compiled": ablate_stages(images, compile_color=True)}
    fns = {(variant, name): fn for variant, stages in variants.items() for name, fn in stages.items()}
    ms = interleaved_medians(fns, images.device, warmup=3, repeats=dict.fromkeys(fns, repeats))
    return {variant: {name: ms[(variant, name)] for name in stages} for variant, stages in variants.items()}


def resnet18_step_ms(device: torch.device, batch_size: int, repeats: int) -> float:
    """A ResNet-18 SimCLR training step as yardstick (CUDA): CIFAR stem, 2-layer head, NT-Xent, SGD, bf16 autocast.

    Built from torchvision's resnet18 here (not ablate.models) so that the script runs on a machine
    with only torch/torchvision/kornia; it is the network and loss the paper's CIFAR runs use.
    """
    model = torchvision.models.resnet18(num_classes=128)
    model.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    model.maxpool = torch.nn.Identity()
    model.fc = torch.nn.Sequential(torch.nn.Linear(512, 512), torch.nn.ReLU(), torch.nn.Linear(512, 128))
    model = model.to(device).to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    views = torch.rand((2 * batch_size, 3, SIZE, SIZE), device=device).to(memory_format=torch.channels_last)
    targets = torch.arange(2 * batch_size, device=device).roll(batch_size)  # view i's positive is i ± B

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            z = torch.nn.functional.normalize(model(views).float(), dim=1)
        logits = z @ z.T / 0.5
        logits.fill_diagonal_(float("-inf"))
        loss = torch.nn.functional.cross_entropy(logits, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return interleaved_medians({"step": step}, device, warmup=5, repeats={"step": repeats})["step"]


def count_syncs(device: torch.device) -> int:
    """Host-device synchronisations in one ``ViewMaker.pair`` call (torch's sync debug mode, as warnings)."""
    import warnings  # noqa: PLC0415

    maker = ablate_maker()
    images = torch.rand((512, 3, SIZE, SIZE), device=device)
    generator = torch.Generator(device=device).manual_seed(0)
    maker.pair(images, generator)
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            maker.pair(images, generator)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


def check_device(device: torch.device) -> dict[str, float]:
    """Largest difference, per operator, between applying the same (CPU-drawn) parameters on CPU and on device."""
    from ablate.augment import OPERATOR_CLASSES  # noqa: PLC0415

    cpu = torch.device("cpu")
    images = torch.rand((64, 3, SIZE, SIZE), generator=torch.Generator().manual_seed(1))
    differences = {}
    for name, cls in OPERATOR_CLASSES.items():
        op = cls()
        params = op.sample(64, SIZE, SIZE, torch.Generator().manual_seed(2), cpu)
        on_device = op.apply(images.to(device), {k: v.to(device) for k, v in params.items()})
        differences[name] = (on_device.cpu() - op.apply(images, params)).abs().max().item()
        op.sample(64, SIZE, SIZE, torch.Generator(device=device).manual_seed(2), device)  # draws on the device
    params = Color().sample(64, SIZE, SIZE, torch.Generator().manual_seed(2), cpu)
    fused = Color(compile=True).apply(images.to(device), {k: v.to(device) for k, v in params.items()})
    differences["color compiled"] = (fused.cpu() - Color().apply(images, params)).abs().max().item()
    return differences


def markdown(results: dict) -> str:
    ms = results["ms"]
    lines = [f"# Augmentation benchmark: two SimCLR views of a batch of {results['batch']} float32 3×{SIZE}×{SIZE}", ""]
    dataloader_note = f" (the DataLoader: {max(3, results['repeats'] // 2)})" if "torchvision DataLoader" in ms else ""
    lines += ["crop + flip + color(s=1) p=0.8 + grayscale p=0.2 + blur p=0.5, both views; median and best of "
              f"{results['repeats']} repeats{dataloader_note} after warm-up, all pipelines timed round-robin.", ""]
    lines += ["| machine | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in results["machine"].items()] + [""]
    best = results.get("ms best", ms)
    lines += ["| pipeline | ms (both views), median | best | ablate (eager) is faster by, median (best) "
              "| ablate (colour compiled) is faster by, median (best) |", "|---|---:|---:|---:|---:|"]
    for name, value in ms.items():
        ratios = [f"{value / ms[key]:.1f}× ({best[name] / best[key]:.1f}×)" if key in ms else "" for key in ("ablate", COMPILED)]
        lines.append(f"| {name} | {value:.2f} | {best[name]:.2f} | {' | '.join(ratios)} |")
    if results.get("compile failure"):
        lines += ["", f"**torch.compile failed here ({results['compile failure']}): the row '{COMPILED}' ran eagerly.**"]
    if "compile s" in results:
        lines += ["", f"{COMPILED}: the colour distortion through torch.compile (what ABLATE_COMPILE_COLOR=1 does in a "
                  f"run); compiling took {results['compile s']:.1f} s, once per process (with torch.compile's on-disk "
                  "cache as found on this machine), not included above."]
    if "ms per stage" in results:
        stages = results["ms per stage"]
        eager, compiled = stages["eager"], stages["compiled"]
        lines += ["", "Where ablate's time goes (both views; each operator timed alone on the previous one's output):", "",
                  "| ablate stage | ms, eager | ms, colour compiled |", "|---|---:|---:|"]
        lines += [f"| {name} | {value:.2f} | {compiled[name]:.2f} |" for name, value in eager.items()]
        lines.append(f"| sum | {sum(eager.values()):.2f} | {sum(compiled.values()):.2f} |")
        if "torchvision DataLoader" in ms:
            lines += ["", f"For ablate to be 30× faster than the torchvision DataLoader here, a pair of views would have "
                      f"to take at most {ms['torchvision DataLoader'] / 30:.2f} ms."]
    if "workers" in results:
        lines += ["", f"torchvision: per-image v2 transforms in a DataLoader with {results['workers']} persistent "
                  "workers (start-up excluded: an untimed first epoch starts them; each timed pass is one epoch "
                  "over the batch's images in 8 loader batches per worker)."]
    lines += ["", f"1-minute load average before/after: {results['load before']} / {results['load after']} "
              f"(on {results['machine']['cores']} cores; other processes share the machine)."]
    if "ms ablate batch 512" in results:
        aug, step = results["ms ablate batch 512"], results["ms resnet18 step batch 512"]
        lines += ["", f"ablate, both views of a batch of 512: {aug:.2f} ms; a ResNet-18 SimCLR training step on "
                  f"them (CIFAR stem, bf16 autocast, SGD; fwd + bwd + update): {step:.2f} ms; augmentation = "
                  f"{100 * aug / step:.1f} % of a step (target: at most 10 %)."]
        if "ms ablate colour compiled batch 512" in results:
            fused = results["ms ablate colour compiled batch 512"]
            lines += ["", f"{COMPILED}, batch 512: {fused:.2f} ms = {100 * fused / step:.1f} % of that step"
                      + (" (compiling failed: eager)." if results.get("compile failure") else ".")]
        diffs = ", ".join(f"{k} {v:.1e}" for k, v in results["cpu vs device max difference"].items())
        lines += ["", f"Same parameters applied on CPU and on {results['machine']['device']}, largest difference: {diffs}. "
                  f"Host-device synchronisations in one pair of views: {results['device syncs per pair']}."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", type=Path, default=None, help="also write the Markdown table here")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's own)")
    parser.add_argument("--keep-freed-memory", action="store_true",
                        help="CPU: glibc keeps freed memory (as in ablate's runs), for the whole process and so for "
                        "every pipeline, the DataLoader's workers included (default: the allocator as it is)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.keep_freed_memory:
        keep_freed_memory()  # before anything allocates or forks
    text = markdown(run_benchmark(args.device, args.batch, args.repeats))
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_suffix(args.out.suffix + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, args.out)


if __name__ == "__main__":
    main()
