"""``sobel``: Sobel edge magnitude of the grayscale image, repeated to three channels (SimCLR App. A).

Kornia's ``sobel`` (normalised 3×3 kernels, magnitude sqrt(gx² + gy² + eps), replicate border) on
the luma image; then each image is min-max normalised to [0, 1] so that the network always sees
the full range whatever the image's contrast. Deterministic: no parameters.
"""

from __future__ import annotations

import kornia
import torch

from ablate.augment.base import Operator, Params


class Sobel(Operator):
    """Edge magnitude, per-image min-max normalised, 3 channels. No random parameters."""

    name = "sobel"

    def sample(
        self, batch_size: int, height: int, width: int, generator: torch.Generator | None, device: torch.device
    ) -> Params:
        return {}

    def apply(self, images: torch.Tensor, params: Params) -> torch.Tensor:
        edges = kornia.filters.sobel(kornia.color.rgb_to_grayscale(images))
        low = edges.amin(dim=(1, 2, 3), keepdim=True)
        high = edges.amax(dim=(1, 2, 3), keepdim=True)
        # A flat image has no edges: (0 - 0) / eps keeps it at 0 instead of dividing by zero.
        normalised = (edges - low) / (high - low).clamp_min(1e-6)
        return normalised.expand(-1, 3, -1, -1).contiguous()
