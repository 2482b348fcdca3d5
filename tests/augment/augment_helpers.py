"""Shared inputs for the augmentation tests (a plain module, not conftest.py: other test folders have their own)."""

from __future__ import annotations

import torch


def structured_images(batch: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    """float32 B×3×size×size in [0, 1]: a colour gradient plus a random bright rectangle per image."""
    g = torch.Generator().manual_seed(seed)
    ys = torch.linspace(0, 1, size).view(1, 1, size, 1)
    xs = torch.linspace(0, 1, size).view(1, 1, 1, size)
    colour = torch.rand((batch, 3, 1, 1), generator=g)
    images = 0.6 * colour * (0.5 * ys + 0.5 * xs) + 0.1
    corners = torch.randint(0, size // 2, (batch, 2), generator=g)
    for i, (y, x) in enumerate(corners.tolist()):
        images[i, :, y : y + size // 3, x : x + size // 4] = torch.rand((3, 1, 1), generator=g)
    return images.clamp(0, 1)


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def standard_error_bound(p: float, n: int, k: float = 3.0) -> float:
    """k standard errors of a proportion p over n draws (the tolerance of probability checks)."""
    return k * (p * (1 - p) / n) ** 0.5


def uint8_images(batch: int = 16, seed: int = 0) -> torch.Tensor:
    """structured_images as uint8 [0, 255], as datasets hold them (not the built-in dataset: tests stay independent of it)."""
    return (structured_images(batch, seed=seed) * 255).round().to(torch.uint8)
