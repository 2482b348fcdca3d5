"""A small CNN for CPUs: four 3×3 conv blocks with batch norm, global average pooling.

Sized for the built-in `shapes` dataset on a laptop: ~0.1 M parameters and about 8 MFLOPs
(multiply-adds x 2) per 32 px image, so that a short SimCLR run fits a laptop's CPU. Strided
convolutions from the first layer on replace pooling: they are the cheapest way to shrink the map
on a CPU, and the classes of `shapes` are readable at a quarter of the resolution.

Each image is standardised first (zero mean, unit standard deviation over its pixels and channels:
the global contrast normalisation of classic CIFAR pipelines). Why: at strength s = 1 the colour
distortion scales brightness and contrast by factors down to 0.2, and in a run of a few hundred
steps a batch-norm network does not learn to see shapes in views five times darker or flatter than
the rest of the batch: on `shapes`, those views were what cost SimCLR at s = 1 without the
standardisation (the runs that showed it: README.md, "Design notes"). The price,
said plainly: for this model brightness and contrast jitter are nearly removed; a view made five
times flatter reaches the first convolution at about nine tenths of its usual amplitude instead of a
fifth (only STANDARDISE_EPS keeps it from being fully undone; tests/models/test_small_cnn.py). Hue,
saturation and grayscale act in full. The ResNets have no such step.
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


# Added to the standard deviation so that a flat image, all one colour, is not amplified into noise.
# The backbone's input is already on ablate.models.Encoder's scale, (x - 0.5) / 0.25, so 0.05 here
# is 0.0125 on the [0, 1] scale of the images.
STANDARDISE_EPS = 0.05


def standardise(images: torch.Tensor) -> torch.Tensor:
    """Per image: subtract the mean and divide by the standard deviation over C×H×W (+ STANDARDISE_EPS)."""
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    std = images.std(dim=(1, 2, 3), keepdim=True)
    return (images - mean) / (std + STANDARDISE_EPS)


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
        return self.features(standardise(images))
