"""``color``: the paper's colour distortion of strength s (SimCLR App. A, Table 1).

With p = 0.8 a colour jitter: brightness, contrast and saturation factors uniform in
[max(0, 1 - 0.8 s), 1 + 0.8 s] and a hue shift uniform in [-0.2 s, 0.2 s] of a turn, the four in a
random order per sample, clipped to [0, 1] after each; then, independently, grayscale with p = 0.2.

Which definitions of the four adjustments. SimCLR's official code (TensorFlow) uses TF's: brightness
multiplicative (SimCLR v2 code) or additive (v1), contrast around each channel's own mean,
saturation and hue in HSV. PyTorch users and reproductions use torchvision's, and so do we, so that
results are comparable with them and the tests can check us against an independent reference
(torchvision.transforms.v2.functional). Each is a Kornia kernel with torchvision's semantics:

* brightness  x * f                                     kornia.enhance.adjust_brightness_accumulative
* contrast    blend with the mean of the gray image     kornia.enhance.adjust_contrast_with_mean_subtraction
* saturation  blend with the gray image                 kornia.enhance.adjust_saturation_with_gray_subtraction
* hue         rotation of H in HSV by 2π·shift radians  kornia.enhance.adjust_hue
* grayscale   ITU-R 601 luma, repeated to 3 channels    kornia.color.rgb_to_grayscale

(Kornia's luma weights are 0.299/0.587/0.114, torchvision's 0.2989/0.587/0.114: ≤ 1e-4 apart.)

Batched with a random order per sample: for each of the four positions and each adjustment, the
adjustment runs once on the samples that have it at that position; every sample meets each
adjustment exactly once, so the work equals one pass of the four over the jittered samples.
"""

from __future__ import annotations

import math

import kornia
import torch

from ablate.augment.base import Operator, Params, apply_to_subset, bernoulli, check_probability, uniform
from ablate.config import AugmentSpec

ADJUSTMENTS = ("brightness", "contrast", "saturation", "hue")  # column k of params["factors"]


def factor_range(strength: float) -> tuple[float, float]:
    """Brightness/contrast/saturation factor range of strength s: [max(0, 1 - 0.8 s), 1 + 0.8 s]."""
    return max(0.0, 1.0 - 0.8 * strength), 1.0 + 0.8 * strength


def hue_range(strength: float) -> tuple[float, float]:
    """Hue shift range (fraction of a turn) of strength s: [-0.2 s, 0.2 s], capped at half a turn."""
    shift = min(0.2 * strength, 0.5)
    return -shift, shift


class Color(Operator):
    """Colour jitter (p) + grayscale (p). Params: ``jitter`` B bool, ``factors`` B×4, ``order`` B×4 long, ``gray`` B bool.

    ``order[i, j]`` is the adjustment (index into ADJUSTMENTS) applied at position j to sample i.
    """

    name = "color"

    def __init__(self, strength: float = 1.0, jitter_p: float = 0.8, grayscale_p: float = 0.2) -> None:
        if not strength > 0:
            raise ValueError(f"color strength: expected > 0, got {strength}")
        self.strength = float(strength)
        self.jitter_p = check_probability("color jitter p", jitter_p)
        self.grayscale_p = check_probability("grayscale p", grayscale_p)

    @classmethod
    def from_spec(cls, spec: AugmentSpec) -> "Color":
        return cls(spec.color_strength, spec.color_p, spec.grayscale_p)

    def sample(
        self, batch_size: int, height: int, width: int, generator: torch.Generator | None, device: torch.device
    ) -> Params:
        low, high = factor_range(self.strength)
        factors = uniform(low, high, (batch_size, 3), generator, device)
        hue = uniform(*hue_range(self.strength), (batch_size, 1), generator, device)
        order = torch.rand((batch_size, 4), generator=generator, device=device).argsort(dim=1)
        return {
            "jitter": bernoulli(self.jitter_p, batch_size, generator, device),
            "factors": torch.cat([factors, hue], dim=1),
            "order": order,
            "gray": bernoulli(self.grayscale_p, batch_size, generator, device),
        }

    def apply(self, images: torch.Tensor, params: Params) -> torch.Tensor:
        out = jitter(images, params["jitter"], params["factors"], params["order"])
        return grayscale(out, params["gray"])


def jitter(images: torch.Tensor, active: torch.Tensor, factors: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """The four adjustments in each sample's own order, on the samples where active."""
    out = images
    for position in range(4):
        for k in range(4):
            mask = active & (order[:, position] == k)
            out = apply_to_subset(out, mask, lambda x, idx, k=k: adjust(x, k, factors[idx, k]))
    return out


def adjust(images: torch.Tensor, k: int, factor: torch.Tensor) -> torch.Tensor:
    """Adjustment ADJUSTMENTS[k] with one factor per image (torchvision semantics), clipped to [0, 1]."""
    factor = factor.to(images.dtype)
    if k == 0:
        return kornia.enhance.adjust_brightness_accumulative(images, factor)
    if k == 1:
        return kornia.enhance.adjust_contrast_with_mean_subtraction(images, factor)
    if k == 2:
        return kornia.enhance.adjust_saturation_with_gray_subtraction(images, factor)
    # Hue: kornia takes radians; HSV→RGB can overshoot 1 by rounding, hence the clamp.
    return kornia.enhance.adjust_hue(images, factor * (2 * math.pi)).clamp_(0.0, 1.0)


def grayscale(images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Luma repeated to three channels where mask."""
    return apply_to_subset(images, mask, lambda x, idx: kornia.color.rgb_to_grayscale(x).expand(-1, 3, -1, -1))
