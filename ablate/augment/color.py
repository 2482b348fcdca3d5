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
    """The four adjustments in each sample's own order, on the samples where active.

    At each of the four positions the batch is regrouped (one ``index_select``) so that the samples
    doing the same adjustment there are one contiguous slice; each adjustment then runs once on its
    slice. One final ``index_copy_`` puts the samples back in place. This costs 5 gathers instead
    of the 32 that masking each (position, adjustment) pair separately would.
    """
    index = active.nonzero().squeeze(1)  # samples currently held in `work`, in work's order
    if index.numel() == 0:
        return images
    work = images.index_select(0, index)
    for position in range(4):
        kind = order.index_select(0, index)[:, position]
        regroup = torch.argsort(kind, stable=True)
        index, kind = index.index_select(0, regroup), kind.index_select(0, regroup)
        work = work.index_select(0, regroup)
        counts = torch.bincount(kind, minlength=4).tolist()
        pieces, start = [], 0
        for k, count in enumerate(counts):
            if count:
                chunk = slice(start, start + count)
                pieces.append(adjust(work[chunk], k, factors.index_select(0, index[chunk])[:, k]))
            start += count
        work = torch.cat(pieces) if len(pieces) > 1 else pieces[0]
    return images.clone().index_copy_(0, index, work)


def adjust(images: torch.Tensor, k: int, factor: torch.Tensor) -> torch.Tensor:
    """Adjustment ADJUSTMENTS[k] with one factor per image (torchvision semantics), clipped to [0, 1]."""
    factor = factor.to(images.dtype)
    if k == 0:
        return kornia.enhance.adjust_brightness_accumulative(images, factor)
    if k == 1:
        return kornia.enhance.adjust_contrast_with_mean_subtraction(images, factor)
    if k == 2:
        return kornia.enhance.adjust_saturation_with_gray_subtraction(images, factor)
    return shift_hue(images, factor)


def shift_hue(images: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Hue rotated by ``shift`` turns in HSV, the definition of torchvision's adjust_hue and kornia's adjust_hue.

    Same numbers as ``kornia.enhance.adjust_hue(images, 2π·shift)`` (tested, ≤ 1e-5), computed without
    building an HSV image: V = max and V·S = max - min are unchanged by a hue rotation, so only the hue
    is computed (torchvision's sextant formula, with 0/1 channel indicators from ``sign`` instead of
    boolean masks and ``where``, which are several times slower on CPU) and each output channel is
    V - V·S·clamp(min(k, 4 - k), 0, 1) with k = (n + 6H) mod 6, n = 5, 3, 1 for R, G, B (the standard
    closed form of HSV→RGB). Kornia's version was 5× slower on our 2-core CPU benchmark.
    """
    r, g, b = images.transpose(0, 1).contiguous().unbind(0)  # contiguous N×H×W planes
    top = torch.maximum(torch.maximum(r, g), b)
    spread = top - torch.minimum(torch.minimum(r, g), b)
    not_r = torch.sign(top - r)  # 0 where red is the largest channel (ties: red first, as torchvision)
    is_b = not_r * torch.sign(top - g)
    is_g = not_r - is_b
    sextant = (1.0 - not_r) * (g - b) + is_g * (b - r + 2 * spread) + is_b * (r - g + 4 * spread)
    safe = spread + (1.0 - torch.sign(spread))  # 1 for gray pixels, whose hue is 0
    hue6 = 6 * torch.frac(sextant / (6 * safe) + (shift.view(-1, 1, 1) + 2.0))  # new hue × 6, in [0, 6)
    # clamp(min(k, 4 - k), 0, 1) for k = (n + hue6) mod 6, as a triangle wave that needs no modulo
    k = hue6.unsqueeze(1) + _SECTOR_OFFSETS.to(images)
    ramp = (2.0 - k.abs()).clamp_(0.0, 1.0).add_((2.0 - (k - 6.0).abs()).clamp_(0.0, 1.0))
    return top.unsqueeze(1) - spread.unsqueeze(1) * ramp


_SECTOR_OFFSETS = torch.tensor([5.0, 3.0, 1.0]).view(1, 3, 1, 1) - 2.0  # n - 2 for R, G, B


def grayscale(images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Luma repeated to three channels where mask."""
    return apply_to_subset(images, mask, lambda x, idx: kornia.color.rgb_to_grayscale(x).expand(-1, 3, -1, -1))
