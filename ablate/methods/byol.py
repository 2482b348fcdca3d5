"""BYOL (Grill et al., "Bootstrap Your Own Latent", NeurIPS 2020).

An online network (encoder f_θ, projector g_θ, predictor q_θ) predicts the projection of the other
view made by a target network (f_ξ, g_ξ), whose weights follow the online ones by an exponential
moving average and receive no gradient. The loss (paper eq. 2) is the normalised MSE between the
prediction p = q_θ(g_θ(f_θ(v))) and the target projection z' = g_ξ(f_ξ(v'))::

    L = ‖ p/‖p‖ − z'/‖z'‖ ‖² = 2 − 2 · cos(p, z')

symmetrised by swapping the views (L̃: v' through the online network, v through the target), and
the training loss is L + L̃ (eq. 2 and below). After every optimiser step ξ ← τ ξ + (1 − τ) θ with
τ = 1 − (1 − τ_base)·(cos(πk/K) + 1)/2 (§3.2; `ablate.methods.momentum.cosine_momentum`, which also
allows a final τ other than 1).

Recipe: solo-learn's CIFAR-10 BYOL (scripts/pretrain/cifar/byol.yaml; the spec's defaults: projector
4096 → 256, predictor hidden 4096, τ 0.99 → 1.0). Projector and predictor are `mlp(in, hidden, out)`:
Linear → BN → ReLU → Linear, as in the paper (§3.3).

Choices, and why:

* **Scale: the sum L + L̃ of the two orders**, each the mean over the batch of 2 − 2·cos: the
  paper's total loss (and solo-learn's, which adds the two orders). It lies in [0, 8]; a value of
  4 means the predictions are orthogonal to the targets.
* **One forward pass per network over both views** (``torch.cat``): batch norm sees 2N images, as
  in SimCLR. The target runs in train mode too, so its batch norm uses batch statistics and keeps
  its own running statistics, as in the paper's code.
* **On several processes** (`ablate.distributed`) both networks' batch norms are over the global batch (the
  target's forward, without gradients, takes part in the same all-reduces), each rank's loss is the mean over
  its own rows (DDP's average is the global mean), and the target's EMA is the same on every rank, which all
  hold the same online weights after each DDP step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ablate.config.methods import BYOLSpec
from ablate.methods.base import Forward, MethodContext, TwoViewMethod
from ablate.methods.momentum import cosine_momentum, ema_update_, frozen_copy
from ablate.models.heads import mlp


def normalised_mse(predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """BYOL's L (eq. 2): mean over the batch of ‖p̂ − ẑ‖² = 2 − 2·cos(p, z), rows ℓ2-normalised."""
    return (2 - 2 * F.cosine_similarity(predictions, targets, dim=1)).mean()


class BYOL(TwoViewMethod):
    """BYOL: an online encoder + projector + predictor regresses an EMA target's projection of the other view.

    Trains on the unlabelled split (`DatasetSplits.pretrain`).

    Example (one step's loss, then the target's EMA update)::

        >>> import torch
        >>> from ablate.augment import ViewMaker
        >>> from ablate.config import AugmentSpec, ModelSpec
        >>> from ablate.config.methods import BYOLSpec
        >>> from ablate.methods.base import MethodContext
        >>> from ablate.models import build_encoder
        >>> model = ModelSpec(arch="small_cnn")
        >>> context = MethodContext(build_encoder(model, 16), ViewMaker(AugmentSpec(ops=["crop", "color"])), model, num_classes=10)
        >>> byol = BYOL(BYOLSpec(proj_hidden_dim=32, proj_output_dim=16, pred_hidden_dim=32), context)
        >>> images = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8)
        >>> views = byol.make_inputs(images, torch.zeros(8, dtype=torch.long), torch.Generator().manual_seed(0))
        >>> loss = byol.loss(views, torch.zeros(8, dtype=torch.long))
        >>> loss.shape, bool(0 < loss < 8)
        (torch.Size([]), True)
        >>> byol.target_momentum(0, 100), byol.target_momentum(100, 100)
        (0.99, 1.0)
        >>> byol.after_step(1, 100)
    """

    spec_class = BYOLSpec
    target_branch = "target"

    def __init__(self, spec: BYOLSpec, context: MethodContext):
        super().__init__(spec, context)
        self.projector = mlp(self.encoder.feature_dim, spec.proj_hidden_dim, spec.proj_output_dim)
        self.predictor = mlp(spec.proj_output_dim, spec.pred_hidden_dim, spec.proj_output_dim)
        self.target_encoder = frozen_copy(self.encoder)
        self.target_projector = frozen_copy(self.projector)

    def forward(self, images: torch.Tensor, branch: str = "online") -> torch.Tensor:
        """The online prediction q(g(f(x))) ("online") or the target projection g_ξ(f_ξ(x)) ("target").
        This is the part that `torch.compile` compiles (once per branch)."""
        if branch == "online":
            return self.predictor(self.projector(self.encoder(images)))
        if branch == "target":
            return self.target_projector(self.target_encoder(images))
        raise ValueError(f"BYOL has branches 'online' and 'target', not {branch!r}")

    def embedding(self, features: torch.Tensor) -> torch.Tensor:
        """z = g_θ(h): the online projection (for the collapse diagnostic; the predictor's output is
        compared with the target's projection, which lives in the same space)."""
        return self.projector(features)

    def loss(self, inputs: tuple[torch.Tensor, ...], labels: torch.Tensor, forward: Forward | None = None) -> torch.Tensor:
        """L + L̃: each view's prediction against the target's projection of the other view."""
        view1, view2 = inputs
        both = torch.cat([view1, view2])
        run = forward or self
        predictions = run(both, "online").float()
        with torch.no_grad():  # the stop-gradient on the target branch
            targets = run(both, "target").float()
        p1, p2 = predictions.chunk(2)
        z1, z2 = targets.chunk(2)
        return normalised_mse(p1, z2) + normalised_mse(p2, z1)

    def target_momentum(self, step: int, total_steps: int) -> float:
        """τ after step `step` of `total_steps`: τ_base at step 0, τ_final at the last step (cosine)."""
        return cosine_momentum(step, total_steps, self.spec.momentum_base, self.spec.momentum_final)

    def after_step(self, step: int, total_steps: int) -> None:
        """Target encoder and projector ← τ · target + (1 − τ) · online."""
        momentum = self.target_momentum(step, total_steps)
        ema_update_(self.target_encoder, self.encoder, momentum)
        ema_update_(self.target_projector, self.projector, momentum)
