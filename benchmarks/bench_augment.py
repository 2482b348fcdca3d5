"""Benchmark: SimCLR's two views (crop + color(s=1) + grayscale + blur) by ablate vs the alternatives.

Times, in one process, on the same input (a batch of float32 3×32×32 images in [0, 1]):

  (a) ablate     ``ViewMaker`` (both_branches, ops [crop, color, blur]), the whole batch at once.
  (b) kornia     ``kornia.augmentation`` modules with the same settings in an ``ImageSequential``
                 (RandomResizedCrop, RandomHorizontalFlip, ColorJitter p=0.8, RandomGrayscale p=0.2,
                 RandomGaussianBlur p=0.5), called once per view on the batch.
  (c) torchvision per-image ``torchvision.transforms.v2`` (the usual CIFAR SimCLR pipeline), two views per
                 image, in a DataLoader with one worker per core (CPU runs only). Worker start-up is
                 excluded fairly: workers are persistent and a first, untimed pass starts them; each
                 timed pass is a fresh epoch over the batch's images (8 loader batches per worker, so
                 every worker is busy), from ``iter(loader)`` to the last images received.

Each is warmed up, then repeated; the median is reported (ms for both views of the batch). On CUDA
the timings synchronise the device. Run:

    python benchmarks/bench_augment.py [--device cuda] [--batch 256] [--repeats 20] [--out FILE.md]

``run_benchmark(device, batch_size, repeats)`` returns the same numbers as a dict (``ablate bench augment``).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import kornia
import kornia.augmentation as K
import torch
import torchvision
import torchvision.transforms.v2 as T
from torch.utils.data import DataLoader, Dataset

from ablate.augment import ViewMaker
from ablate.config import AugmentSpec

SIZE = 32


# ----------------------------------------------------------------------------------- pipelines


def ablate_views(device: torch.device) -> Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    maker = ViewMaker(AugmentSpec(protocol="both_branches", ops=["crop", "color", "blur"], color_strength=1.0))
    generator = torch.Generator(device=device).manual_seed(0)
    return lambda x: maker.pair(x, generator)


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


def torchvision_transform() -> T.Compose:
    s = 1.0
    return T.Compose(
        [
            T.RandomResizedCrop(SIZE, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), antialias=True),
            T.RandomHorizontalFlip(p=0.5),
            T.RandomApply([T.ColorJitter(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s)], p=0.8),
            T.RandomGrayscale(p=0.2),
            T.RandomApply([T.GaussianBlur(3, sigma=(0.1, 2.0))], p=0.5),
        ]
    )


class TwoViews(Dataset):
    """Per-image dataset returning two independently augmented views (what a SimCLR DataLoader does)."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images
        self.transform = torchvision_transform()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.images[index]
        return self.transform(image), self.transform(image)


def torchvision_loader(images: torch.Tensor, workers: int) -> Callable[[], int]:
    """One timed pass = one fresh epoch over the images through persistent workers; returns images seen."""
    loader = DataLoader(
        TwoViews(images),
        batch_size=max(1, len(images) // (8 * max(workers, 1))),
        shuffle=False,
        num_workers=workers,
        persistent_workers=workers > 0,
    )

    def one_pass() -> int:
        return sum(int(view1.shape[0]) for view1, _ in loader)

    return one_pass


# -------------------------------------------------------------------------------------- timing


def median_ms(fn: Callable[[], object], device: torch.device, warmup: int, repeats: int) -> float:
    """Median wall time of fn in ms, after warm-up; synchronises CUDA around each call."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def machine(device: torch.device) -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cores": str(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()),
        "torch threads": str(torch.get_num_threads()),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "kornia": kornia.__version__,
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def run_benchmark(device: str | torch.device = "cpu", batch_size: int = 256, repeats: int = 20) -> dict:
    """Median ms for both views of one batch by (a) ablate, (b) kornia.augmentation, (c) torchvision (CPU)."""
    device = torch.device(device)
    images = torch.rand((batch_size, 3, SIZE, SIZE), generator=torch.Generator().manual_seed(0))
    on_device = images.to(device)
    results: dict = {"machine": machine(device), "batch": batch_size, "repeats": repeats, "ms": {}}
    ablate = ablate_views(device)
    korn = kornia_views(device)
    results["ms"]["ablate"] = median_ms(lambda: ablate(on_device), device, warmup=5, repeats=repeats)
    results["ms"]["kornia.augmentation"] = median_ms(lambda: korn(on_device), device, warmup=3, repeats=repeats)
    if device.type == "cpu":
        workers = int(results["machine"]["cores"])
        one_pass = torchvision_loader(images, workers)
        results["ms"]["torchvision DataLoader"] = median_ms(one_pass, device, warmup=1, repeats=max(3, repeats // 4))
        results["workers"] = workers
    if device.type == "cuda":
        big = torch.rand((512, 3, SIZE, SIZE), device=device)
        results["ms ablate batch 512"] = median_ms(lambda: ablate(big), device, warmup=5, repeats=repeats)
    return results


def markdown(results: dict) -> str:
    ms = results["ms"]
    lines = [f"# Augmentation benchmark: two SimCLR views of a batch of {results['batch']} float32 3×{SIZE}×{SIZE}", ""]
    lines += ["crop + flip + color(s=1) p=0.8 + grayscale p=0.2 + blur p=0.5, both views; median of "
              f"{results['repeats']} repeats after warm-up.", ""]
    lines += ["| machine | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in results["machine"].items()] + [""]
    lines += ["| pipeline | ms (both views) | ablate is faster by |", "|---|---:|---:|"]
    for name, value in ms.items():
        ratio = value / ms["ablate"]
        lines.append(f"| {name} | {value:.2f} | {ratio:.1f}× |")
    if "workers" in results:
        lines += ["", f"torchvision: per-image v2 transforms in a DataLoader with {results['workers']} persistent "
                  "workers (start-up excluded: an untimed first epoch starts them; each timed pass is one epoch "
                  "over the batch's images in 8 loader batches per worker)."]
    if "ms ablate batch 512" in results:
        lines += ["", f"ablate, both views of a batch of 512: {results['ms ablate batch 512']:.2f} ms"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", type=Path, default=None, help="also write the Markdown table here")
    args = parser.parse_args()
    text = markdown(run_benchmark(args.device, args.batch, args.repeats))
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_suffix(args.out.suffix + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, args.out)


if __name__ == "__main__":
    main()
