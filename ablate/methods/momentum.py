"""Target networks that follow the trained ones by an exponential moving average (MoCo, BYOL, DINO).

A target is a frozen copy of online modules (``requires_grad`` off, so the optimiser never sees it
and no gradient reaches it), kept inside the method so that it moves with ``.to(device)``, is saved
in the checkpoint's state_dict and is put in train/eval mode with the rest. After every optimiser
step its weights move towards the online ones: ξ ← m·ξ + (1 − m)·θ. Only parameters follow the
online network; buffers (batch-norm running statistics) are the target's own, updated by its own
forward passes in train mode, as in the papers' code.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


def frozen_copy(module: nn.Module) -> nn.Module:
    """A copy of `module` with the same weights that no optimiser or gradient touches."""
    target = copy.deepcopy(module)
    target.requires_grad_(False)
    return target


@torch.no_grad()
def ema_update_(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """ξ ← m·ξ + (1 − m)·θ for every parameter pair, in place (one fused kernel per device: lerp)."""
    target_params = list(target.parameters())
    online_params = list(online.parameters())
    if len(target_params) != len(online_params):
        raise ValueError(f"target has {len(target_params)} parameters, online {len(online_params)}")
    torch._foreach_lerp_(target_params, online_params, 1.0 - momentum)


def cosine_momentum(step: int, total_steps: int, base: float, final: float) -> float:
    """BYOL's schedule (paper §3.2): τ = final − (final − base)·(cos(π k / K) + 1) / 2 after step k of K.

    Step 0 gives `base`, step K gives `final`; MoCo's fixed momentum is base == final.
    """
    progress = min(max(step / max(total_steps, 1), 0.0), 1.0)
    return final - (final - base) * (math.cos(math.pi * progress) + 1) / 2
