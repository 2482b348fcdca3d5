"""Supervised baseline (Table 1's second row): the same encoder, a linear classifier, cross-entropy."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ablate.models import Encoder


class Supervised(nn.Module):
    def __init__(self, encoder: Encoder, num_classes: int):
        super().__init__()
        self.encoder = encoder
        self.classifier = nn.Linear(encoder.feature_dim, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Class logits of the images."""
        return self.classifier(self.encoder(images))

    def loss(self, images: torch.Tensor, labels: torch.Tensor, forward=None) -> torch.Tensor:
        """Cross-entropy (float32) of the logits; `forward` replaces ``self`` (e.g. a compiled `ModelForward`)."""
        return F.cross_entropy((forward or self)(images).float(), labels)

    @torch.no_grad()
    def accuracy(self, images_uint8: torch.Tensor, labels: torch.Tensor, batch_size: int = 1024) -> tuple[float, float]:
        """Top-1 and top-5 (percent) of the trained classifier itself on un-augmented images (Table 1's row)."""
        was_training = self.training
        self.eval()
        top1 = top5 = 0
        device = self.classifier.weight.device
        for start in range(0, images_uint8.shape[0], batch_size):
            batch = images_uint8[start : start + batch_size].to(device).float().div_(255)
            logits = self(batch).float()
            truth = labels[start : start + batch_size].to(device)
            best = logits.topk(min(5, logits.shape[1]), dim=1).indices
            top1 += int((best[:, 0] == truth).sum())
            top5 += int((best == truth[:, None]).any(dim=1).sum())
        self.train(was_training)
        count = max(1, images_uint8.shape[0])
        return 100.0 * top1 / count, 100.0 * top5 / count
