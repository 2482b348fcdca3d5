"""Encoders: f(x) maps float images in [0, 1] to a feature vector h (the representation evaluated)."""

from __future__ import annotations

from collections.abc import Callable

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


Backbone = Callable[[ModelSpec, int], tuple[nn.Module, int]]


def _small_cnn(spec: ModelSpec, image_size: int) -> tuple[nn.Module, int]:
    from ablate.models.small_cnn import SmallCNN

    backbone = SmallCNN(spec.width)
    return backbone, backbone.feature_dim


def _resnet(spec: ModelSpec, image_size: int) -> tuple[nn.Module, int]:
    from ablate.models.resnet import build_resnet

    return build_resnet(spec.arch, spec.width, spec.stem, image_size)


# The registry of architectures: grid name -> (backbone, feature size) for a model spec and an image
# side. A new architecture is one builder and one line here (plus its name in
# ablate.config.specs.ARCHS; a test checks both agree).
BACKBONES: dict[str, Backbone] = {
    "small_cnn": _small_cnn,
    "resnet18": _resnet,
    "resnet34": _resnet,
    "resnet50": _resnet,
}


def build_encoder(spec: ModelSpec, image_size: int) -> Encoder:
    backbone, feature_dim = BACKBONES[spec.arch](spec, image_size)
    return Encoder(backbone, feature_dim)
