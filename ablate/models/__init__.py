"""Encoders: f(x) maps float images in [0, 1] to a feature vector h (the representation evaluated)."""

from __future__ import annotations

import torch
from torch import nn

from ablate.config import ModelSpec

# Per-channel statistics used to centre inputs. Fixed constants (not per-dataset) keep runs on
# different datasets comparable; batch norm in the first block absorbs the rest.
INPUT_MEAN = (0.5, 0.5, 0.5)
INPUT_STD = (0.25, 0.25, 0.25)


class Encoder(nn.Module):
    """Normalises [0, 1] images, then runs the backbone; `feature_dim` is the size of h."""

    def __init__(self, backbone: nn.Module, feature_dim: int):
        super().__init__()
        self.backbone = backbone
        self.feature_dim = feature_dim
        self.register_buffer("mean", torch.tensor(INPUT_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(INPUT_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone((images - self.mean) / self.std)


def build_encoder(spec: ModelSpec, image_size: int) -> Encoder:
    if spec.arch == "small_cnn":
        from ablate.models.small_cnn import SmallCNN

        backbone = SmallCNN(spec.width)
        return Encoder(backbone, backbone.feature_dim)
    from ablate.models.resnet import build_resnet

    backbone, feature_dim = build_resnet(spec.arch, spec.width, spec.stem, image_size)
    return Encoder(backbone, feature_dim)
