"""Linear evaluation (paper §B.5): a linear classifier trained on frozen, pre-computed features.

Training on pre-computed features is exact for a frozen encoder without augmentation, and costs
one pass of the images through the encoder instead of one per probe epoch. Features are
standardised with the training set's statistics, which makes one learning rate work across
encoders whose feature scales differ by orders of magnitude.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ablate.data import per_class_sample


@dataclass
class LinearProbeResult:
    top1: float  # percent
    top5: float  # percent
    train_top1: float
    train_examples: int


def label_subset(labels: torch.Tensor, fraction: float, seed: int) -> torch.Tensor:
    """Indices of a class-balanced `fraction` of the labelled examples (at least one per class)."""
    if fraction >= 1.0:
        return torch.arange(labels.shape[0], device=labels.device)
    return per_class_sample(labels, lambda n: max(1, round(fraction * n)), seed).to(labels.device)


def topk_accuracy(logits: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    k = min(k, logits.shape[1])
    hits = (logits.topk(k, dim=1).indices == labels[:, None]).any(dim=1)
    return 100.0 * hits.float().mean().item()


def train_linear_probe(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    num_classes: int,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
) -> LinearProbeResult:
    """Fit softmax regression with Adam and a cosine schedule; report top-1/top-5 on the test set."""
    mean = train_features.mean(dim=0, keepdim=True)
    std = train_features.std(dim=0, keepdim=True).clamp_min(1e-6)
    train_x = (train_features - mean) / std
    test_x = (test_features - mean) / std
    generator = torch.Generator(device="cpu").manual_seed(seed)
    torch.manual_seed(seed)  # the classifier's initial weights
    classifier = nn.Linear(train_x.shape[1], num_classes).to(train_x.device)
    optimizer = torch.optim.Adam(classifier.parameters(), lr=lr, weight_decay=1e-6)
    n = train_x.shape[0]
    steps_per_epoch = max(1, -(-n // batch_size))
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * steps_per_epoch)
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator).to(train_x.device)
        for start in range(0, n, batch_size):
            index = order[start : start + batch_size]
            loss = F.cross_entropy(classifier(train_x[index]), train_labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    with torch.no_grad():
        test_logits = classifier(test_x)
        train_logits = classifier(train_x)
    return LinearProbeResult(
        top1=topk_accuracy(test_logits, test_labels, 1),
        top5=topk_accuracy(test_logits, test_labels, 5),
        train_top1=topk_accuracy(train_logits, train_labels, 1),
        train_examples=n,
    )
