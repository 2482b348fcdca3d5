"""ResNet-18/34/50 encoders (He et al., CVPR 2016) from torchvision, with SimCLR's stem and width axes.

* **Stem.** SimCLR (Chen et al., ICML 2020, Appendix B.9) trains on CIFAR-10 with the first 7×7
  stride-2 convolution replaced by a 3×3 stride-1 one and the max-pool removed, so a 32 px image
  still reaches the last stage at 4×4 instead of 1×1. ``"cifar"`` is that stem, ``"imagenet"`` is
  torchvision's, and ``"auto"`` takes the CIFAR stem up to 64 px (CIFAR, downscaled STL-10) and
  the ImageNet stem above.
* **Width.** The paper's model-size experiment (Figure 7, Table B.1: ResNet-50 1×, 2×, 4×) multiplies
  *every* channel count by the multiplier, as the official code does (``filters = 64 ×
  width_multiplier`` in each block). torchvision's ``width_per_group`` only widens a bottleneck's
  inner 3×3 (wide_resnet50_2), so `ScaledResNet` instead rebuilds the stem and the four stages of
  torchvision's ResNet with 64w, 128w, 256w, 512w planes through torchvision's own ``_make_layer``.
  The features then have 512·w (BasicBlock) or 2048·w (Bottleneck) dimensions.

``fc`` is replaced by Identity: the encoder outputs the pooled features h; heads live elsewhere.
Weights are always randomly initialised (never downloaded).
"""

from __future__ import annotations

from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

ARCHS: dict[str, tuple[type[BasicBlock | Bottleneck], list[int]]] = {
    "resnet18": (BasicBlock, [2, 2, 2, 2]),
    "resnet34": (BasicBlock, [3, 4, 6, 3]),
    "resnet50": (Bottleneck, [3, 4, 6, 3]),
}
STEMS = ("auto", "cifar", "imagenet")
CIFAR_STEM_MAX_SIZE = 64  # "auto": CIFAR stem up to this side in pixels, ImageNet stem above


class ScaledResNet(ResNet):
    """torchvision's ResNet with every channel count multiplied by `width` (1 gives it unchanged)."""

    def __init__(self, block: type[BasicBlock | Bottleneck], layers: list[int], width: int = 1):
        super().__init__(block, layers)
        if width == 1:
            return
        base = 64 * width
        self.inplanes = base  # _make_layer reads and advances this as it stacks blocks
        self.conv1 = nn.Conv2d(3, base, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = self._norm_layer(base)
        self.layer1 = self._make_layer(block, base, layers[0])
        self.layer2 = self._make_layer(block, 2 * base, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 4 * base, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 8 * base, layers[3], stride=2)
        self.fc = nn.Linear(8 * base * block.expansion, self.fc.out_features)
        _he_init(self)  # the new layers get the same initialisation torchvision gives its own


def _he_init(model: nn.Module) -> None:
    """torchvision ResNet's initialisation: He normal (fan-out) for convolutions, BN to identity."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.constant_(module.weight, 1)
            nn.init.constant_(module.bias, 0)


def resolve_stem(stem: str, image_size: int) -> str:
    """"cifar" or "imagenet"; "auto" is cifar up to 64 px."""
    if stem not in STEMS:
        raise ValueError(f"stem must be one of {', '.join(STEMS)}, got {stem!r}")
    if stem == "auto":
        return "cifar" if image_size <= CIFAR_STEM_MAX_SIZE else "imagenet"
    return stem


def use_cifar_stem(model: ResNet) -> None:
    """3×3 stride-1 first convolution (same output channels) and no max-pool (SimCLR B.9)."""
    channels = model.conv1.out_channels
    model.conv1 = nn.Conv2d(3, channels, kernel_size=3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    model.maxpool = nn.Identity()


def build_resnet(arch: str, width: int, stem: str, image_size: int) -> tuple[nn.Module, int]:
    """Encoder (torchvision ResNet, ``fc`` = Identity) mapping N×3×H×W to N×D, and D.

    D = 512·width for resnet18/34 and 2048·width for resnet50.
    """
    if arch not in ARCHS:
        raise ValueError(f"arch must be one of {', '.join(ARCHS)}, got {arch!r}")
    if width < 1:
        raise ValueError(f"width must be a positive multiplier, got {width}")
    block, layers = ARCHS[arch]
    model = ScaledResNet(block, layers, width)
    if resolve_stem(stem, image_size) == "cifar":
        use_cifar_stem(model)
    feature_dim = model.fc.in_features
    model.fc = nn.Identity()
    return model, feature_dim
