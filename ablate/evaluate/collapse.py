"""Is the representation collapsed? The SimSiam paper's diagnostic (Chen & He, CVPR 2021, §4.1, Fig. 2).

Take the output the method's loss compares (its embedding, e.g. z = g(h); `Method.embedding`) for
every test image, ℓ2-normalise each, and average the standard deviation of each dimension over
the images. If the outputs were spread like an isotropic Gaussian in d dimensions, that average
would be ≈ 1/√d; if they collapsed to one vector it is 0. ablate records the std, its size relative
to 1/√d (`std_ratio`, ≈ 1 healthy, 0 collapsed) and flags the run as collapsed when the ratio is
below `COLLAPSE_RATIO`, so that a report can mark the cell instead of showing it as merely low.

Why a tenth: a complete collapse drives the ratio to the order of float rounding (≈ 1e-3 and
below); healthy runs of every method sit in the tenths or above (measured values on the quickstart:
benchmarks/results and the README). A partial, low-dimensional collapse above the threshold is
not flagged: its number is in result.json for anyone who wants a stricter line.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

COLLAPSE_RATIO = 0.1  # std_ratio below this: collapsed


def embedding_std(embeddings: torch.Tensor) -> float:
    """Mean over dimensions of the std over samples of the ℓ2-normalised embeddings (unbiased std)."""
    normalised = F.normalize(embeddings.double(), dim=1)
    return float(normalised.std(dim=0).mean())


def collapse_record(embeddings: torch.Tensor, threshold: float = COLLAPSE_RATIO) -> dict[str, Any]:
    """What result.json records under "collapse" for a run's embeddings of the test images."""
    if embeddings.ndim != 2 or embeddings.shape[0] < 2:
        raise ValueError(f"embeddings must be (samples ≥ 2, dims), got {tuple(embeddings.shape)}")
    dim = embeddings.shape[1]
    std = embedding_std(embeddings)
    ratio = std * math.sqrt(dim)
    return {"embedding_std": std, "embedding_dim": dim, "std_ratio": ratio, "threshold": threshold, "collapsed": ratio < threshold}


@torch.no_grad()
def method_embeddings(method: nn.Module, features: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    """`method.embedding(h)` of encoder features in eval mode (batch norm on its running statistics),
    float32; the method's train/eval mode is restored after."""
    was_training = method.training
    method.eval()
    try:
        dtype = next(method.parameters()).dtype
        chunks = [method.embedding(features[start : start + batch_size].to(dtype)).float()
                  for start in range(0, features.shape[0], batch_size)]
    finally:
        method.train(was_training)
    return torch.cat(chunks)
