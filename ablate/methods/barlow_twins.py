"""Barlow Twins (Zbontar, Jing, Misra, LeCun, Deny, "Barlow Twins: Self-Supervised Learning via
Redundancy Reduction", ICML 2021).

Two views go through the same encoder and projector (z = g(f(x)), N × D each). Each dimension of
each view's projections is standardised over the batch, and the cross-correlation matrix of the two
views is pushed to the identity (paper eq. 1-2)::

    ẑ  = (z − mean_b z) / std_b z                 per dimension, over the N images of the batch
    C  = ẑ1ᵀ ẑ2 / N                               (D × D; C_ij in [−1, 1])
    L  = scale · [ Σ_i (1 − C_ii)²  +  λ Σ_i Σ_{j≠i} C_ij² ]

The first sum (invariance) makes the views agree dimension by dimension; the second (redundancy
reduction) decorrelates different dimensions, which is what keeps the embedding from collapsing.

Recipe: solo-learn's scripts/pretrain/cifar/barlow.yaml (LARS lr 0.3, wd 1e-4, projector 2048 → 2048,
scale_loss 0.1; λ = 0.0051 as in the paper); the spec's defaults.

Choices made here:

* **Standardisation**: the biased std with ε = 1e-5 inside the square root, ẑ = (z − μ) / √(σ²_biased + ε):
  exactly what the paper's official code does (a ``BatchNorm1d(affine=False)`` in train mode). The
  paper's pseudo-code (Algorithm 1) writes ``z.std(0)``, which in PyTorch is the unbiased std; with it
  identical views give C_ii = (N − 1)/N instead of 1, so the biased one is the one whose optimum is
  the identity.
* **Projector**: ``mlp(feat, hidden, out, hidden_layers=2)``, the paper's 3 linear layers (BN and ReLU
  after the first two, none on the output).
* **One forward pass over both views** (concatenated): the projector's batch norms see 2N images, as
  SimCLR does here; the standardisation in the loss is still per view (over each view's N).
* **On several processes** (`ablate.distributed`) the standardisation and the cross-correlation are over the
  global batch: every rank gathers z1, z2 from every rank with their gradients and computes the same, global
  loss (one process: nothing changes).
"""

from __future__ import annotations

import torch

from ablate.config.methods import BarlowTwinsSpec
from ablate.distributed import gather_from_ranks
from ablate.methods.base import MethodContext, ProjectionMethod
from ablate.models.heads import mlp

PROJECTOR_HIDDEN_LAYERS = 2  # the paper's projector: 3 linear layers in all
STANDARDISE_EPS = 1e-5  # BatchNorm1d's default ε, which the paper's code uses to standardise


def standardise(z: torch.Tensor, eps: float = STANDARDISE_EPS) -> torch.Tensor:
    """Each column (dimension) to mean 0 and biased variance 1 over the batch (BatchNorm1d without affine)."""
    return (z - z.mean(dim=0)) / torch.sqrt(z.var(dim=0, unbiased=False) + eps)


def cross_correlation(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """C = ẑ1ᵀ ẑ2 / N (paper eq. 2): correlations between the dimensions of the two views, D × D."""
    return standardise(z1).T @ standardise(z2) / z1.shape[0]


def barlow_twins_loss(z1: torch.Tensor, z2: torch.Tensor, off_diagonal_weight: float, scale: float = 1.0) -> torch.Tensor:
    """scale · [Σ_i (1 − C_ii)² + λ Σ_{i≠j} C_ij²] (paper eq. 1), in the inputs' precision."""
    correlation = cross_correlation(z1, z2)
    diagonal = correlation.diagonal()
    invariance = (1 - diagonal).pow(2).sum()
    # The off-diagonal entries without a mask: the diagonal is subtracted from the matrix, not selected
    # out of it (a boolean selection has a data-dependent size, which would make the host wait).
    redundancy = (correlation - torch.diag_embed(diagonal)).pow(2).sum()
    return scale * (invariance + off_diagonal_weight * redundancy)


class BarlowTwins(ProjectionMethod):
    """Barlow Twins: the cross-correlation of two views' standardised projections is pushed to the identity.

    Trains on the unlabelled split; no target network, no negatives, no predictor.

    Example (one training step's loss on a batch of uint8 images)::

        >>> import torch
        >>> from ablate.augment import ViewMaker
        >>> from ablate.config import AugmentSpec, ModelSpec
        >>> from ablate.config.methods import BarlowTwinsSpec
        >>> from ablate.methods.base import MethodContext
        >>> from ablate.models import build_encoder
        >>> model = ModelSpec(arch="small_cnn")
        >>> context = MethodContext(build_encoder(model, 16), ViewMaker(AugmentSpec(ops=["crop", "color"])), model, num_classes=10)
        >>> barlow = BarlowTwins(BarlowTwinsSpec(proj_hidden_dim=64, proj_output_dim=32), context)
        >>> images = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8)
        >>> view1, view2 = barlow.make_inputs(images, torch.zeros(8, dtype=torch.long), torch.Generator().manual_seed(0))
        >>> loss = barlow.loss((view1, view2), torch.zeros(8, dtype=torch.long))
        >>> loss.shape, bool(loss > 0)
        (torch.Size([]), True)
        >>> barlow.embedding(torch.randn(8, barlow.encoder.feature_dim)).shape
        torch.Size([8, 32])
    """

    spec_class = BarlowTwinsSpec

    def __init__(self, spec: BarlowTwinsSpec, context: MethodContext):
        super().__init__(spec, context)
        self.projector = mlp(self.encoder.feature_dim, spec.proj_hidden_dim, spec.proj_output_dim, hidden_layers=PROJECTOR_HIDDEN_LAYERS)
        self.off_diagonal_weight = spec.off_diagonal_weight
        self.scale_loss = spec.scale_loss

    def projection_loss(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        """Barlow Twins' loss of the two views' projections (float32: D² correlations), over the global batch."""
        # Batch statistics: on several processes they must be those of every rank's rows (ablate.distributed).
        z1, z2 = gather_from_ranks(z1), gather_from_ranks(z2)
        return barlow_twins_loss(z1, z2, self.off_diagonal_weight, self.scale_loss)
