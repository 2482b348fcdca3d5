"""SimCLR (Chen et al., ICML 2020): two augmented views, encoder f, projection head g, NT-Xent loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ablate.config.methods import SimCLRSpec
from ablate.methods.base import Forward, MethodContext, TwoViewMethod
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


class SimCLR(TwoViewMethod):
    """SimCLR: two views of each image, encoder f, projection head g, NT-Xent between the projections.

    Trains on the unlabelled split (`DatasetSplits.pretrain`, e.g. STL-10's unlabeled images).

    Example (one training step's loss on a batch of uint8 images)::

        >>> import torch
        >>> from ablate.augment import ViewMaker
        >>> from ablate.config import AugmentSpec, ModelSpec
        >>> from ablate.config.methods import SimCLRSpec
        >>> from ablate.methods.base import MethodContext
        >>> from ablate.models import build_encoder
        >>> model = ModelSpec(arch="small_cnn", proj_dim=32)
        >>> context = MethodContext(build_encoder(model, 16), ViewMaker(AugmentSpec(ops=["crop", "color"])), model, num_classes=10)
        >>> simclr = SimCLR(SimCLRSpec(temperature=0.2), context)
        >>> images = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8)
        >>> view1, view2 = simclr.make_inputs(images, torch.zeros(8, dtype=torch.long), torch.Generator().manual_seed(0))
        >>> loss = simclr.loss((view1, view2), torch.zeros(8, dtype=torch.long))
        >>> loss.shape, bool(loss > 0)
        (torch.Size([]), True)
    """

    spec_class = SimCLRSpec

    def __init__(self, spec: SimCLRSpec, context: MethodContext):
        super().__init__(spec, context)
        self.head = projection_head(self.encoder.feature_dim, context.model.proj_hidden, context.model.proj_dim)
        self.temperature = spec.temperature

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """z = g(f(x)): the projections NT-Xent compares (the part that `torch.compile` compiles)."""
        return self.head(self.encoder(images))

    def embedding(self, features: torch.Tensor) -> torch.Tensor:
        """z = g(h): what NT-Xent compares (for the collapse diagnostic)."""
        return self.head(features)

    def loss(self, inputs: tuple[torch.Tensor, ...], labels: torch.Tensor, forward: Forward | None = None) -> torch.Tensor:
        """NT-Xent of the two views (labels are not used)."""
        view1, view2 = inputs
        # One forward pass over both views: batch norm sees 2N images, as in the paper's code.
        z = (forward or self)(torch.cat([view1, view2]))
        z1, z2 = z.chunk(2)
        return nt_xent(z1, z2, self.temperature)
