"""Supervised baseline (Table 1's second row): the same encoder, a linear classifier, cross-entropy."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ablate.evaluate.linear import topk_accuracy
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
    def classifier_accuracy(self, features: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
        """Top-1 and top-5 (percent) of the trained classifier itself on the encoder's features of
        un-augmented images (Table 1's supervised row); the features are the ones the probes use."""
        logits = self.classifier(features.to(self.classifier.weight.dtype)).float()
        labels = labels.to(logits.device)
        return topk_accuracy(logits, labels, 1), topk_accuracy(logits, labels, 5)
