"""Projection heads and predictors (SimCLR §2: a 2-layer MLP, ReLU between; the other methods' MLPs).

SimCLR's projection head g sits between the representation h = f(x) and the loss, which compares
z = g(h). Figure 8 and §4.2 of the paper compare three heads — none (z = h), linear (one layer) and
nonlinear (two layers, ReLU between) — across output sizes 32 ... 2048; `projection_head` builds
each kind (the spec's `model.head`).

The linear probe is in ablate/evaluate/linear.py.
"""

from __future__ import annotations

from typing import Literal

from torch import nn

HeadKind = Literal["none", "linear", "mlp"]


def projection_head(kind: HeadKind, feature_dim: int, hidden_dim: int | None, out_dim: int) -> nn.Module:
    """SimCLR's head g of the given kind (Figure 8), from h of size `feature_dim` to z.

    * ``none``: the identity, z = h (`out_dim` and `hidden_dim` are not used);
    * ``linear``: z = W h + b, one layer to `out_dim` — the mlp's output layer alone, so that linear
      and mlp differ only by the hidden layer and its nonlinearity (the official TensorFlow code
      instead puts batch norm on a linear head's output; ablate's mlp has none there, so neither
      does its linear head);
    * ``mlp``: the paper's g(h) = W2 ReLU(BN(W1 h)) (`hidden_dim` None: the feature size); the
      paper's CIFAR code puts batch norm in the head as well.
    """
    if kind == "none":
        return nn.Identity()
    if kind == "linear":
        return nn.Linear(feature_dim, out_dim)
    if kind == "mlp":
        return mlp(feature_dim, hidden_dim or feature_dim, out_dim)
    raise ValueError(f"head must be one of none, linear, mlp; got {kind!r}")


def mlp(in_dim: int, hidden_dim: int, out_dim: int, hidden_layers: int = 1, output_norm: bool = False) -> nn.Sequential:
    """`hidden_layers` × (Linear → BatchNorm → ReLU), then a Linear to `out_dim`.

    The shape every method's projector and predictor takes (BYOL, SimSiam, Barlow Twins, VICReg,
    MoCo v2, DINO's head). `output_norm` adds a BatchNorm on the output, as SimSiam's projector has.
    Hidden linears have no bias: the batch norm after them would cancel it.
    """
    layers: list[nn.Module] = []
    width = in_dim
    for _ in range(hidden_layers):
        layers += [nn.Linear(width, hidden_dim, bias=False), nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True)]
        width = hidden_dim
    layers.append(nn.Linear(width, out_dim, bias=not output_norm))
    if output_norm:
        layers.append(nn.BatchNorm1d(out_dim))
    return nn.Sequential(*layers)
