"""``blur``: gaussian blur, sigma uniform in [0.1, 2.0] per sample, p = 0.5 (SimCLR App. A).

Kernel: odd, about 10 % of the image side, as SimCLR's official code computes it
(side // 10, made odd by 2 * (k // 2) + 1), at least 3: 3 on 32 px, 23 on 224 px.
The blurred subset is one call of ``gaussian`` below, one sigma per image: a separable form of
``kornia.filters.gaussian_blur2d``, tested against it.
Border: reflect (Kornia's default); SimCLR's TF code pads with zeros, which darkens the border of
small images — a 3×3 kernel on 32 px would darken a tenth of the pixels, so we prefer reflect.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from ablate.augment.base import Operator, Params, apply_to_subset, bernoulli, check_probability, check_range, uniform

if TYPE_CHECKING:  # pydantic is only needed to validate grid files, not to augment
    from ablate.config import AugmentSpec


def kernel_size(side: int) -> int:
    """Odd kernel about 10 % of the side, at least 3 (SimCLR: k = side // 10; k = 2 * (k // 2) + 1)."""
    return max(3, 2 * ((side // 10) // 2) + 1)


class Blur(Operator):
    """Gaussian blur. Params: ``blur`` B bool, ``sigma`` B (pixels)."""

    name = "blur"

    def __init__(self, sigma: tuple[float, float] = (0.1, 2.0), p: float = 0.5) -> None:
        self.sigma = check_range("blur sigma", sigma, 1e-3, 100.0)
        self.p = check_probability("blur p", p)

    @classmethod
    def from_spec(cls, spec: AugmentSpec) -> "Blur":
        return cls(spec.blur_sigma, spec.blur_p)

    def sample(
        self, batch_size: int, height: int, width: int, generator: torch.Generator | None, device: torch.device
    ) -> Params:
        return {
            "blur": bernoulli(self.p, batch_size, generator, device),
            "sigma": uniform(*self.sigma, (batch_size,), generator, device),
        }

    def apply(self, images: torch.Tensor, params: Params) -> torch.Tensor:
        size = kernel_size(min(images.shape[-2:]))
        return apply_to_subset(images, params["blur"], lambda x, idx: gaussian(x, params["sigma"][idx], size))


def gaussian(images: torch.Tensor, sigma: torch.Tensor, size: int) -> torch.Tensor:
    """Isotropic gaussian blur with one sigma per image, reflect border; separable.

    Same numbers as ``kornia.filters.gaussian_blur2d`` (tested, ≤ 1e-6): normalised weights
    exp(-d² / 2σ²), d = -r..r (``kornia.filters.get_gaussian_kernel1d``'s, computed here in four
    operations because Kornia's also validates its input with a device-synchronising ``min``),
    applied as a weighted sum of shifted copies, pairing the symmetric taps (w_d (x[i-d] + x[i+d])).
    Kornia's per-image-sigma path was the slowest stage of the pipeline on CPU.
    """
    weights = gaussian_weights(sigma.to(images.dtype), size).view(-1, 1, 1, 1, size)
    return _blur_axis(_blur_axis(images, weights, dim=3), weights, dim=2)


def gaussian_weights(sigma: torch.Tensor, size: int) -> torch.Tensor:
    """N×size normalised gaussian weights, one row per sigma (kornia.filters.get_gaussian_kernel1d's)."""
    offsets = torch.arange(size, dtype=sigma.dtype, device=sigma.device) - size // 2
    weights = torch.exp(-(offsets**2) / (2 * sigma.unsqueeze(1) ** 2))
    return weights / weights.sum(dim=1, keepdim=True)


def _blur_axis(images: torch.Tensor, weights: torch.Tensor, dim: int) -> torch.Tensor:
    """1-D symmetric convolution along dim (2: rows, 3: columns) with per-image weights, reflect padding."""
    radius = weights.shape[-1] // 2
    length = images.shape[dim]
    pad = (radius, radius, 0, 0) if dim == 3 else (0, 0, radius, radius)
    padded = F.pad(images, pad, mode="reflect")
    out = padded.narrow(dim, radius, length) * weights[..., radius]
    for d in range(1, radius + 1):
        pair = padded.narrow(dim, radius - d, length) + padded.narrow(dim, radius + d, length)
        out.addcmul_(pair, weights[..., radius + d])
    return out
