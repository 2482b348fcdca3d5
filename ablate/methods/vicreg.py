"""VICReg (Bardes, Ponce, LeCun, "VICReg: Variance-Invariance-Covariance Regularization for
Self-Supervised Learning", ICLR 2022).

Two views go through the same encoder and projector ("expander"), z = g(f(x)), N × d each. The loss
has three terms (paper §3.2, eq. 1-6; ε = 1e-4, γ = 1)::

    invariance   s(Z, Z') = mean over the N·d entries of (z − z')²            (MSE)
    variance     v(Z) = (1/d) Σ_j max(0, γ − √(Var(z_j) + ε))                 (eq. 1-2; Var unbiased)
    covariance   c(Z) = (1/d) Σ_{i≠j} C(Z)_ij²,  C(Z) = (Z − Z̄)ᵀ(Z − Z̄) / (N − 1)   (eq. 3-4)

    L = λ s(Z, Z') + μ [v(Z) + v(Z')] / 2 + ν [c(Z) + c(Z')]

The variance hinge keeps every dimension's std at least γ over the batch (no collapse to a
constant); the covariance term decorrelates the dimensions (no collapse onto a few directions).

Conventions, where the paper's text and its code differ (the published weights λ = μ = 25, ν = 1 were
tuned with the code, so the code's conventions are the ones used here):

* the invariance term is ``mse_loss(z_a, z_b)`` of the paper's Algorithm 1 and official code: the mean
  over all N·d entries. Eq. 5 as printed, (1/N) Σ_i ‖z_i − z'_i‖², is d times larger;
* the two branches' variance terms are averaged, ``mean(relu(1 − std_z_a)) / 2 + mean(relu(1 − std_z_b)) / 2``
  (official main_vicreg.py; eq. 6 writes the sum), while the covariance terms are summed,
  ``off_diagonal(cov_z_a).pow(2).sum() / d + off_diagonal(cov_z_b).pow(2).sum() / d`` (Algorithm 1).

Recipe: solo-learn's scripts/pretrain/cifar/vicreg.yaml (LARS lr 0.3, wd 1e-4, projector 2048 → 2048)
and the paper's weights 25 / 25 / 1; the spec's defaults. The projector is ``mlp(feat, hidden, out,
hidden_layers=2)``, the paper's 3-layer expander (BN and ReLU after the first two layers). Both views
go through the network in one pass (batch norm sees 2N images, as SimCLR does here); the variance
and covariance are still taken per view. On several processes (`ablate.distributed`) every term is over the global
batch: every rank gathers z1, z2 from every rank with their gradients and computes the same, global loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ablate.config.methods import VICRegSpec
from ablate.distributed import gather_from_ranks
from ablate.methods.base import MethodContext, ProjectionMethod
from ablate.models.heads import mlp

PROJECTOR_HIDDEN_LAYERS = 2  # the paper's expander: 3 linear layers in all
VARIANCE_EPS = 1e-4  # ε of eq. 1: keeps the gradient of the std finite when a variance reaches 0
TARGET_STD = 1.0  # γ of eq. 1


def invariance_term(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """s(Z, Z'): the mean squared difference over every entry (Algorithm 1's mse_loss)."""
    return F.mse_loss(z1, z2)


def variance_term(z: torch.Tensor) -> torch.Tensor:
    """v(Z) = mean_j relu(γ − √(Var(z_j) + ε)), Var over the batch and unbiased (eq. 1-2)."""
    return F.relu(TARGET_STD - torch.sqrt(z.var(dim=0) + VARIANCE_EPS)).mean()


def covariance_term(z: torch.Tensor) -> torch.Tensor:
    """c(Z) = Σ_{i≠j} C_ij² / d with C the unbiased covariance matrix of the dimensions (eq. 3-4)."""
    count, dims = z.shape
    centred = z - z.mean(dim=0)
    covariance = centred.T @ centred / (count - 1)
    # The off-diagonal part by subtracting the diagonal: a boolean selection would make the host wait.
    off_diagonal = covariance - torch.diag_embed(covariance.diagonal())
    return off_diagonal.pow(2).sum() / dims


def vicreg_terms(z1: torch.Tensor, z2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(invariance, variance, covariance), unweighted, in the inputs' precision; the branches combined
    as the module docstring says."""
    variance = (variance_term(z1) + variance_term(z2)) / 2
    covariance = covariance_term(z1) + covariance_term(z2)
    return invariance_term(z1, z2), variance, covariance


def vicreg_loss(z1: torch.Tensor, z2: torch.Tensor, invariance_weight: float, variance_weight: float,
                covariance_weight: float) -> torch.Tensor:
    """λ s + μ v + ν c (eq. 6, with the branch conventions of the module docstring)."""
    invariance, variance, covariance = vicreg_terms(z1, z2)
    return invariance_weight * invariance + variance_weight * variance + covariance_weight * covariance


class VICReg(ProjectionMethod):
    """VICReg: invariance (MSE), variance (std hinge) and covariance (off-diagonal) terms on two views'
    projections. Trains on the unlabelled split; no target network, no negatives, no predictor.

    Example (one training step's loss on a batch of uint8 images)::

        >>> import torch
        >>> from ablate.augment import ViewMaker
        >>> from ablate.config import AugmentSpec, ModelSpec
        >>> from ablate.config.methods import VICRegSpec
        >>> from ablate.methods.base import MethodContext
        >>> from ablate.models import build_encoder
        >>> model = ModelSpec(arch="small_cnn")
        >>> context = MethodContext(build_encoder(model, 16), ViewMaker(AugmentSpec(ops=["crop", "color"])), model, num_classes=10)
        >>> vicreg = VICReg(VICRegSpec(proj_hidden_dim=64, proj_output_dim=32), context)
        >>> images = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8)
        >>> view1, view2 = vicreg.make_inputs(images, torch.zeros(8, dtype=torch.long), torch.Generator().manual_seed(0))
        >>> loss = vicreg.loss((view1, view2), torch.zeros(8, dtype=torch.long))
        >>> loss.shape, bool(loss > 0)
        (torch.Size([]), True)
        >>> vicreg.embedding(torch.randn(8, vicreg.encoder.feature_dim)).shape
        torch.Size([8, 32])
    """

    spec_class = VICRegSpec

    def __init__(self, spec: VICRegSpec, context: MethodContext):
        super().__init__(spec, context)
        self.projector = mlp(self.encoder.feature_dim, spec.proj_hidden_dim, spec.proj_output_dim, hidden_layers=PROJECTOR_HIDDEN_LAYERS)
        self.weights = (spec.invariance_weight, spec.variance_weight, spec.covariance_weight)

    def projection_loss(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        """λ·invariance + μ·variance + ν·covariance of the two views' projections, over the global batch."""
        # Variance and covariance are batch statistics: on several processes, of every rank's rows (ablate.distributed).
        z1, z2 = gather_from_ranks(z1), gather_from_ranks(z2)
        return vicreg_loss(z1, z2, *self.weights)
