"""A small CNN for CPUs: four 3×3 conv blocks with batch norm, global average pooling.

Sized for the built-in `shapes` dataset on a laptop: ~0.1 M parameters and about 8 MFLOPs
(multiply-adds x 2) per 32 px image, so a short SimCLR run takes seconds on two cores. Strided
convolutions from the first layer on replace pooling: they are the cheapest way to shrink the map
on a CPU, and the classes of `shapes` are readable at a quarter of the resolution.
"""

from __future__ import annotations

import torch
from torch import nn


def conv_block(channels_in: int, channels_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(channels_in, channels_out, kernel_size=3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(channels_out),
        nn.ReLU(inplace=True),
    )


class SmallCNN(nn.Module):
    def __init__(self, width: int = 1):
        super().__init__()
        channels = [16 * width, 32 * width, 64 * width, 128 * width]
        self.features = nn.Sequential(
            conv_block(3, channels[0], stride=2),
            conv_block(channels[0], channels[1], stride=2),
            conv_block(channels[1], channels[2], stride=2),
            conv_block(channels[2], channels[3], stride=1),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.feature_dim = channels[-1]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.features(images)
