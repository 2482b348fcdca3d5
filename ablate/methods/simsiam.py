"""SimSiam (Chen & He, "Exploring Simple Siamese Representation Learning", CVPR 2021).

Two views x1, x2 of an image go through the same encoder f and projector g (z = g(f(x))); a
predictor h maps one view's projection onto the other's (p = h(z)). The loss is the symmetrised
negative cosine similarity against a stop-gradient target (paper eq. 1-2)::

    D(p, z) = − (p / ‖p‖₂) · (z / ‖z‖₂)              averaged over the batch
    L       = D(p1, stopgrad(z2)) / 2 + D(p2, stopgrad(z1)) / 2

so L lies in [−1, 1] (−1: every prediction points exactly along its target). Nothing in L pushes
different images apart; the paper shows (§4.1, Figure 2; §4.2, Table 1) that without the
stop-gradient, or without the predictor, the outputs collapse to a constant: the two spec switches
`stop_gradient` and `predictor` reproduce those ablations.

Recipe: solo-learn's scripts/pretrain/cifar/simsiam.yaml (SGD lr 0.5, wd 1e-5, projector 2048 → 2048,
predictor bottleneck 512; the spec's defaults).

Choices made here:

* **Projector depth: 2 layers** (Linear → BN → ReLU → Linear → BN, ``mlp(..., hidden_layers=1,
  output_norm=True)``), the paper's CIFAR variant (Appendix D: a 2-layer projection MLP on CIFAR-10),
  instead of the 3-layer ImageNet projector (§3) that solo-learn's simsiam.py also uses on CIFAR. Why:
  this toolkit trains on small images (CIFAR, `shapes`) with small backbones, where the paper itself
  uses 2 layers, and it is one hidden² layer cheaper per step. The output batch norm is
  kept (the paper's heads put BN on the projector's output; its code makes it non-affine, our shared
  `mlp` gives it a learnable scale and shift).
* **Predictor**: ``mlp(d, pred_hidden_dim, d)`` — a bottleneck (Linear → BN → ReLU → Linear), no BN
  on its output (paper §3, "Baseline settings").
* **One forward pass over both views** (concatenated), so the batch norms see 2N images, as
  SimCLR does here; the paper's code runs the views one at a time (BN over N each).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ablate.config.methods import SimSiamSpec
from ablate.methods.base import Forward, MethodContext, TwoViewMethod
from ablate.models.heads import mlp

PROJECTOR_HIDDEN_LAYERS = 1  # the paper's CIFAR projector: 2 linear layers in all (module docstring)


def negative_cosine(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """D(p, z) = −cos(p, z), averaged over the batch (paper eq. 1)."""
    return -F.cosine_similarity(prediction, target, dim=1).mean()


def simsiam_loss(
    p1: torch.Tensor, p2: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor, stop_gradient: bool = True
) -> torch.Tensor:
    """L = D(p1, sg(z2)) / 2 + D(p2, sg(z1)) / 2 (paper eq. 2), in the inputs' precision.

    With `stop_gradient` false the targets keep their gradient (the paper's §4.1 ablation, which
    collapses).
    """
    if stop_gradient:
        z1, z2 = z1.detach(), z2.detach()
    return negative_cosine(p1, z2) / 2 + negative_cosine(p2, z1) / 2


class SimSiam(TwoViewMethod):
    """SimSiam: encoder + projector on both views, a predictor on each, negative cosine to the other view's
    stop-gradient projection (symmetrised). No negatives, no target network.

    Trains on the unlabelled split. `SimSiamSpec(predictor=False)` compares the projections directly
    (p = z; no predictor module exists then); `SimSiamSpec(stop_gradient=False)` lets gradients flow
    through the targets too: both are the paper's collapse ablations.

    Example (one training step's loss on a batch of uint8 images; the loss lies in [−1, 1])::

        >>> import torch
        >>> from ablate.augment import ViewMaker
        >>> from ablate.config import AugmentSpec, ModelSpec
        >>> from ablate.config.methods import SimSiamSpec
        >>> from ablate.methods.base import MethodContext
        >>> from ablate.models import build_encoder
        >>> model = ModelSpec(arch="small_cnn")
        >>> context = MethodContext(build_encoder(model, 16), ViewMaker(AugmentSpec(ops=["crop", "color"])), model, num_classes=10)
        >>> simsiam = SimSiam(SimSiamSpec(proj_hidden_dim=64, proj_output_dim=32, pred_hidden_dim=16), context)
        >>> images = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8)
        >>> view1, view2 = simsiam.make_inputs(images, torch.zeros(8, dtype=torch.long), torch.Generator().manual_seed(0))
        >>> loss = simsiam.loss((view1, view2), torch.zeros(8, dtype=torch.long))
        >>> loss.shape, bool(-1 <= loss <= 1)
        (torch.Size([]), True)
        >>> simsiam.embedding(torch.randn(8, simsiam.encoder.feature_dim)).shape
        torch.Size([8, 32])
    """

    spec_class = SimSiamSpec

    def __init__(self, spec: SimSiamSpec, context: MethodContext):
        super().__init__(spec, context)
        self.projector = mlp(
            self.encoder.feature_dim, spec.proj_hidden_dim, spec.proj_output_dim,
            hidden_layers=PROJECTOR_HIDDEN_LAYERS, output_norm=True,
        )
        # `predictor: false` (paper §4.2): no module at all, so no parameters the optimiser could train.
        self.predictor: nn.Module | None = (
            mlp(spec.proj_output_dim, spec.pred_hidden_dim, spec.proj_output_dim) if spec.predictor else None
        )
        self.stop_gradient = spec.stop_gradient

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(z, p) = (g(f(x)), h(g(f(x)))); p is z itself without a predictor (the part torch.compile compiles)."""
        z = self.projector(self.encoder(images))
        return z, (self.predictor(z) if self.predictor is not None else z)

    def embedding(self, features: torch.Tensor) -> torch.Tensor:
        """z = g(h): the projection the loss compares against (for the collapse diagnostic)."""
        return self.projector(features)

    def loss(self, inputs: tuple[torch.Tensor, ...], labels: torch.Tensor, forward: Forward | None = None) -> torch.Tensor:
        """Symmetrised negative cosine of each view's prediction to the other's projection (labels unused)."""
        view1, view2 = inputs
        z, p = (forward or self)(torch.cat([view1, view2]))
        z1, z2 = z.float().chunk(2)  # float32: the network may have run in bf16 autocast
        p1, p2 = p.float().chunk(2)
        return simsiam_loss(p1, p2, z1, z2, self.stop_gradient)
