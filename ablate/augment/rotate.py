"""``rotate``: rotation by 90°, 180° or 270°, one of the three uniformly per sample (SimCLR App. A).

Exact (a permutation of pixels, no interpolation): ``torch.rot90`` on each of the three groups.
Needs square images, since a quarter turn swaps height and width.
"""

from __future__ import annotations

import torch

from ablate.augment.base import Operator, Params


class Rotate(Operator):
    """Quarter-turn rotation (counter-clockwise). Params: ``quarters`` B long in {1, 2, 3}."""

    name = "rotate"

    def sample(
        self, batch_size: int, height: int, width: int, generator: torch.Generator | None, device: torch.device
    ) -> Params:
        return {"quarters": torch.randint(1, 4, (batch_size,), generator=generator, device=device)}

    def apply(self, images: torch.Tensor, params: Params) -> torch.Tensor:
        if images.shape[-1] != images.shape[-2]:
            raise ValueError(f"rotate needs square images, got {images.shape[-2]}×{images.shape[-1]}")
        out = images.clone()
        for quarters in (1, 2, 3):
            index = (params["quarters"] == quarters).nonzero().squeeze(1)
            if index.numel():
                out[index] = torch.rot90(images[index], quarters, dims=(-2, -1))
        return out
