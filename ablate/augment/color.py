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

Compiled form (opt-in, ABLATE_COMPILE_COLOR=1, ablate.augment.compiled): even so, colour is the
largest stage of a pair of views on a CPU, because each of those operations is a pass over the
batch (the stage-by-stage split: benchmarks/results/augment-cpu-2core.md). For a
compiler the same distortion is written differently (``color_planes``): on the three channel
planes, every sample in one dense pass per step (no subsets, which a compiler would see as new
shapes), and with the four adjustments regrouped so that the hue (~40 operations) runs once
instead of at each of the four positions (``schedule_around_hue``). torch.compile fuses it into a
handful of loops, so each pass over the batch does the work of many (what that buys on a CPU:
benchmarks/results/augment-cpu-2core.md). Same numbers as the eager path to ~1e-5 (float rounding; tested).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ablate.augment import compiled
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

    def __init__(
        self, strength: float = 1.0, jitter_p: float = 0.8, grayscale_p: float = 0.2, compile: bool = False
    ) -> None:
        if not strength > 0:
            raise ValueError(f"color strength: expected > 0, got {strength}")
        self.strength = float(strength)
        self.jitter_p = check_probability("color jitter p", jitter_p)
        self.grayscale_p = check_probability("grayscale p", grayscale_p)
        self.compile = bool(compile)  # apply through torch.compile (color_planes); eager where compiling fails

    @classmethod
    def from_spec(cls, spec: AugmentSpec) -> "Color":
        # How to compute, not what: the switch is the environment's (like ABLATE_DEVICE), so run ids
        # do not depend on it; each result records it in its provenance.
        return cls(spec.color_strength, spec.color_p, spec.grayscale_p, compile=compiled.color_compile_requested())

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
        if self.compile and COMPILED_COLOR.failure is None:  # after a failed compile: straight to eager
            weight, use_mean, use_gray = schedule_around_hue(params["jitter"], params["factors"], params["order"])
            out = COMPILED_COLOR(images, params["jitter"], params["factors"][:, 3], weight, use_mean, use_gray, params["gray"])
            if out is not None:  # None: compiling failed just now (warned once); the eager path below
                return out
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
    # Which channel is the first largest, as 0/1 planes from ``sign`` (argmax over the channel dim is a
    # reduction with an index output, far slower on CPU than elementwise work): red if it is the max,
    # else green if it is, else blue.
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

    As three scaled channel planes added in place: one output allocation, where a broadcast product
    and channel sum also make an N×3×H×W temporary (Kornia's function also spends ~11 operations
    per call).
    """
    r, g, b = _LUMA
    return (images[:, 0:1] * r).add_(images[:, 1:2], alpha=g).add_(images[:, 2:3], alpha=b)


_LUMA = (0.299, 0.587, 0.114)


# ------------------------------------------------------------------------------- compiled form


def schedule_around_hue(
    active: torch.Tensor, factors: torch.Tensor, order: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each sample's three blends regrouped into six steps around ONE hue step: 3 before, 3 after.

    A sample whose hue comes at position h (0-3) does its first h blends at steps 3 - h .. 2 (the
    ones just before the hue) and the others at steps 3 .. 5 - h (just after); every other step is
    the identity (weight 1). Same adjustments in the same order, so the same result as ``jitter``,
    with the hue computed once for the whole batch instead of at each of four positions.
    Returns 6×B weight, use_mean (contrast) and use_gray (saturation) rows, as ``blend_`` takes them.
    """
    is_hue = order == 3
    hue_at = is_hue.to(torch.int64).argmax(dim=1, keepdim=True)  # B×1, 0..3
    # The three blends in their order: a stable sort moves the hue's column to the end.
    blends = order.gather(1, is_hue.to(torch.int8).argsort(dim=1, stable=True))[:, :3]
    # Step t (0-5) holds blend number t - 3 + h of the sample: its h blends end at step 2, the
    # rest start at step 3; numbers outside 0..2 are identity steps.
    slot = torch.arange(6, device=order.device) - 3 + hue_at  # B×6
    used = (slot >= 0) & (slot < 3) & active.unsqueeze(1)
    kind = blends.gather(1, slot.clamp(0, 2))
    weight = torch.where(used, factors.gather(1, kind), torch.ones((), dtype=factors.dtype, device=factors.device))
    use_mean = (used & (kind == 1)).to(factors.dtype)
    use_gray = (used & (kind == 2)).to(factors.dtype)
    return weight.T.contiguous(), use_mean.T.contiguous(), use_gray.T.contiguous()


def color_planes(
    images: torch.Tensor,
    active: torch.Tensor,
    hue_shift: torch.Tensor,
    weight: torch.Tensor,
    use_mean: torch.Tensor,
    use_gray: torch.Tensor,
    gray: torch.Tensor,
) -> torch.Tensor:
    """The colour distortion (jitter in ``schedule_around_hue``'s steps, then grayscale), written for torch.compile.

    Plain functional code over the three channel planes (B×H×W each): max/min of three planes
    instead of a reduction over the channel dimension and no in-place updates, so that the
    compiler turns it into a few vectorised loops. Every sample runs every step (identity where its
    weight is 1, the hue kept only where ``active``). Eagerly it is slower than ``jitter``; it is
    meant to be compiled (COMPILED_COLOR).
    """
    r, g, b = images.unbind(1)
    for step in range(3):
        r, g, b = _blend_planes(r, g, b, weight[step], use_mean[step], use_gray[step])
    hr, hg, hb = _hue_planes(r, g, b, hue_shift)
    keep = active.view(-1, 1, 1)
    r, g, b = torch.where(keep, hr, r), torch.where(keep, hg, g), torch.where(keep, hb, b)
    for step in range(3, 6):
        r, g, b = _blend_planes(r, g, b, weight[step], use_mean[step], use_gray[step])
    luma_plane = _luma_of_planes(r, g, b)
    to_gray = gray.view(-1, 1, 1)
    return torch.stack([torch.where(to_gray, luma_plane, plane) for plane in (r, g, b)], dim=1)


def _blend_planes(
    r: torch.Tensor, g: torch.Tensor, b: torch.Tensor, weight: torch.Tensor, use_mean: torch.Tensor, use_gray: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``blend_`` on channel planes: clamp(w·x + (1 - w)·ref, 0, 1), ref = 0, the gray image's mean, or the gray image."""
    luma_plane = _luma_of_planes(r, g, b)
    mean = luma_plane.mean(dim=(1, 2), keepdim=True)
    w = weight.view(-1, 1, 1)
    reference = (mean * use_mean.view(-1, 1, 1) + luma_plane * use_gray.view(-1, 1, 1)) * (1.0 - w)
    return tuple((plane * w + reference).clamp(0.0, 1.0) for plane in (r, g, b))  # type: ignore[return-value]


def _luma_of_planes(r: torch.Tensor, g: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``luma`` on channel planes (same weights)."""
    return r * _LUMA[0] + g * _LUMA[1] + b * _LUMA[2]


def _hue_planes(
    r: torch.Tensor, g: torch.Tensor, b: torch.Tensor, shift: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``shift_hue`` on channel planes (same formulas: torchvision's sextant, closed-form HSV→RGB)."""
    top = torch.maximum(r, torch.maximum(g, b))
    spread = top - torch.minimum(r, torch.minimum(g, b))
    red_max = r == top
    green_max = (g == top) & ~red_max  # ties go to red, then green, as in torchvision
    sextant = torch.where(red_max, g - b, torch.where(green_max, b - r + 2 * spread, r - g + 4 * spread))
    hue = torch.frac(sextant / (6 * spread.clamp_min(1e-12)) + (shift + 2.0).view(-1, 1, 1))
    return tuple(
        top - spread * ((torch.frac(hue + offset) - 0.5).abs() * 6.0 - 1.0).clamp(0.0, 1.0) for offset in _CHANNEL_OFFSETS
    )  # type: ignore[return-value]


COMPILED_COLOR = compiled.Compiled(color_planes, "the colour distortion")
