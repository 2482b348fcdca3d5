"""SimCLR (Chen et al., ICML 2020): two augmented views, encoder f, projection head g, NT-Xent loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ablate.models import Encoder
from ablate.models.heads import projection_head


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """Normalised temperature-scaled cross entropy (paper eq. 1), averaged over all 2N anchors.

    For anchor i the positive is its other view; the 2N − 2 other embeddings of the batch are the
    negatives. Similarity is cosine similarity divided by the temperature.
    """
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    logits = z @ z.T / temperature
    # An embedding is never its own negative: remove the diagonal from the softmax. In place (no
    # (2N)² mask, no copy); autograd allows it, since dividing by a number keeps no tensor for backward.
    logits.fill_diagonal_(float("-inf"))
    # Made on the device: a CPU tensor copied over would make the host wait for the GPU every step.
    positives = (torch.arange(2 * n, device=z.device) + n) % (2 * n)
    return F.cross_entropy(logits, positives)


class SimCLR(nn.Module):
    def __init__(self, encoder: Encoder, proj_hidden: int | None, proj_dim: int, temperature: float):
        super().__init__()
        self.encoder = encoder
        self.head = projection_head(encoder.feature_dim, proj_hidden, proj_dim)
        self.temperature = temperature

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """z = g(f(x)): the projections NT-Xent compares (the part that `torch.compile` compiles)."""
        return self.head(self.encoder(images))

    def loss(self, view1: torch.Tensor, view2: torch.Tensor, forward=None) -> torch.Tensor:
        """NT-Xent of the two views. `forward` replaces ``self`` (e.g. a compiled, autocast `ModelForward`)."""
        # One forward pass over both views: batch norm sees 2N images, as in the paper's code.
        z = (forward or self)(torch.cat([view1, view2]))
        z1, z2 = z.chunk(2)
        return nt_xent(z1, z2, self.temperature)
