"""Weighted k-nearest-neighbour accuracy on frozen features (Wu et al., CVPR 2018, "InstDisc" §3.4;
the protocol DINO, Caron et al. 2021, and solo-learn report as "kNN top-1").

Features are L2-normalised, so a dot product is the cosine similarity s. Each test image takes its
k most similar training images; neighbour i votes for its class with weight exp(s_i / T); the class
with the largest summed vote is the prediction. Defaults k = 200, T = 0.1 are those papers'.

Test images are processed ``chunk_size`` at a time, so memory is chunk_size × N_train similarities
(256 × 50 000 floats = 51 MB) however large the test set, and everything stays on the device the
features are on.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def knn_accuracy(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    *,
    k: int = 200,
    temperature: float = 0.1,
    num_classes: int | None = None,
    chunk_size: int = 256,
) -> float:
    """Top-1 accuracy in percent of the temperature-weighted kNN vote (k is capped at N_train)."""
    _check_inputs(train_features, train_labels, test_features, test_labels, k, temperature, chunk_size)
    if num_classes is None:
        num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    train = F.normalize(train_features.float(), dim=1)
    test = F.normalize(test_features.float(), dim=1).to(train.device)
    train_labels = train_labels.to(train.device)
    correct = 0
    for start in range(0, len(test), chunk_size):
        predicted = knn_predict(train, train_labels, test[start : start + chunk_size], k, temperature, num_classes)
        correct += int((predicted == test_labels[start : start + chunk_size].to(train.device)).sum())
    return 100.0 * correct / len(test)


def knn_predict(
    train: torch.Tensor, train_labels: torch.Tensor, test: torch.Tensor, k: int, temperature: float, num_classes: int
) -> torch.Tensor:
    """Predicted class of each row of `test` (all features already L2-normalised)."""
    similarity = test @ train.T  # n_test × n_train cosine similarities
    top_sim, top_index = similarity.topk(min(k, train.shape[0]), dim=1)
    weights = (top_sim / temperature).exp()
    votes = torch.zeros(test.shape[0], num_classes, device=test.device, dtype=weights.dtype)
    votes.scatter_add_(1, train_labels[top_index], weights)
    return votes.argmax(dim=1)


def _check_inputs(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    k: int,
    temperature: float,
    chunk_size: int,
) -> None:
    if train_features.dim() != 2 or test_features.dim() != 2 or train_features.shape[1] != test_features.shape[1]:
        raise ValueError(
            f"features must be N×D with the same D, got {tuple(train_features.shape)} and {tuple(test_features.shape)}"
        )
    if len(train_labels) != len(train_features) or len(test_labels) != len(test_features):
        raise ValueError("each feature row needs exactly one label")
    if len(train_features) == 0 or len(test_features) == 0:
        raise ValueError("kNN needs at least one training and one test image")
    if int(train_labels.min()) < 0:
        raise ValueError("train_labels contain negative (unlabelled, −1) entries; pass labelled images only")
    if k < 1 or temperature <= 0 or chunk_size < 1:
        raise ValueError(f"need k ≥ 1, temperature > 0, chunk_size ≥ 1; got {k}, {temperature}, {chunk_size}")
