"""``crop``: random resized crop, resized back to the input size, then horizontal flip (SimCLR App. A).

Definition (torchvision ``RandomResizedCrop``, which SimCLR's official code mirrors): the crop's
area is a uniform fraction of the image in ``scale`` = [0.08, 1], its aspect ratio w/h is
log-uniform in ``ratio`` = [3/4, 4/3]; up to 10 draws are tried and the first that fits inside the
image is kept, else the whole image (clamped to the ratio range) is used; its position is uniform.
Then a horizontal flip with p = 0.5.

Differences from torchvision, on purpose: the box is continuous (no rounding to whole pixels) and
crop + resize + flip is ONE bilinear ``grid_sample`` over the whole batch from per-sample affine
grids (one batched kernel instead of B crops and B resizes). The output is always at least as
large as the crop, so no antialiasing is needed; torchvision's resize (bilinear,
align_corners=False) samples the same points, and differs only on the crop's outermost pixels,
where it clamps to the crop while we read the true neighbours from the full image.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from ablate.augment.base import Operator, Params, bernoulli, check_probability, check_range, log_uniform, uniform

if TYPE_CHECKING:  # pydantic is only needed to validate grid files, not to augment
    from ablate.config import AugmentSpec

TRIES = 10  # as torchvision: draws tried before falling back to the whole image


class Crop(Operator):
    """Random resized crop + horizontal flip. Params: ``box`` B×4 (x0, y0, w, h as fractions), ``flip`` B bool."""

    name = "crop"

    def __init__(
        self,
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        flip_p: float = 0.5,
    ) -> None:
        self.scale = check_range("crop scale", scale, 1e-6, 1.0)
        self.ratio = check_range("crop ratio", ratio, 1e-3, 1e3)
        self.flip_p = check_probability("crop flip_p", flip_p)

    @classmethod
    def from_spec(cls, spec: AugmentSpec) -> "Crop":
        return cls(spec.crop_scale, spec.crop_ratio, spec.flip_p)

    def sample(
        self, batch_size: int, height: int, width: int, generator: torch.Generator | None, device: torch.device
    ) -> Params:
        shape = (batch_size, TRIES)
        area = uniform(*self.scale, shape, generator, device)
        aspect = log_uniform(*self.ratio, shape, generator, device)
        # Sides as fractions of the image: w = sqrt(area_px * aspect) / W, h = sqrt(area_px / aspect) / H.
        w = torch.sqrt(area * aspect * (height / width))
        h = torch.sqrt(area / aspect * (width / height))
        fits = (w <= 1.0) & (h <= 1.0)
        first = fits.to(torch.int8).argmax(dim=1, keepdim=True)  # first fitting try (0 when none fits)
        w = w.gather(1, first).squeeze(1)
        h = h.gather(1, first).squeeze(1)
        w, h = self._fallback(fits.any(dim=1), w, h, height, width)
        corner = torch.rand((batch_size, 2), generator=generator, device=device)
        box = torch.stack([corner[:, 0] * (1 - w), corner[:, 1] * (1 - h), w, h], dim=1)
        return {"box": box, "flip": bernoulli(self.flip_p, batch_size, generator, device)}

    def _fallback(
        self, found: torch.Tensor, w: torch.Tensor, h: torch.Tensor, height: int, width: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Where no try fits: the largest centred box whose aspect lies in the ratio range (torchvision)."""
        aspect = min(max(width / height, self.ratio[0]), self.ratio[1])
        fw = min(1.0, aspect * height / width)
        fh = min(1.0, width / (aspect * height))
        return torch.where(found, w, torch.full_like(w, fw)), torch.where(found, h, torch.full_like(h, fh))

    def apply(self, images: torch.Tensor, params: Params) -> torch.Tensor:
        return resized_crop(images, params["box"], params["flip"])


def resized_crop(images: torch.Tensor, box: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Each image's box (x0, y0, w, h as fractions) resized to the full size, mirrored where flip; one grid_sample.

    With align_corners=False the normalised coordinate -1..1 spans the image's outer pixel edges, so
    output pixel centre u maps to box centre + half box size * u; a flip negates the x scale. The
    grid is separable (x depends on the column only, y on the row only), so it is built from two
    B×W and B×H tensors by broadcasting rather than by ``affine_grid``'s B×H×W×3 @ 3×2 product
    (which took longer than the sampling itself on CPU).
    """
    batch, _, height, width = images.shape
    x0, y0, w, h = box.to(images.dtype).unbind(dim=1)
    sign = 1.0 - 2.0 * flip.to(images.dtype)
    u = pixel_centres(width, images)
    v = pixel_centres(height, images)
    gx = (2 * x0 + w - 1).unsqueeze(1) + (w * sign).unsqueeze(1) * u  # B×W
    gy = (2 * y0 + h - 1).unsqueeze(1) + h.unsqueeze(1) * v  # B×H
    grid = torch.empty((batch, height, width, 2), dtype=images.dtype, device=images.device)
    grid[..., 0] = gx.unsqueeze(1)  # broadcast over rows
    grid[..., 1] = gy.unsqueeze(2)  # broadcast over columns
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def pixel_centres(size: int, like: torch.Tensor) -> torch.Tensor:
    """Normalised coordinates (align_corners=False) of the pixel centres along one axis: (2i + 1) / size - 1."""
    return (torch.arange(size, dtype=like.dtype, device=like.device) * 2 + 1) / size - 1


def crop_area_and_aspect(box: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Area fraction and aspect ratio (w/h in pixels) of sampled boxes, for checks and reports."""
    w, h = box[:, 2], box[:, 3]
    return w * h, (w * width) / (h * height)


__all__ = ["Crop", "resized_crop", "crop_area_and_aspect"]
