"""DINO (Caron et al., "Emerging Properties in Self-Supervised Vision Transformers", ICCV 2021).

A student (encoder f_s, head g_s) learns to match a teacher (f_t, g_t: an EMA of the student) on
two views of each image. Both networks end in K prototype logits; the teacher's are centred by C
and sharpened by a low temperature, the student's are not centred (paper Algorithm 1)::

    P_t(x) = softmax((g_t(f_t(x)) − C) / τ_t)        (no gradient: stop-gradient on the teacher)
    log P_s(x) = log_softmax(g_s(f_s(x)) / τ_s)
    H(t, s) = − Σ_k t_k log s_k
    loss = ½ [H(P_t(x1), P_s(x2)) + H(P_t(x2), P_s(x1))], averaged over the batch
    C ← m·C + (1 − m)·mean over both views' batch of g_t(f_t(x))   (after the loss, raw teacher logits)
    θ_t ← λ·θ_t + (1 − λ)·θ_s after every optimiser step, λ on BYOL's cosine from `momentum_base` to `momentum_final`

Centring (which alone would favour the uniform distribution) and sharpening (which alone would let
one prototype dominate) balance each other and prevent collapse (paper §3.1, §5.3).

Head (paper §3.1 and appendix): a 3-layer MLP (hidden `proj_hidden_dim`, output the bottleneck
`proj_output_dim`), ℓ2 normalisation, then a weight-normalised linear layer to the `num_prototypes`
logits without bias whose weight-norm scale g is fixed to 1 ("norm_last_layer"), so every
prototype is a unit vector and the logits are cosine similarities.

Recipe: the defaults of `DINOSpec` are solo-learn's CIFAR-10 recipe (scripts/pretrain/cifar/dino.yaml:
head 2048 → 256 → 4096 prototypes, teacher momentum 0.9995 → 1, LARS lr 0.3) with the paper's
temperatures (student 0.1, teacher 0.04 → 0.07 over a linear warm-up; centre momentum 0.9).

Choices made here, and why:

* Two views, no multi-crop: ablate's grid compares augmentations of a pair of views (SimCLR's
  Figure 5), the same for every method; DINO's extra local crops would be a different protocol.
* The MLP is the shared `ablate.models.heads.mlp`: Linear → BatchNorm → ReLU twice, then a Linear
  with bias. Batch norm is the paper's choice for ResNet backbones (ablate's encoders are
  convolutional); the activation is ReLU, the helper's, where the paper's code uses GELU.
  Layers keep PyTorch's default initialisation (the paper's code uses a truncated normal, std 0.02).
* Weight normalisation is `torch.nn.utils.parametrizations.weight_norm` (W = g·V/‖V‖ per row) with g
  set to 1 and frozen (``requires_grad`` False: the optimiser never sees it, the EMA keeps it at 1);
  only the direction V is trained. Its tensors are plain state_dict entries (weights_only loading).
* The teacher-temperature warm-up is counted in optimiser steps (the paper counts epochs): after k of
  K steps, τ_t = start + (final − start)·k / (fraction·K) while k < fraction·K, then `teacher_temperature`.
  The total K is known only in `after_step(step, total)`, so the temperature of the *next* step is
  kept in a buffer (`next_teacher_temperature`: in the state_dict, so a resumed run goes on with the
  same value) and set there after every step. The first step of a fresh run is step k = 0, whose
  temperature does not depend on K: `teacher_temperature_start` (or `teacher_temperature` when the
  warm-up fraction is 0).
* The centre is a registered buffer (state_dict, moved by ``.to``), updated in `loss` with that
  step's teacher logits, after the loss is computed (Algorithm 1's order), in place and without any
  host sync — and only in training mode, as batch norm updates its running statistics.
* On several processes (`ablate.distributed`) the centre moves by the teacher logits' mean over the global
  batch (the mean of every rank's batch mean: one all-reduce), so it is the same on every rank and equal to one
  process's; each rank's loss is the mean over its own rows (DDP's average is the global mean), batch norm is
  over the global batch in student and teacher, and the teacher's EMA is the same on every rank.
* Not implemented (not in `DINOSpec`): the paper's freezing of the last layer during the first
  epoch, gradient clipping, and its weight-decay and learning-rate schedules (ablate's optimiser and
  schedule are shared by every method).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from ablate.config.methods import DINOSpec
from ablate.distributed import mean_over_ranks
from ablate.methods.base import Forward, MethodContext, TwoViewMethod
from ablate.methods.momentum import cosine_momentum, ema_update_, frozen_copy
from ablate.models.heads import mlp

STUDENT = "student"
TEACHER = "teacher"


def prototype_layer(bottleneck_dim: int, num_prototypes: int) -> nn.Linear:
    """Linear bottleneck → K without bias, weight-normalised with g fixed to 1: unit-norm prototype rows."""
    layer = weight_norm(nn.Linear(bottleneck_dim, num_prototypes, bias=False), dim=0)
    scale = layer.parametrizations.weight.original0  # g, one per prototype (row)
    with torch.no_grad():
        scale.fill_(1.0)
    scale.requires_grad_(False)  # "norm_last_layer": only the direction is learnt
    return layer


class DINOHead(nn.Module):
    """g(h): MLP to the bottleneck, ℓ2 normalisation, weight-normalised prototypes (paper §3.1)."""

    def __init__(self, feature_dim: int, hidden_dim: int, bottleneck_dim: int, num_prototypes: int):
        super().__init__()
        self.mlp = mlp(feature_dim, hidden_dim, bottleneck_dim, hidden_layers=2)
        self.prototypes = prototype_layer(bottleneck_dim, num_prototypes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """The K prototype logits (cosine similarities of the normalised bottleneck to each prototype)."""
        return self.prototypes(F.normalize(self.mlp(features), dim=1))


def teacher_temperature_at(step: int, total_steps: int, start: float, final: float, warmup_fraction: float) -> float:
    """τ_t of the step taken after `step` steps of `total_steps`: linear from `start` at step 0 to `final`
    at step warmup_fraction·total_steps, then constant (the paper's warm-up, in steps instead of epochs)."""
    warmup_steps = warmup_fraction * total_steps
    if warmup_steps <= 0 or step >= warmup_steps:
        return final
    return start + (final - start) * step / warmup_steps


def dino_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    center: torch.Tensor,
    student_temperature: float,
    teacher_temperature: float | torch.Tensor,
) -> torch.Tensor:
    """½ [H(P_t(x1), P_s(x2)) + H(P_t(x2), P_s(x1))], averaged over the batch (paper Algorithm 1).

    Logits are [2N, K], the first view's N rows then the second's; the teacher's are centred by
    `center` ([1, K]) and sharpened by `teacher_temperature`, and carry no gradient. Computed in float32.
    """
    student_log_probs = F.log_softmax(student_logits.float() / student_temperature, dim=1)
    teacher_probs = F.softmax((teacher_logits.float().detach() - center) / teacher_temperature, dim=1)
    student1, student2 = student_log_probs.chunk(2)
    teacher1, teacher2 = teacher_probs.chunk(2)
    # Each view's teacher output is the target of the *other* view's student output.
    cross_entropy_12 = -(teacher1 * student2).sum(dim=1).mean()
    cross_entropy_21 = -(teacher2 * student1).sum(dim=1).mean()
    return (cross_entropy_12 + cross_entropy_21) / 2


@torch.no_grad()
def update_center_(center: torch.Tensor, teacher_logits: torch.Tensor, momentum: float) -> None:
    """C ← m·C + (1 − m)·(batch mean of the teacher logits), in place (device ops only: no host sync). On
    several processes the mean is over the global batch, so that every rank keeps the same centre."""
    batch_center = mean_over_ranks(teacher_logits.float().mean(dim=0, keepdim=True))
    center.mul_(momentum).add_(batch_center, alpha=1.0 - momentum)


class DINO(TwoViewMethod):
    """DINO: a student matches an EMA teacher's centred, sharpened distribution over prototypes.

    Trains on the unlabelled split (`DatasetSplits.pretrain`). Student = ``encoder`` + ``head``;
    teacher = ``teacher_encoder`` + ``teacher_head`` (frozen copies, EMA-updated in `after_step`).

    Example (one training step's loss on a batch of uint8 images; the loss also moves the centre)::

        >>> import torch
        >>> from ablate.augment import ViewMaker
        >>> from ablate.config import AugmentSpec, ModelSpec
        >>> from ablate.config.methods import DINOSpec
        >>> from ablate.methods.base import MethodContext
        >>> from ablate.models import build_encoder
        >>> model = ModelSpec(arch="small_cnn")
        >>> context = MethodContext(build_encoder(model, 16), ViewMaker(AugmentSpec(ops=["crop", "color"])), model, num_classes=10)
        >>> dino = DINO(DINOSpec(proj_hidden_dim=64, proj_output_dim=16, num_prototypes=32), context)
        >>> images = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8)
        >>> view1, view2 = dino.make_inputs(images, torch.zeros(8, dtype=torch.long), torch.Generator().manual_seed(0))
        >>> dino(view1, "teacher").shape
        torch.Size([8, 32])
        >>> float(dino.next_teacher_temperature), bool(dino.center.abs().sum() == 0)
        (0.03999999910593033, True)
        >>> loss = dino.loss((view1, view2), torch.zeros(8, dtype=torch.long))
        >>> loss.shape, bool(loss > 0), bool(dino.center.abs().sum() > 0)
        (torch.Size([]), True, True)
        >>> dino.after_step(1, total_steps=100)  # teacher EMA; the warm-up is 5 steps of 100
        >>> round(float(dino.next_teacher_temperature), 4)
        0.046
    """

    spec_class = DINOSpec
    target_branch = "teacher"

    spec: DINOSpec
    center: torch.Tensor
    next_teacher_temperature: torch.Tensor

    def __init__(self, spec: DINOSpec, context: MethodContext):
        super().__init__(spec, context)
        self.head = DINOHead(self.encoder.feature_dim, spec.proj_hidden_dim, spec.proj_output_dim, spec.num_prototypes)
        self.teacher_encoder = frozen_copy(self.encoder)
        self.teacher_head = frozen_copy(self.head)
        self.register_buffer("center", torch.zeros(1, spec.num_prototypes))
        # The temperature of the next step's teacher (see the module docstring); step 0's needs no total.
        first = teacher_temperature_at(0, 1, spec.teacher_temperature_start, spec.teacher_temperature, spec.teacher_warmup_fraction)
        self.register_buffer("next_teacher_temperature", torch.tensor(first))

    def forward(self, images: torch.Tensor, branch: str = STUDENT) -> torch.Tensor:
        """Prototype logits g(f(x)) of the student or the teacher (the part that `torch.compile` compiles)."""
        if branch == STUDENT:
            return self.head(self.encoder(images))
        if branch == TEACHER:
            return self.teacher_head(self.teacher_encoder(images))
        raise ValueError(f"branch is {STUDENT!r} or {TEACHER!r}, not {branch!r}")

    def embedding(self, features: torch.Tensor) -> torch.Tensor:
        """The student's prototype logits g_s(h), for the collapse diagnostic.

        These are what the loss compares (through a softmax), and both of DINO's collapses show in
        them: one prototype dominating for every image (a common offset, so the ℓ2-normalised logits
        hardly vary between images) and a uniform output (logits alike for every image).
        """
        return self.head(features)

    def loss(self, inputs: tuple[torch.Tensor, ...], labels: torch.Tensor, forward: Forward | None = None) -> torch.Tensor:
        """DINO's loss of the two views (labels are not used); in training mode, then moves the centre."""
        view1, view2 = inputs
        run = forward or self
        # One forward pass over both views per network: batch norm sees 2N images, as in SimCLR.
        both = torch.cat([view1, view2])
        student_logits = run(both, STUDENT)
        with torch.no_grad():
            teacher_logits = run(both, TEACHER)
        loss = dino_loss(student_logits, teacher_logits, self.center, self.spec.student_temperature, self.next_teacher_temperature)
        if self.training:
            update_center_(self.center, teacher_logits, self.spec.center_momentum)
        return loss

    def after_step(self, step: int, total_steps: int) -> None:
        """Teacher EMA with the cosine momentum of this step; the next step's teacher temperature."""
        momentum = cosine_momentum(step, total_steps, self.spec.momentum_base, self.spec.momentum_final)
        ema_update_(self.teacher_encoder, self.encoder, momentum)
        ema_update_(self.teacher_head, self.head, momentum)
        spec = self.spec
        # `step` steps are done: the next loss is the step after them.
        temperature = teacher_temperature_at(step, total_steps, spec.teacher_temperature_start, spec.teacher_temperature, spec.teacher_warmup_fraction)
        self.next_teacher_temperature.fill_(temperature)  # a device fill: no host sync
