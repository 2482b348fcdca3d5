"""``blur``: gaussian blur, sigma uniform in [0.1, 2.0] per sample, p = 0.5 (SimCLR App. A).

Kernel: odd, about 10 % of the image side, as SimCLR's official code computes it
(side // 10, made odd by 2 * (k // 2) + 1), at least 3: 3 on 32 px, 23 on 224 px.
Kornia's ``gaussian_blur2d`` takes one sigma per image, so the whole blurred subset is one call.
Border: reflect (Kornia's default); SimCLR's TF code pads with zeros, which darkens the border of
small images — a 3×3 kernel on 32 px would darken a tenth of the pixels, so we prefer reflect.
"""

from __future__ import annotations

import kornia
import torch

from ablate.augment.base import Operator, Params, apply_to_subset, bernoulli, check_probability, check_range, uniform
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
    """Isotropic gaussian blur with one sigma per image (kornia.filters.gaussian_blur2d, reflect border)."""
    sigma2 = sigma.to(images.dtype).unsqueeze(1).expand(-1, 2)
    return kornia.filters.gaussian_blur2d(images, (size, size), sigma2, border_type="reflect")
