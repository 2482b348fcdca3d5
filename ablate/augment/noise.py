"""``noise``: additive gaussian noise, clipped to [0, 1].

The paper lists "Gaussian noise" among its seven operators without a strength in the text we
follow; the default std is 0.1 on the [0, 1] scale (≈ 25 of 255 grey levels): plainly visible
(compare 8-bit quantisation, std ≈ 0.001, and typical sensor noise of a few levels) yet leaving
shapes and colours recognisable, so the operator is neither a no-op nor a destroyer of content.
It is an axis (``augment.noise_std``) for anyone who wants to sweep it.

The noise itself is the parameter (B×3×H×W), so a batch replays exactly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ablate.augment.base import Operator, Params

if TYPE_CHECKING:  # pydantic is only needed to validate grid files, not to augment
    from ablate.config import AugmentSpec


class Noise(Operator):
    """x + N(0, std²) per pixel and channel, clipped. Params: ``noise`` B×3×H×W (already scaled by std)."""

    name = "noise"

    def __init__(self, std: float = 0.1) -> None:
        if not 0.0 < std <= 1.0:
            raise ValueError(f"noise std: expected inside (0, 1], got {std}")
        self.std = float(std)

    @classmethod
    def from_spec(cls, spec: AugmentSpec) -> "Noise":
        return cls(spec.noise_std)

    def sample(
        self, batch_size: int, height: int, width: int, generator: torch.Generator | None, device: torch.device
    ) -> Params:
        noise = torch.randn((batch_size, 3, height, width), generator=generator, device=device)
        return {"noise": noise.mul_(self.std)}

    def apply(self, images: torch.Tensor, params: Params) -> torch.Tensor:
        return (images + params["noise"].to(images.dtype)).clamp_(0.0, 1.0)
