"""Projection heads and predictors (SimCLR §2: a 2-layer MLP, ReLU between; the other methods' MLPs).

The linear probe is in ablate/evaluate/linear.py.
"""

from __future__ import annotations

from torch import nn


def projection_head(feature_dim: int, hidden_dim: int | None, out_dim: int) -> nn.Sequential:
    """g(h) = W2 ReLU(BN(W1 h)); the paper's CIFAR code puts batch norm in the head as well."""
    hidden = hidden_dim or feature_dim
    return nn.Sequential(
        nn.Linear(feature_dim, hidden, bias=False),
        nn.BatchNorm1d(hidden),
        nn.ReLU(inplace=True),
        nn.Linear(hidden, out_dim),
    )


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
