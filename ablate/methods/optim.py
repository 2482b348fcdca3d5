"""Optimisers and the learning-rate schedule of the paper: LARS / SGD / AdamW, warm-up then cosine.

Learning rates in specs are *per 256 images*: lr = base_lr × batch_size / 256 (paper §B.1).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ablate.config import TrainSpec


class LARS(torch.optim.Optimizer):
    """Layer-wise Adaptive Rate Scaling (You et al., 2017), as SimCLR uses it.

    Per parameter tensor the update is scaled by trust = eta·‖w‖ / ‖g + wd·w‖. Parameters in the
    `exclude` groups (biases and batch-norm) get neither weight decay nor the trust ratio, as in the
    official implementation.
    """

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0, eta: float = 1e-3):
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta, adapt=True)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is None:
                    continue
                update = param.grad
                if group["adapt"]:
                    update = update.add(param, alpha=group["weight_decay"])
                    param_norm = torch.linalg.vector_norm(param)
                    update_norm = torch.linalg.vector_norm(update)
                    trust = torch.where(
                        (param_norm > 0) & (update_norm > 0), group["eta"] * param_norm / update_norm, torch.ones_like(param_norm)
                    )
                    update = update.mul(trust)
                state = self.state[param]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.clone(update).detach()
                else:
                    state["momentum_buffer"].mul_(group["momentum"]).add_(update)
                param.add_(state["momentum_buffer"], alpha=-group["lr"])
        return loss


def split_decay_groups(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(weights, biases and norm parameters): the second group is excluded from decay and adaptation."""
    decay, no_decay = [], []
    for param in model.parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim <= 1 else decay).append(param)
    return decay, no_decay


def scaled_lr(spec: TrainSpec) -> float:
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
    """Multiplier of the peak learning rate: linear from ~0 to 1 over warm-up, then cosine to 0."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def build_schedule(optimizer: torch.optim.Optimizer, spec: TrainSpec, steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    total = spec.epochs * steps_per_epoch
    warmup = round(spec.warmup_epochs * steps_per_epoch)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: warmup_cosine(step, total, warmup))
