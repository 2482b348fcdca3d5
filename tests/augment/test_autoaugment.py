"""AutoAugment: per-image sub-policies, the policy tables, and each operation against torchvision."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision.transforms.v2.functional as TF
from augment_helpers import generator, standard_error_bound, structured_images

from ablate.augment.autoaugment import CIFAR10, IMAGENET, NAMES, AutoAugment, magnitude, photometric, warp

DEVICE = torch.device("cpu")
NEAREST = TF.InterpolationMode.NEAREST


def quantised(batch: int = 8, seed: int = 1) -> torch.Tensor:
    """Images on the 8-bit grid, so that uint8 references (posterize, equalize) see the same values."""
    return (structured_images(batch, seed=seed) * 255).round() / 255


def test_policy_tables() -> None:
    for table in (IMAGENET, CIFAR10):
        assert len(table) == 25 and all(len(sub) == 2 for sub in table)
        assert all(name in NAMES and 0 <= p <= 1 and 0 <= b <= 9 for sub in table for name, p, b in sub)
    assert IMAGENET[0] == (("Posterize", 0.4, 8), ("Rotate", 0.6, 9))  # first sub-policy of the paper's ImageNet policy
    assert CIFAR10[0] == (("Invert", 0.1, 0), ("Contrast", 0.2, 6))
    assert [magnitude("Posterize", b, 32, 32) for b in (0, 5, 8, 9)] == [8, 6, 4, 4]
    assert magnitude("Rotate", 9, 32, 32) == 30.0 and magnitude("Solarize", 0, 32, 32) == 1.0
    assert math.isclose(magnitude("TranslateX", 9, 32, 331), 150.0)


@pytest.mark.parametrize("policy", ["imagenet", "cifar10"])
def test_one_subpolicy_per_image_uniformly_and_coins_follow_the_table(policy: str) -> None:
    n = 25000
    op = AutoAugment(policy)
    params = op.sample(n, 32, 32, generator(0), DEVICE)
    sub = params["subpolicy"]
    counts = torch.bincount(sub, minlength=25).float() / n
    assert sub.min() == 0 and sub.max() == 24
    assert (counts - 1 / 25).abs().max() < standard_error_bound(1 / 25, n, k=4)  # 4 SE: 25 cells tested
    table = IMAGENET if policy == "imagenet" else CIFAR10
    probs = torch.tensor([[p for _, p, _ in s] for s in table])[sub]
    expected = probs.mean(dim=0)
    observed = params["applied"].float().mean(dim=0)
    assert (observed - expected).abs().max() < 3 * (0.25 / n) ** 0.5
    assert not params["applied"][probs == 0].any() and params["applied"][probs == 1].all()
    assert set(params["sign"].unique().tolist()) == {-1.0, 1.0}


def test_images_of_one_batch_get_different_subpolicies() -> None:
    """Unlike kornia.augmentation.auto.AutoAugment (one sub-policy per batch): each image draws its own."""
    params = AutoAugment().sample(64, 32, 32, generator(1), DEVICE)
    assert params["subpolicy"].unique().numel() > 15


@pytest.mark.parametrize(
    ("name", "value", "reference"),
    [
        ("Brightness", 0.5, lambda x: TF.adjust_brightness(x, 1.5)),
        ("Color", -0.4, lambda x: TF.adjust_saturation(x, 0.6)),
        ("Contrast", 0.7, lambda x: TF.adjust_contrast(x, 1.7)),
        ("Sharpness", 0.9, lambda x: TF.adjust_sharpness(x, 1.9)),
        ("Solarize", 0.4, lambda x: TF.solarize(x, 0.4)),
        ("AutoContrast", 0.0, TF.autocontrast),
        ("Invert", 0.0, TF.invert),
        ("Posterize", 5.0, lambda x: TF.posterize((x * 255).round().to(torch.uint8), 5).float() / 255),
        ("Equalize", 0.0, lambda x: TF.equalize((x * 255).round().to(torch.uint8)).float() / 255),
    ],
)
def test_photometric_operations_match_torchvision(name: str, value: float, reference) -> None:  # type: ignore[no-untyped-def]
    x = quantised()
    ours = photometric(x, NAMES.index(name), torch.full((8,), value))
    # 1e-4: kornia's luma weight for red is 0.299, torchvision's 0.2989 (Color, Contrast); others agree exactly.
    torch.testing.assert_close(ours, reference(x), atol=1e-4, rtol=0)


@pytest.mark.parametrize(
    ("name", "value", "kwargs"),
    [
        ("ShearX", 0.3, {"shear": [math.degrees(math.atan(0.3)), 0.0], "center": [0, 0]}),
        ("ShearY", 0.1, {"shear": [0.0, math.degrees(math.atan(0.1))], "center": [0, 0]}),
        ("TranslateX", 5.0, {"translate": [5, 0]}),
        ("TranslateY", -7.0, {"translate": [0, -7]}),
        ("Rotate", 30.0, {"angle": 30.0}),
        ("Rotate", -12.0, {"angle": -12.0}),
    ],
)
def test_geometric_operations_match_torchvision_affine(name: str, value: float, kwargs: dict) -> None:  # type: ignore[type-arg]
    x = quantised()
    ours = warp(x, torch.full((8,), NAMES.index(name)), torch.full((8,), value))
    if name == "Rotate":  # torchvision's AutoAugment rotates with F.rotate (counter-clockwise; affine's is clockwise)
        expected = TF.rotate(x, kwargs["angle"], interpolation=NEAREST)
    else:
        args = {"angle": 0.0, "translate": [0, 0], "scale": 1.0, "shear": [0.0, 0.0]} | kwargs
        expected = TF.affine(x, interpolation=NEAREST, **args)
    # nearest-neighbour: a coordinate landing exactly on a half pixel may round either way in the two
    # implementations; at these magnitudes none do, so the pictures are identical.
    assert torch.equal(ours, expected)


def test_mixed_geometric_batch_equals_per_image_warps() -> None:
    x = quantised(5)
    ops = torch.tensor([0, 1, 2, 3, 4])
    values = torch.tensor([0.2, -0.3, 3.0, -4.0, 17.0])
    batched = warp(x, ops, values)
    for i in range(5):
        torch.testing.assert_close(batched[i], warp(x[i : i + 1], ops[i : i + 1], values[i : i + 1])[0], atol=0, rtol=0)


def test_apply_follows_each_images_subpolicy() -> None:
    """Replay by hand: each image through its own two operations (or none) equals the batched result."""
    x = quantised(24, seed=2)
    op = AutoAugment("imagenet")
    params = op.sample(24, 32, 32, generator(3), DEVICE)
    out = op.apply(x, params)
    for i in range(24):
        expected = x[i : i + 1]
        for step, (name, _, bin_) in enumerate(IMAGENET[params["subpolicy"][i]]):
            if not params["applied"][i, step]:
                continue
            k = NAMES.index(name)
            value = magnitude(name, bin_, 32, 32) * (params["sign"][i, step].item() if k < 9 else 1.0)
            v = torch.tensor([value])
            expected = warp(expected, torch.tensor([k]), v) if k < 5 else photometric(expected, k, v)
        torch.testing.assert_close(out[i], expected[0], atol=1e-6, rtol=0, msg=f"image {i}")


def test_gpu_strategy_gives_the_same_result(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a GPU every operation runs on the whole batch (other images' magnitudes included) and is kept where drawn."""
    import ablate.augment.autoaugment as aa
    from ablate.augment.base import dense_apply

    x = quantised(32, seed=4)
    op = AutoAugment("imagenet")
    params = op.sample(32, 32, 32, generator(5), DEVICE)
    expected = op.apply(x, params)
    monkeypatch.setattr(aa, "apply_to_subset", dense_apply)
    torch.testing.assert_close(op.apply(x, params), expected, atol=1e-6, rtol=0)
