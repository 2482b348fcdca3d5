"""What both benchmarks share: the machine they ran on, and the torchvision pipeline a user would otherwise run.

Used by ablate/bench.py (`ablate bench train`) and benchmarks/bench_augment.py (`ablate bench
augment`). Needs neither pydantic nor the rest of ablate, because bench_augment.py also runs on a
bare GPU machine with only torch, torchvision and kornia installed.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch
import torchvision.transforms.v2 as T
from torch.utils.data import Dataset

from ablate.augment.blur import Blur, kernel_size
from ablate.augment.color import Color, factor_range, hue_range
from ablate.augment.crop import Crop
from ablate.cpu_memory import freed_memory_kept


def load_average() -> str:
    """1-minute load average (other processes share the machine), as text, or n/a."""
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "n/a"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def core_count() -> int:
    """Cores this process may use (its CPU affinity), not all of the machine's."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def machine(device: torch.device) -> dict[str, str]:
    """CPU, cores, torch threads and library versions, and the GPU on CUDA or the C allocator's setting on CPU."""
    import kornia
    import torchvision

    info = {"cpu": cpu_model(), "cores": str(core_count()), "torch threads": str(torch.get_num_threads()),
            "torch": torch.__version__, "torchvision": torchvision.__version__, "kornia": kornia.__version__}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    else:  # process-wide, so every pipeline of a benchmark shares it
        info["malloc"] = "glibc, freed memory kept (ablate.cpu_memory)" if freed_memory_kept() else "default"
    return info


def torchvision_simclr_views(size: int, crop: Crop, color: Color, blur: Blur | None, to_float: bool) -> T.Compose:
    """torchvision.transforms.v2 per image, with the settings of ablate's own operators (crop, color [, blur]).

    The ranges are read from the operators the ablate side of a benchmark uses, so the two sides
    cannot drift apart. ``to_float``: for uint8 input, convert to float in [0, 1] at the end.
    """
    factors = factor_range(color.strength)
    steps = [
        T.RandomResizedCrop(size, scale=crop.scale, ratio=crop.ratio, antialias=True),
        T.RandomHorizontalFlip(p=crop.flip_p),
        T.RandomApply([T.ColorJitter(factors, factors, factors, hue_range(color.strength))], p=color.jitter_p),
        T.RandomGrayscale(p=color.grayscale_p),
    ]
    if blur is not None:
        steps.append(T.RandomApply([T.GaussianBlur(kernel_size(size), sigma=blur.sigma)], p=blur.p))
    if to_float:
        steps.append(T.ToDtype(torch.float32, scale=True))
    return T.Compose(steps)


class TwoViewDataset(Dataset):
    """Per image, two independently augmented views: what a SimCLR DataLoader serves."""

    def __init__(self, images: torch.Tensor, transform: T.Compose) -> None:
        self.images = images
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.images[index]
        return self.transform(image), self.transform(image)
