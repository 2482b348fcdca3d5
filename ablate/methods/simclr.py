"""SimCLR (Chen et al., ICML 2020): two augmented views, encoder f, projection head g, NT-Xent loss."""

from __future__ import annotations

import torch

from ablate.config.methods import SimCLRSpec
from ablate.distributed import gather_from_ranks
from ablate.methods.base import Forward, MethodContext, TwoViewMethod
from ablate.methods.contrastive_losses import contrastive_loss, contrastive_metrics, nt_xent  # noqa: F401 - nt_xent: its home before
from ablate.models.heads import projection_head


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
        # model.head picks g (Figure 8): none (z = h), linear, or the paper's mlp (the default).
        model = context.model
        self.head = projection_head(model.head, self.encoder.feature_dim, model.proj_hidden, model.proj_dim)
        self.temperature = spec.temperature

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """z = g(f(x)): the projections NT-Xent compares (the part that `torch.compile` compiles)."""
        return self.head(self.encoder(images))

    def embedding(self, features: torch.Tensor) -> torch.Tensor:
        """z = g(h): what NT-Xent compares (for the collapse diagnostic)."""
        return self.head(features)

    def loss(self, inputs: tuple[torch.Tensor, ...], labels: torch.Tensor, forward: Forward | None = None) -> torch.Tensor:
        """The spec's contrastive loss of the two views (NT-Xent by default; Table 2); labels are not used."""
        view1, view2 = inputs
        # One forward pass over both views: batch norm sees 2N images, as in the paper's code.
        z = (forward or self)(torch.cat([view1, view2]))
        z1, z2 = z.chunk(2)
        # On several processes: every rank's projections, with their gradients, so the negatives come from every
        # device and each rank computes the global loss (ablate.distributed); nothing changes on one process.
        z1, z2 = gather_from_ranks(z1), gather_from_ranks(z2)
        spec = self.spec
        return contrastive_loss(z1, z2, spec.loss, spec.temperature, spec.margin, spec.l2_normalize, spec.semi_hard)

    @torch.no_grad()
    def view_metrics(self, images: torch.Tensor, batch_size: int, generator: torch.Generator) -> dict[str, float]:
        """Table 5's contrastive-task columns on `images` (uint8, on the model's device): two views of
        each, made as in training, the projections in eval mode, then in batches of `batch_size`
        images (the training batch; the last, smaller batch is left out unless it is the only one):
        `contrastive_top1`, the share (%) of anchors whose positive is the most similar of the other
        view's embeddings, and `contrastive_entropy`, the mean entropy (nats) of the softmax over them
        (`contrastive_losses.contrastive_metrics`, as the paper's code measures both)."""
        count = images.shape[0]
        size = min(batch_size, count)
        was_training = self.training
        self.eval()  # batch-norm running statistics, nothing updated: the weights stay as trained
        correct, entropy = [], []
        try:
            for start in range(0, count - size + 1, size):
                view1, view2 = self.views.pair(images[start : start + size], generator)
                z1, z2 = self(torch.cat([view1, view2])).float().chunk(2)
                task = contrastive_metrics(z1, z2, self.spec.temperature, self.spec.l2_normalize)
                correct.append(task.correct)
                entropy.append(task.entropy)
        finally:
            self.train(was_training)
        return {
            "contrastive_top1": 100.0 * torch.cat(correct).float().mean().item(),
            "contrastive_entropy": torch.cat(entropy).mean().item(),
        }
