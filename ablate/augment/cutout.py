"""``cutout``: erase one random rectangle per image (SimCLR App. A; DeVries & Taylor 2017).

Sampling as torchvision's ``RandomErasing`` defaults (Zhong et al. 2020): area a fraction uniform in
scale = (0.02, 0.33) of the image, aspect ratio log-uniform in ratio = (0.3, 3.3), position uniform;
up to 10 draws, the first that fits is kept (else the image is left as is, as torchvision does).
Unlike RandomErasing's p = 0.5, cutout is always applied: in Figure 5 the operator IS the treatment.
Fill: 0 (black, RandomErasing's default value) or, with ``cutout_fill: mean``, each image's
per-channel mean, which hides the rectangle's position less than a black hole does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ablate.augment.base import Operator, Params, check_range, log_uniform, uniform

if TYPE_CHECKING:  # pydantic is only needed to validate grid files, not to augment
    from ablate.config import AugmentSpec

TRIES = 10


class Cutout(Operator):
    """One erased rectangle. Params: ``box`` B×4 (x0, y0, w, h in pixels, integers), ``erase`` B bool."""

    name = "cutout"

    def __init__(
        self, scale: tuple[float, float] = (0.02, 0.33), ratio: tuple[float, float] = (0.3, 3.3), fill: str = "zero"
    ) -> None:
        self.scale = check_range("cutout scale", scale, 1e-6, 1.0)
        self.ratio = check_range("cutout ratio", ratio, 1e-3, 1e3)
        if fill not in ("zero", "mean"):
            raise ValueError(f"cutout fill: expected 'zero' or 'mean', got {fill!r}")
        self.fill = fill

    @classmethod
    def from_spec(cls, spec: AugmentSpec) -> "Cutout":
        return cls(spec.cutout_scale, spec.cutout_ratio, spec.cutout_fill)

    def sample(
        self, batch_size: int, height: int, width: int, generator: torch.Generator | None, device: torch.device
    ) -> Params:
        shape = (batch_size, TRIES)
        area = uniform(*self.scale, shape, generator, device) * (height * width)
        aspect = log_uniform(*self.ratio, shape, generator, device)
        # Whole pixels, as RandomErasing: h = round(sqrt(area * ratio)), w = round(sqrt(area / ratio)).
        h = torch.sqrt(area * aspect).round()
        w = torch.sqrt(area / aspect).round()
        fits = (h < height) & (w < width) & (h > 0) & (w > 0)
        first = fits.to(torch.int8).argmax(dim=1, keepdim=True)
        h, w = h.gather(1, first).squeeze(1), w.gather(1, first).squeeze(1)
        corner = torch.rand((batch_size, 2), generator=generator, device=device)
        x0 = (corner[:, 0] * (width - w + 1)).floor().clamp(max=width - w)
        y0 = (corner[:, 1] * (height - h + 1)).floor().clamp(max=height - h)
        return {"box": torch.stack([x0, y0, w, h], dim=1).long(), "erase": fits.any(dim=1)}

    def apply(self, images: torch.Tensor, params: Params) -> torch.Tensor:
        mask = box_mask(params["box"], params["erase"], images.shape[-2], images.shape[-1])
        fill = images.mean(dim=(2, 3), keepdim=True) if self.fill == "mean" else torch.zeros((), dtype=images.dtype, device=images.device)
        return torch.where(mask, fill, images)


def box_mask(box: torch.Tensor, erase: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """B×1×H×W bool, True inside each image's box (where erase)."""
    x0, y0, w, h = (v.view(-1, 1, 1) for v in box.unbind(dim=1))
    ys = torch.arange(height, device=box.device).view(1, -1, 1)
    xs = torch.arange(width, device=box.device).view(1, 1, -1)
    inside = (ys >= y0) & (ys < y0 + h) & (xs >= x0) & (xs < x0 + w)
    return (inside & erase.view(-1, 1, 1)).unsqueeze(1)
