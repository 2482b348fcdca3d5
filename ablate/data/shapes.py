"""`shapes`: the built-in dataset. Ten classes told apart by shape or texture only, generated from a seed.

Why it looks like this: SimCLR's Figure 5 shows that random crops alone make a weak contrastive
task, because two crops of one image share its colour distribution and the network can match them
by colour alone; colour distortion removes that shortcut. Here every image is drawn in its own
random tint (hue, saturation, brightness drawn independently of the class): the shape in the tint,
the background in the same tint at a fifth of its brightness. Colour identifies an *image* and says
nothing about its *class*, so a model that matches views by colour learns features useless for the
labels, exactly the failure the paper describes.

Why one tint and not two independent colours (generator version 3 did that): with two random
colours, the relation between them (their hue difference, their brightness ratio) is a second
fingerprint of the image that colour jitter largely keeps, since it shifts both colours of an image
alike; with it, stronger colour distortion bought SimCLR nothing (README.md, "Design notes").
With one tint the relation is the same in every image, and jitter of growing strength removes a
growing share of the fingerprint (hue shift ±0.2 s of a turn, grayscale).

Classes 0-5 are shapes (random position, size and rotation), 6-9 are textures filling the image
(random orientation and frequency). Everything is rendered in one vectorised pass at twice the
resolution and average-pooled, so edges are anti-aliased; generated sets are cached (ABLATE_CACHE).
"""

from __future__ import annotations

import hashlib
import math
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F

from ablate.config import DatasetSpec
from ablate.data import DatasetSplits, ImageData, cache_root, save_cache

CLASSES = ["disk", "square", "triangle", "plus", "ring", "star", "stripes", "checker", "dots", "waves"]
DEFAULT_TRAIN_SIZE = 4000
DEFAULT_TEST_SIZE = 1000
GENERATOR_VERSION = 4  # the version named in the docs; bump when the drawing changes
# Cache files are keyed by a hash of this file too, so a changed generator never reuses an old cache
# even when the version was not bumped (it happened here: an experiment's cache outlived its code).
SOURCE_FINGERPRINT = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]
SUPERSAMPLE = 2
# Tint ranges (HSV): saturated and bright enough that the hue is well defined and the shape stands out.
SATURATION_RANGE = (0.6, 1.0)
VALUE_RANGE = (0.85, 1.0)
BACKGROUND_BRIGHTNESS = 0.2  # background = tint × this, in every channel


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


def hsv_to_rgb(hue: torch.Tensor, saturation: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """N×3 RGB from N hues (turns), saturations and values: kornia.color.hsv_to_rgb on 1×1 images."""
    from kornia.color import hsv_to_rgb as kornia_hsv_to_rgb

    hsv = torch.stack([hue * 2 * math.pi, saturation, value], dim=1)[:, :, None, None]
    return kornia_hsv_to_rgb(hsv)[:, :, 0, 0]


def _tints(n: int, generator: torch.Generator) -> torch.Tensor:
    """One random colour per image (N×3): hue uniform over the circle, saturation and value in their ranges."""
    hue = torch.rand(n, generator=generator)
    saturation = _uniform(n, *SATURATION_RANGE, generator)
    value = _uniform(n, *VALUE_RANGE, generator)
    return hsv_to_rgb(hue, saturation, value)


def generate(n: int, image_size: int, seed: int) -> ImageData:
    """n images (uint8 N×3×H×W) with balanced labels, determined by the seed alone."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % len(CLASSES)
    labels = labels[torch.randperm(n, generator=generator)]
    side = image_size * SUPERSAMPLE
    x, y = _local_coordinates(n, side, generator)
    mask = _masks(labels, x, y, generator).float()[:, None]
    tint = _tints(n, generator)[:, :, None, None]
    # Shape (mask 1) in the tint, background (mask 0) in the same tint at BACKGROUND_BRIGHTNESS.
    images = tint * (BACKGROUND_BRIGHTNESS + (1 - BACKGROUND_BRIGHTNESS) * mask)
    images = F.avg_pool2d(images, SUPERSAMPLE)
    return ImageData((images.clamp(0, 1) * 255).round().to(torch.uint8), labels.to(torch.int64))


def _cache_key(n: int, image_size: int, seed: int) -> str:
    text = f"shapes-v{GENERATOR_VERSION}-{SOURCE_FINGERPRINT}-{n}-{image_size}-{seed}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@lru_cache(maxsize=4)
def _generate_cached(n: int, image_size: int, seed: int) -> ImageData:
    """Generated once per machine: read from the cache folder when present, else made and saved there."""
    path = cache_root() / f"shapes-{_cache_key(n, image_size, seed)}.pt"
    if path.exists():
        try:
            saved = torch.load(path, weights_only=True)
            return ImageData(saved["images"], saved["labels"])
        except Exception:  # a damaged cache is regenerated, never trusted
            path.unlink(missing_ok=True)
    data = generate(n, image_size, seed)
    save_cache(path, {"images": data.images, "labels": data.labels})
    return data


def load(spec: DatasetSpec) -> DatasetSplits:
    train_size = spec.train_size or DEFAULT_TRAIN_SIZE
    test_size = spec.test_size or DEFAULT_TEST_SIZE
    data = _generate_cached(train_size + test_size, spec.image_size, spec.seed)
    train = ImageData(data.images[:train_size], data.labels[:train_size])
    test = ImageData(data.images[train_size:], data.labels[train_size:])
    return DatasetSplits(pretrain=train, train=train, test=test, classes=list(CLASSES))
