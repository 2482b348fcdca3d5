from __future__ import annotations

import math

import kornia
import pytest
import torch
import torchvision.transforms.v2.functional as TF
from augment_helpers import generator, standard_error_bound, structured_images

from ablate.augment.color import Color, factor_range, hue_range, shift_hue

DEVICE = torch.device("cpu")
TV_ADJUST = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue)


@pytest.mark.parametrize("strength", [0.125, 0.5, 1.0, 2.0])
def test_factor_ranges_follow_the_paper(strength: float) -> None:
    n = 20000
    params = Color(strength).sample(n, 32, 32, generator(0), DEVICE)
    low, high = max(0.0, 1 - 0.8 * strength), 1 + 0.8 * strength
    assert factor_range(strength) == pytest.approx((low, high))
    factors = params["factors"]
    for k in range(3):
        assert factors[:, k].min() >= low and factors[:, k].max() <= high
        assert factors[:, k].min() < low + 0.01 * (high - low) and factors[:, k].max() > high - 0.01 * (high - low)
    hue = factors[:, 3]
    assert hue.min() >= -0.2 * strength - 1e-7 and hue.max() <= 0.2 * strength + 1e-7
    assert hue.min() < -0.19 * strength and hue.max() > 0.19 * strength
    assert hue_range(strength) == pytest.approx((-0.2 * strength, 0.2 * strength))


def test_probabilities_and_orders() -> None:
    n = 20000
    params = Color().sample(n, 32, 32, generator(1), DEVICE)
    assert abs(params["jitter"].float().mean().item() - 0.8) < standard_error_bound(0.8, n)
    assert abs(params["gray"].float().mean().item() - 0.2) < standard_error_bound(0.2, n)
    # grayscale independent of the jitter: P(gray | jitter) ≈ P(gray)
    jittered = params["jitter"]
    assert abs(params["gray"][jittered].float().mean().item() - 0.2) < standard_error_bound(0.2, int(jittered.sum()))
    order = params["order"]
    assert torch.equal(order.sort(dim=1).values, torch.arange(4).expand(n, 4))  # each row a permutation
    # each adjustment first in about a quarter of the samples; all 24 orders occur
    first = torch.bincount(order[:, 0], minlength=4).float() / n
    assert (first - 0.25).abs().max() < standard_error_bound(0.25, n)
    assert len({tuple(row) for row in order[:2000].tolist()}) == 24


def test_matches_torchvision_per_image_with_same_factors_and_order() -> None:
    """Independent reference: torchvision.transforms.v2.functional, image by image, same factors and order."""
    x = structured_images(24, seed=3)
    op = Color(strength=1.0)
    params = op.sample(24, 32, 32, generator(7), DEVICE)
    ours = op.apply(x, params)
    for i in range(24):
        expected = x[i]
        if params["jitter"][i]:
            for k in params["order"][i].tolist():
                expected = TV_ADJUST[k](expected, params["factors"][i, k].item()).clamp(0, 1)
        if params["gray"][i]:
            expected = TF.rgb_to_grayscale(expected, num_output_channels=3)
        # Tolerance 2e-3: kornia's luma weight for red is 0.299, torchvision's 0.2989 (≤ 1e-4 per op), and
        # the two HSV round trips round differently (~1e-6); factors up to 1.8 amplify it over four ops.
        torch.testing.assert_close(ours[i], expected, atol=2e-3, rtol=0, msg=f"image {i}")
    assert (ours - x).abs().amax(dim=(1, 2, 3)).gt(0.01).sum() >= 18  # most images actually changed


def test_unjittered_ungrayed_samples_are_untouched() -> None:
    x = structured_images(64, seed=4)
    op = Color()
    params = op.sample(64, 32, 32, generator(8), DEVICE)
    out = op.apply(x, params)
    keep = ~params["jitter"] & ~params["gray"]
    assert keep.any()
    assert torch.equal(out[keep], x[keep])
    gray = params["gray"]
    assert torch.equal(out[gray][:, 0], out[gray][:, 1]) and torch.equal(out[gray][:, 1], out[gray][:, 2])


def test_hue_shift_of_half_a_turn_gives_the_complement_hue() -> None:
    """Pure red shifted by 1/2 turn is cyan (known answer), via the operator's own apply."""
    red = torch.zeros(1, 3, 4, 4)
    red[:, 0] = 1.0
    params = {
        "jitter": torch.tensor([True]),
        "factors": torch.tensor([[1.0, 1.0, 1.0, 0.5]]),
        "order": torch.tensor([[3, 0, 1, 2]]),
        "gray": torch.tensor([False]),
    }
    out = Color().apply(red, params)
    torch.testing.assert_close(out[0, :, 0, 0], torch.tensor([0.0, 1.0, 1.0]), atol=1e-5, rtol=0)


def test_shape_dtype_range_determinism_and_replay() -> None:
    x = structured_images(32, seed=5)
    op = Color(strength=2.0)
    a, b = op(x, generator(9)), op(x, generator(9))
    assert a.shape == x.shape and a.dtype == torch.float32
    assert a.min() >= 0 and a.max() <= 1 and not math.isnan(a.sum().item())
    assert torch.equal(a, b)
    assert torch.equal(op.apply(x, op.sample(32, 32, 32, generator(9), DEVICE)), a)


def test_branch_free_hue_equals_kornia_and_torchvision_hue() -> None:
    """shift_hue (ours, fused for speed) against kornia.enhance.adjust_hue and torchvision, incl. gray and primaries."""
    x = torch.cat([structured_images(8, seed=6), torch.rand(8, 3, 32, 32, generator=generator(6))])
    x[0, :, :4, :4] = 0.5  # gray pixels: hue 0, unchanged
    x[1, :, :4, :4] = torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1)  # a primary: ties in max/min
    x[2, :, :4, :4] = torch.tensor([1.0, 1.0, 0.0]).view(3, 1, 1)  # two channels tie for the max
    shift = torch.linspace(-0.5, 0.5, 16)
    ours = shift_hue(x, shift)
    torch.testing.assert_close(ours, kornia.enhance.adjust_hue(x, shift * 2 * math.pi), atol=1e-5, rtol=0)
    for i in range(16):
        torch.testing.assert_close(ours[i], TF.adjust_hue(x[i], shift[i].item()), atol=1e-5, rtol=0)
    torch.testing.assert_close(ours[0, :, :4, :4], x[0, :, :4, :4], atol=1e-6, rtol=0)


@pytest.mark.parametrize("kind", ["brightness", "contrast", "saturation"])
def test_per_image_blend_equals_kornias_adjustments(kind: str) -> None:
    from ablate.augment.color import blend_

    x = structured_images(8, seed=8)
    factor = torch.linspace(0.0, 1.8, 8)
    use_mean = torch.full((8,), 1.0 if kind == "contrast" else 0.0)
    use_gray = torch.full((8,), 1.0 if kind == "saturation" else 0.0)
    reference = {
        "brightness": kornia.enhance.adjust_brightness_accumulative,
        "contrast": kornia.enhance.adjust_contrast_with_mean_subtraction,
        "saturation": kornia.enhance.adjust_saturation_with_gray_subtraction,
    }[kind](x, factor)
    out = blend_(x.clone(), factor, use_mean, use_gray)  # in place, as jitter uses it
    torch.testing.assert_close(out, reference, atol=1e-6, rtol=0)
