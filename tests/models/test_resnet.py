"""ResNet encoders: feature sizes, stems, and the width multiplier against torchvision's own models."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from ablate.models.resnet import build_resnet, resolve_stem


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _fc_params(model: torchvision.models.ResNet) -> int:
    return model.fc.weight.numel() + model.fc.bias.numel()


@pytest.mark.parametrize("arch, width, dim", [
    ("resnet18", 1, 512), ("resnet34", 1, 512), ("resnet50", 1, 2048),
    ("resnet18", 2, 1024), ("resnet50", 2, 4096), ("resnet50", 4, 8192),
])
def test_feature_dims(arch: str, width: int, dim: int) -> None:
    with torch.device("meta"):  # shapes only: no memory, no arithmetic
        model, feature_dim = build_resnet(arch, width, "cifar", 32)
        out = model(torch.empty(2, 3, 32, 32))
    assert feature_dim == dim and tuple(out.shape) == (2, dim)


@pytest.mark.parametrize("size, stem", [(32, "cifar"), (96, "imagenet"), (96, "cifar")])
def test_real_forward_pass(size: int, stem: str) -> None:
    torch.manual_seed(0)
    model, dim = build_resnet("resnet18", 1, stem, size)
    model.eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, size, size))
    assert out.shape == (2, 512) and torch.isfinite(out).all()
    assert (out >= 0).all()  # pooled after a ReLU: the fc really is gone


def test_cifar_stem() -> None:
    model, _ = build_resnet("resnet18", 1, "cifar", 32)
    assert tuple(model.conv1.weight.shape) == (64, 3, 3, 3)
    assert model.conv1.stride == (1, 1) and model.conv1.padding == (1, 1)
    assert isinstance(model.maxpool, nn.Identity)
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    # So the last stage of a 32 px image is 4×4 (stride 8 in total), as in SimCLR's CIFAR model.
    with torch.device("meta"):
        model, _ = build_resnet("resnet18", 1, "cifar", 32)
        trunk = nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool,
                              model.layer1, model.layer2, model.layer3, model.layer4)
        assert tuple(trunk(torch.empty(1, 3, 32, 32)).shape) == (1, 512, 4, 4)


def test_imagenet_stem_is_torchvisions() -> None:
    model, _ = build_resnet("resnet50", 1, "imagenet", 224)
    assert tuple(model.conv1.weight.shape) == (64, 3, 7, 7) and model.conv1.stride == (2, 2)
    assert isinstance(model.maxpool, nn.MaxPool2d)


def test_auto_stem() -> None:
    assert resolve_stem("auto", 32) == "cifar" and resolve_stem("auto", 64) == "cifar"
    assert resolve_stem("auto", 96) == "imagenet" and resolve_stem("cifar", 224) == "cifar"
    with torch.device("meta"):
        assert isinstance(build_resnet("resnet18", 1, "auto", 96)[0].maxpool, nn.MaxPool2d)
        assert build_resnet("resnet18", 1, "auto", 64)[0].conv1.kernel_size == (3, 3)


@pytest.mark.parametrize("arch", ["resnet18", "resnet34", "resnet50"])
def test_one_x_has_torchvisions_parameters(arch: str) -> None:
    with torch.device("meta"):
        reference = getattr(torchvision.models, arch)(weights=None)
        ours, _ = build_resnet(arch, 1, "imagenet", 224)
        cifar, _ = build_resnet(arch, 1, "cifar", 32)
    assert _params(ours) == _params(reference) - _fc_params(reference)
    assert _params(cifar) == _params(ours) - 64 * 3 * 7 * 7 + 64 * 3 * 3 * 3
    # Same layers, same shapes, in the same order.
    ours_shapes = [tuple(p.shape) for name, p in ours.named_parameters()]
    ref_shapes = [tuple(p.shape) for name, p in reference.named_parameters() if not name.startswith("fc.")]
    assert ours_shapes == ref_shapes


def test_width_multiplies_every_channel() -> None:
    with torch.device("meta"):
        one, _ = build_resnet("resnet18", 1, "cifar", 32)
        two, _ = build_resnet("resnet18", 2, "cifar", 32)
        wide50, _ = build_resnet("resnet50", 4, "imagenet", 224)
    ratio = _params(two) / _params(one)
    assert 3.98 < ratio < 4.0  # convolutions ×4; the first conv and batch norms only ×2
    for (name, a), (_, b) in zip(one.named_parameters(), two.named_parameters()):
        if a.dim() == 4:  # every conv has twice the output channels (and inputs, except the first)
            assert b.shape[0] == 2 * a.shape[0] and b.shape[1] == (3 if name == "conv1.weight" else 2 * a.shape[1])
    # SimCLR Table B.1 / Figure 7 lists ResNet-50 (4×) at 375M parameters (ours without fc: 375.4M),
    # with 256·4 = 1024 channels after the stem's first stage and 8192 features.
    assert 375.0e6 < _params(wide50) < 375.5e6
    assert wide50.layer1[0].conv3.out_channels == 1024 and wide50.layer1[0].conv2.in_channels == 256


def test_random_init_like_torchvision() -> None:
    torch.manual_seed(0)
    model, _ = build_resnet("resnet18", 2, "cifar", 32)
    conv = model.layer3[0].conv1.weight  # He normal, fan-out: std = sqrt(2 / (out · 3 · 3))
    assert abs(conv.std().item() - (2 / (512 * 9)) ** 0.5) < 0.002
    assert torch.equal(model.layer2[1].bn2.weight, torch.ones(256))


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="arch must be one of resnet18, resnet34, resnet50"):
        build_resnet("resnet101", 1, "cifar", 32)
    with pytest.raises(ValueError, match="stem must be one of"):
        build_resnet("resnet18", 1, "tiny", 32)
