"""FLOP counting against hand-computed counts and published ResNet figures; the peak-FLOPs table."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ablate.models.flops import PEAK_FLOPS, count_flops, device_peak_flops, peak_flops_for_name
from ablate.models.resnet import build_resnet


def test_linear_layer() -> None:
    # y = W x + b with W 20×10: 200 multiply-adds = 400 FLOPs (the bias add is not a matmul).
    assert count_flops(nn.Linear(10, 20), (10,)) == 400


def test_single_convolution() -> None:
    # Each of 8 × 16 × 16 outputs is a dot product of 3 × 3 × 3 = 27 terms: 2 · 8 · 256 · 27.
    assert count_flops(nn.Conv2d(3, 8, 3, padding=1), (3, 16, 16)) == 110_592
    # Stride 2 without padding: 7 × 7 outputs of 8 channels, 2 · 8 · 49 · 27.
    assert count_flops(nn.Conv2d(3, 8, 3, stride=2), (3, 16, 16)) == 21_168


def test_small_network_sums_its_layers() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 5 * 5, 7))
    assert count_flops(model, (3, 5, 5)) == 2 * (4 * 25 * 3) + 2 * (100 * 7)


def test_resnet18_cifar_matches_the_known_figure() -> None:
    # ResNet-18 with the CIFAR stem on 32 px: 0.56 G multiply-adds (the figure the CIFAR ResNet
    # literature and kuangliu/pytorch-cifar quote), i.e. 1.11 GFLOPs; the count without fc is
    # 555.4 M multiply-adds exactly.
    model, _ = build_resnet("resnet18", 1, "cifar", 32)
    flops = count_flops(model, (3, 32, 32))
    assert flops == 1_110_835_200
    assert flops / 2 == pytest.approx(0.56e9, rel=0.01)


@pytest.mark.parametrize("arch, gmacs", [("resnet18", 1.81), ("resnet50", 4.09)])
def test_imagenet_resnets_match_torchvisions_figures(arch: str, gmacs: float) -> None:
    # torchvision's model documentation lists "GFLOPS" 1.81 (ResNet-18) and 4.09 (ResNet-50) at
    # 224 px; those are multiply-adds (He et al. 2016, Table 1, count the same way: 1.8 and 3.8).
    model, _ = build_resnet(arch, 1, "imagenet", 224)
    assert count_flops(model, (3, 224, 224)) / 2 == pytest.approx(gmacs * 1e9, rel=0.005)


def test_counting_leaves_the_model_untouched() -> None:
    model, _ = build_resnet("resnet18", 1, "cifar", 32)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    count_flops(model, (3, 32, 32))
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN statistics not updated
    assert all(v.device.type == "cpu" for v in after.values())


@pytest.mark.parametrize("name, peak", [
    ("NVIDIA H100 80GB HBM3", 989e12),
    ("NVIDIA H100 PCIe", 756e12),
    ("NVIDIA H200", 989e12),
    ("NVIDIA A100-SXM4-80GB", 312e12),
    ("NVIDIA A100 80GB PCIe", 312e12),
    ("NVIDIA A10", 125e12),
    ("NVIDIA L40S", 362e12),
    ("NVIDIA L4", 121e12),
    ("NVIDIA GeForce RTX 4090", 165e12),
    ("Tesla T4", None),
])
def test_peak_by_device_name(name: str, peak: float | None) -> None:
    assert peak_flops_for_name(name) == peak


def test_table_and_cpu() -> None:
    assert PEAK_FLOPS["H100"] == PEAK_FLOPS["H200"] == 989e12 and PEAK_FLOPS["A100"] == 312e12
    assert device_peak_flops(torch.device("cpu")) is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
def test_this_gpu_is_known() -> None:
    assert device_peak_flops(torch.device("cuda")) == peak_flops_for_name(torch.cuda.get_device_name())


def test_training_flops_count_forward_and_backward_as_three_forwards():
    from ablate.models.flops import training_flops_per_second

    # 10 FLOPs per forward view, 4 views per second: forward 40 + backward (≈ 2× forward) 80 = 120.
    assert training_flops_per_second(10.0, 4.0) == 120.0
