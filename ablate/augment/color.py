"""``color``: the paper's colour distortion of strength s (SimCLR App. A, Table 1).

With p = 0.8 a colour jitter: brightness, contrast and saturation factors uniform in
[max(0, 1 - 0.8 s), 1 + 0.8 s] and a hue shift uniform in [-0.2 s, 0.2 s] of a turn, the four in a
random order per sample, clipped to [0, 1] after each; then, independently, grayscale with p = 0.2.

Which definitions of the four adjustments. SimCLR's official code (TensorFlow) uses TF's: brightness
multiplicative (SimCLR v2 code) or additive (v1), contrast around each channel's own mean,
saturation and hue in HSV. PyTorch users and reproductions use torchvision's, and so do we, so that
results are comparable with them and the tests can check us against an independent reference
(torchvision.transforms.v2.functional, image by image). Kornia has each of them with torchvision's
semantics, and the tests hold ours to those too:

* brightness  x · f                                  = kornia.enhance.adjust_brightness_accumulative
* contrast    blend with the mean of the gray image  = kornia.enhance.adjust_contrast_with_mean_subtraction
* saturation  blend with the gray image              = kornia.enhance.adjust_saturation_with_gray_subtraction
* hue         rotation of H in HSV by f turns        = kornia.enhance.adjust_hue(x, 2π f)
* grayscale   ITU-R 601 luma, 3 channels             = kornia.color.rgb_to_grayscale

(Kornia's luma weights are 0.299/0.587/0.114, torchvision's 0.2989/0.587/0.114: ≤ 1e-4 apart.)

Why not call those four Kornia functions: each computes one adjustment for a whole batch, while
here every image has its own order, so they would run once per (position, adjustment) on regrouped
subsets: ~540 tensor operations per batch (134 per position, counted with torch.profiler), which
made colour the slowest stage on both CPU and GPU. Instead the three blend-type adjustments share
one per-image formula (``blend_``) and the hue is a branch-free form of the same HSV definition
(``shift_hue``, 44 operations against Kornia's 89): ~280 operations per batch, indexing included.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ablate.augment.base import Operator, Params, apply_to_subset, bernoulli, check_probability, constant, uniform

if TYPE_CHECKING:  # pydantic is only needed to validate grid files, not to augment
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
        out = jitter(images, params["jitter"], params["factors"], params["order"])  # a new tensor
        return grayscale_(out, params["gray"])


def jitter(images: torch.Tensor, active: torch.Tensor, factors: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """The four adjustments in each sample's own order, on the samples where active.

    Brightness, contrast and saturation are one operation with per-sample constants (``blend_``), so
    at each of the four positions ONE blend runs over the whole batch, each sample with its own
    adjustment's reference and factor, or factor 1 (exactly the identity) when it does the hue there
    or is not jittered; then the hue runs on the samples that have it at that position. Half the
    tensor operations of one call per (position, adjustment): at these image sizes the number of
    operations (kernel launches on a GPU, thread synchronisations on a busy CPU) limits speed more
    than arithmetic does.
    """
    # Per-position columns, made contiguous (4×B): a strided column as a broadcast operand sends
    # every elementwise kernel that uses it down a slow, unvectorised path on CPU.
    at = factors.gather(1, order)  # B×4: factor of the adjustment each sample does at each position
    blends = active.unsqueeze(1) & (order < 3)
    weight = torch.where(blends, at, torch.ones_like(at)).T.contiguous()
    use_mean = (order == 1).to(images.dtype).T.contiguous()  # contrast
    use_gray = (order == 2).to(images.dtype).T.contiguous()  # saturation (brightness: neither, reference 0)
    hue_here = (active.unsqueeze(1) & (order == 3)).T.contiguous()
    out = images.clone()  # the one new batch-sized tensor: every step below writes into it
    for position in range(4):
        blend_(out, weight[position], use_mean[position], use_gray[position])
        apply_to_subset(out, hue_here[position], lambda x, idx: shift_hue(x, factors[idx, 3]), inplace=True)
    return out


def blend_(images: torch.Tensor, weight: torch.Tensor, use_mean: torch.Tensor, use_gray: torch.Tensor) -> torch.Tensor:
    """In place: clamp(w·x + (1 - w)·ref, 0, 1) per image, torchvision's ``_blend`` form of its colour adjustments.

    ref = 0: brightness (x·w); ref = mean of the gray image: contrast; ref = the gray image:
    saturation. Identical in value to kornia.enhance.adjust_brightness_accumulative /
    adjust_contrast_with_mean_subtraction / adjust_saturation_with_gray_subtraction (tested), which
    compute one adjustment for a whole batch; here each image picks its own. Images that skip this
    step (w = 1) are left bit-identical: x·1 + 0 = x.
    """
    gray = luma(images)
    mean = gray.mean(dim=(2, 3), keepdim=True)
    reference = torch.addcmul(mean * use_mean.view(-1, 1, 1, 1), gray, use_gray.view(-1, 1, 1, 1))
    weight = weight.view(-1, 1, 1, 1)
    return images.mul_(weight).add_(reference.mul_(1.0 - weight)).clamp_(0.0, 1.0)


def shift_hue(images: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Hue rotated by ``shift`` turns in HSV: torchvision's adjust_hue = kornia.enhance.adjust_hue(x, 2π·shift).

    Computed without building an HSV image, in 44 tensor operations (Kornia's round trip: 89, with
    nested ``where`` selections that are slow on CPU): a hue rotation keeps V = max and
    V·S = max - min, so only the hue changes. Hue (torchvision's sextant formula): with c the first
    largest channel (ties: R, then G, as torchvision), 6H = 2c + (next - after-next channel) / (max -
    min), mod 6 (c = 0, 1, 2 for R, G, B). Back to RGB (the closed form of HSV→RGB): channel n = max - (max - min)·ramp, where
    ramp = clamp(min(k, 4 - k), 0, 1), k = (n + 6H') mod 6, n = 5, 3, 1 for R, G, B; as a triangle
    wave without modulo: ramp = clamp(|6·frac(H' + o_n) - 3| - 1, 0, 1), o_n = ((n - 2) mod 6) / 6.
    """
    top = images.amax(dim=1, keepdim=True)
    spread = top - images.amin(dim=1, keepdim=True)
    # Which channel is the first largest, as 0/1 planes from ``sign`` (argmax over the channel dim is
    # ~100× slower than elementwise work on CPU): red if it is the max, else green if it is, else blue.
    r, g = images[:, 0:1], images[:, 1:2]
    not_r = torch.sign(top - r)
    is_b = not_r * torch.sign(top - g)
    is_g = not_r - is_b
    first_max = torch.cat([1.0 - not_r, is_g, is_b], dim=1)
    cyclic = images.roll(-1, dims=1) - images.roll(-2, dims=1)  # G-B, B-R, R-G
    sextant = torch.addcmul((first_max * cyclic).sum(dim=1, keepdim=True), torch.add(is_g, is_b, alpha=2), spread, value=2)
    turn = (shift.to(images.dtype) + 2.0).view(-1, 1, 1, 1)  # + 2 keeps the sum positive for frac
    hue = torch.frac(sextant / (6 * spread.clamp_min(1e-12)) + turn)  # new hue in turns, [0, 1); gray: 0
    # Written into a fresh N×3×H×W buffer: left to itself, PyTorch lays the sum of an N×1×H×W and a
    # 1×3×1×1 tensor out channels-last, which slows everything downstream.
    ramp = torch.add(hue, constant(_CHANNEL_OFFSETS, (1, 3, 1, 1), images), out=torch.empty_like(images))
    ramp = ramp.frac_().sub_(0.5).abs_().mul_(6.0).sub_(1.0).clamp_(0.0, 1.0)
    return ramp.mul_(-spread).add_(top)  # max - (max - min)·ramp


_CHANNEL_OFFSETS = (3 / 6, 1 / 6, 5 / 6)  # ((n - 2) mod 6) / 6 for R, G, B (n = 5, 3, 1)


def grayscale_(images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """In place: luma repeated to three channels where mask (0/1 weights: other images stay bit-identical)."""
    keep = mask.to(images.dtype).view(-1, 1, 1, 1)
    gray = luma(images).mul_(keep)
    return images.mul_(1.0 - keep).add_(gray)


def luma(images: torch.Tensor) -> torch.Tensor:
    """N×1×H×W ITU-R 601 luma with kornia.color.rgb_to_grayscale's weights (0.299, 0.587, 0.114).

    As three scaled channel planes added in place: one output allocation, and ~2× faster on CPU than
    a broadcast product and channel sum (Kornia's function also spends ~11 operations per call).
    """
    r, g, b = _LUMA
    return (images[:, 0:1] * r).add_(images[:, 1:2], alpha=g).add_(images[:, 2:3], alpha=b)


_LUMA = (0.299, 0.587, 0.114)
