"""Optimisers and the learning-rate schedule of the paper: LARS / SGD / AdamW, warm-up then cosine.

Learning rates in specs are *per 256 images*: lr = base_lr × batch_size / 256 (paper §B.1).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ablate.config import TrainSpec


class LARS(torch.optim.Optimizer):
    """Layer-wise Adaptive Rate Scaling (You et al., 2017) exactly as SimCLR's official code applies it.

    For each parameter tensor w with gradient g, in the groups with ``adapt=True``::

        u     = g + weight_decay · w
        trust = eta · ‖w‖ / ‖u‖        (1 when ‖w‖ = 0 or ‖u‖ = 0)
        v     = momentum · v + lr · trust · u
        w     = w − v

    The learning rate enters the momentum buffer (the official ``classic_momentum``), so a schedule
    changes the size of new steps only, not of the accumulated ones. Groups with ``adapt=False`` and
    ``weight_decay=0`` (biases and batch-norm parameters, see `split_decay_groups`) skip both the
    decay and the trust ratio: there v = momentum · v + lr · g. The whole group is updated with
    ``torch._foreach_*`` kernels, a handful of launches per step instead of ~10 per tensor.
    """

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0, eta: float = 1e-3):
        if lr < 0 or not 0 <= momentum < 1 or weight_decay < 0 or eta <= 0:
            raise ValueError(f"LARS needs lr ≥ 0, momentum in [0, 1), weight_decay ≥ 0, eta > 0; got {lr}, {momentum}, {weight_decay}, {eta}")
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta, adapt=True)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            updates = [p.grad for p in params]
            if group["weight_decay"]:
                updates = torch._foreach_add(updates, params, alpha=group["weight_decay"])
            if group["adapt"]:
                param_norms = torch.stack(torch._foreach_norm(params))
                update_norms = torch.stack(torch._foreach_norm(updates))
                usable = (param_norms > 0) & (update_norms > 0)
                trust = torch.where(usable, group["eta"] * param_norms / update_norms, torch.ones_like(param_norms))
                updates = torch._foreach_mul(updates, list(trust.unbind()))
            buffers = []
            for param, update in zip(params, updates):
                state = self.state[param]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(param)
                buffers.append(state["momentum_buffer"])
            torch._foreach_mul_(buffers, group["momentum"])
            torch._foreach_add_(buffers, updates, alpha=group["lr"])
            torch._foreach_sub_(params, buffers)
        return loss


def split_decay_groups(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(weights, biases and norm parameters): the second group is excluded from decay and adaptation.

    Every parameter of at most one dimension is a bias or a batch-norm scale/shift (the official
    code excludes names containing 'bias' and 'batch_normalization'); convolution and linear
    weights have two or more.
    """
    decay, no_decay = [], []
    for param in model.parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim <= 1 else decay).append(param)
    return decay, no_decay


def scaled_lr(spec: TrainSpec) -> float:
    """The peak learning rate: the spec's lr is per 256 images (paper §B.1, "LearningRate = 0.3 × BatchSize/256")."""
    return spec.lr * spec.batch_size / 256


def build_optimizer(model: nn.Module, spec: TrainSpec) -> torch.optim.Optimizer:
    decay, no_decay = split_decay_groups(model)
    lr = scaled_lr(spec)
    if spec.optimizer == "lars":
        return LARS(
            [{"params": decay}, {"params": no_decay, "weight_decay": 0.0, "adapt": False}],
            lr=lr, momentum=spec.momentum, weight_decay=spec.weight_decay,
        )
    groups = [{"params": decay, "weight_decay": spec.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if spec.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=spec.momentum, nesterov=True)
    return torch.optim.AdamW(groups, lr=lr)


def warmup_cosine(step: int, total_steps: int, warmup_steps: int) -> float:
    """Multiplier of the peak learning rate for optimiser step `step` (0-based).

    Warm-up: (step + 1) / warmup_steps, so the first step already moves and step warmup_steps − 1
    reaches the peak (the official code's step/warmup_steps would waste step 0 at lr 0). Then a
    cosine from 1 at step warmup_steps to 0 at step total_steps: 0.5 (1 + cos(π p)) with p the
    fraction of the post-warm-up steps done.
    """
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def build_schedule(optimizer: torch.optim.Optimizer, spec: TrainSpec, steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    total = spec.epochs * steps_per_epoch
    warmup = min(round(spec.warmup_epochs * steps_per_epoch), total)  # a warm-up longer than training is cut to it
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: warmup_cosine(step, total, warmup))
