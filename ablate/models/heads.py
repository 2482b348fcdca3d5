"""Projection head (SimCLR §2: a 2-layer MLP, ReLU between). The linear probe is in ablate/evaluate/linear.py."""

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
