"""`shapes`: the built-in dataset. Ten classes told apart by shape or texture only, generated from a seed.

Why it looks like this: SimCLR's Figure 5 shows that random crops alone make a weak contrastive
task, because two crops of one image share its colour distribution and the network can match them
by colour alone; colour distortion removes that shortcut. Here every image gets its own random
two-colour palette (foreground and background drawn independently of the class), so colour
identifies an *image* perfectly and says nothing about its *class*: a model that matches views by
colour learns features useless for the labels, exactly the failure the paper describes.

Classes 0-5 are shapes (random position, size and rotation), 6-9 are textures filling the image
(random orientation and frequency). Everything is rendered in one vectorised pass at twice the
resolution and average-pooled, so edges are anti-aliased. 5,000 images at 32 px take about a second.
"""

from __future__ import annotations

import hashlib
import math
from functools import lru_cache

import torch
import torch.nn.functional as F

from ablate.config import DatasetSpec
from ablate.data import DatasetSplits, ImageData, cache_root

CLASSES = ["disk", "square", "triangle", "plus", "ring", "star", "stripes", "checker", "dots", "waves"]
DEFAULT_TRAIN_SIZE = 4000
DEFAULT_TEST_SIZE = 1000
GENERATOR_VERSION = 3  # bump when the drawing changes, so old caches are not reused
SUPERSAMPLE = 2
GRAIN_STD = 0.1  # on the [0, 1] scale


def _uniform(n: int, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator)


def _local_coordinates(n: int, side: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image coordinates: random centre, scale and rotation applied to the pixel grid (N×S×S each)."""
    axis = (torch.arange(side, dtype=torch.float32) + 0.5) / side * 2 - 1
    v, u = torch.meshgrid(axis, axis, indexing="ij")
    centre_x = _uniform(n, -0.25, 0.25, generator)[:, None, None]
    centre_y = _uniform(n, -0.25, 0.25, generator)[:, None, None]
    scale = _uniform(n, 0.5, 0.8, generator)[:, None, None]
    angle = _uniform(n, 0, 2 * math.pi, generator)[:, None, None]
    du, dv = u - centre_x, v - centre_y
    x = (torch.cos(angle) * du + torch.sin(angle) * dv) / scale
    y = (-torch.sin(angle) * du + torch.cos(angle) * dv) / scale
    return x, y


def _masks(labels: torch.Tensor, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Foreground mask (N×S×S, bool) of each image's class, computed for all classes at once."""
    n = labels.shape[0]
    radius = torch.sqrt(x**2 + y**2)
    phi = torch.atan2(y, x)
    frequency = _uniform(n, 2.5, 4.0, generator)[:, None, None]  # texture periods per unit length
    sqrt3 = math.sqrt(3.0)
    candidates = torch.stack(
        [
            radius < 1.0,  # disk
            torch.maximum(x.abs(), y.abs()) < 0.8,  # square
            (y > -0.5) & (sqrt3 * x + y < 1.0) & (-sqrt3 * x + y < 1.0),  # triangle
            ((x.abs() < 0.28) & (y.abs() < 1.0)) | ((y.abs() < 0.28) & (x.abs() < 1.0)),  # plus
            (radius < 1.0) & (radius > 0.55),  # ring
            radius < 0.55 + 0.45 * torch.cos(5 * phi),  # five-pointed star
            torch.sin(frequency * math.pi * x) > 0,  # stripes
            torch.sin(frequency * math.pi * x) * torch.sin(frequency * math.pi * y) > 0,  # checker
            torch.cos(frequency * math.pi * x) + torch.cos(frequency * math.pi * y) > 1.0,  # dots
            torch.sin(frequency * math.pi * (x + 0.35 * torch.sin(2.5 * y))) > 0,  # waves
        ],
        dim=1,
    )
    return candidates[torch.arange(n), labels]


def _palettes(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Independent random foreground/background colours per image, kept apart in brightness."""
    foreground = torch.rand(n, 3, generator=generator)
    background = torch.rand(n, 3, generator=generator)
    weights = torch.tensor([0.299, 0.587, 0.114])
    gap = (foreground @ weights) - (background @ weights)
    # Keep the shape visible: where the two colours are close in luminance, push them apart.
    push = torch.where(gap.abs() < 0.25, 0.25 * torch.where(gap >= 0, 1.0, -1.0) - gap, torch.zeros_like(gap))
    foreground = (foreground + push[:, None] / 2).clamp(0, 1)
    background = (background - push[:, None] / 2).clamp(0, 1)
    return foreground, background


def _grain(n: int, side: int, generator: torch.Generator) -> torch.Tensor:
    """Fixed per-image film grain (N×1×S×S, the same in all three channels), part of the image itself.

    Why: it gives every image a class-irrelevant pixel-level fingerprint. When both views keep the
    same geometry (colour distortion alone), matching the grain solves the contrastive task without
    the shape, as pixel-level cues do on natural images; a random crop resamples the pixels and the
    grain no longer lines up, so only the shape is left to match. Monochrome, so colour distortion
    does not remove it.
    """
    return GRAIN_STD * torch.randn(n, 1, side, side, generator=generator)


def generate(n: int, image_size: int, seed: int) -> ImageData:
    """n images (uint8 N×3×H×W) with balanced labels, determined by the seed alone."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % len(CLASSES)
    labels = labels[torch.randperm(n, generator=generator)]
    side = image_size * SUPERSAMPLE
    x, y = _local_coordinates(n, side, generator)
    mask = _masks(labels, x, y, generator).float()[:, None]
    foreground, background = _palettes(n, generator)
    images = mask * foreground[:, :, None, None] + (1 - mask) * background[:, :, None, None]
    images = F.avg_pool2d(images, SUPERSAMPLE)
    images = images + _grain(n, image_size, generator)
    return ImageData((images.clamp(0, 1) * 255).round().to(torch.uint8), labels.to(torch.int64))


def _cache_key(n: int, image_size: int, seed: int) -> str:
    text = f"shapes-v{GENERATOR_VERSION}-{n}-{image_size}-{seed}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@lru_cache(maxsize=4)
def _generate_cached(n: int, image_size: int, seed: int) -> ImageData:
    """Generated once per machine: read from the cache folder when present, else made and saved there."""
    from ablate.store import write_bytes_atomic  # local import: data must not depend on store at import

    path = cache_root() / f"shapes-{_cache_key(n, image_size, seed)}.pt"
    if path.exists():
        try:
            saved = torch.load(path, weights_only=True)
            return ImageData(saved["images"], saved["labels"])
        except Exception:  # a damaged cache is regenerated, never trusted
            path.unlink(missing_ok=True)
    data = generate(n, image_size, seed)
    import io

    buffer = io.BytesIO()
    torch.save({"images": data.images, "labels": data.labels}, buffer)
    try:
        write_bytes_atomic(path, buffer.getvalue())
    except OSError:
        pass  # an unwritable cache only costs regeneration time
    return data


def load(spec: DatasetSpec) -> DatasetSplits:
    train_size = spec.train_size or DEFAULT_TRAIN_SIZE
    test_size = spec.test_size or DEFAULT_TEST_SIZE
    data = _generate_cached(train_size + test_size, spec.image_size, spec.seed)
    train = ImageData(data.images[:train_size], data.labels[:train_size])
    test = ImageData(data.images[train_size:], data.labels[train_size:])
    return DatasetSplits(pretrain=train, train=train, test=test, classes=list(CLASSES))
