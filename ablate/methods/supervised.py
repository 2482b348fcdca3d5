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

    def loss(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.classifier(self.encoder(images)), labels)
