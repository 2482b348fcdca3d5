"""blur, cutout, sobel, noise, rotate: parameter ranges, probabilities and known answers."""

from __future__ import annotations

import kornia
import pytest
import torch
from augment_helpers import generator, standard_error_bound, structured_images

from ablate.augment.blur import Blur, kernel_size
from ablate.augment.cutout import Cutout
from ablate.augment.noise import Noise
from ablate.augment.rotate import Rotate
from ablate.augment.sobel import Sobel

DEVICE = torch.device("cpu")
N = 20000


# -------------------------------------------------------------------------------------------- blur


def test_blur_sigma_range_spread_and_probability() -> None:
    params = Blur().sample(N, 32, 32, generator(0), DEVICE)
    sigma = params["sigma"]
    assert sigma.min() >= 0.1 and sigma.max() <= 2.0
    assert sigma.min() < 0.11 and sigma.max() > 1.99
    assert abs(params["blur"].float().mean().item() - 0.5) < standard_error_bound(0.5, N)


@pytest.mark.parametrize(("side", "size"), [(8, 3), (32, 3), (64, 7), (96, 9), (224, 23)])
def test_blur_kernel_is_odd_and_about_a_tenth_of_the_side(side: int, size: int) -> None:
    assert kernel_size(side) == size


def test_blur_equals_per_image_gaussian_and_leaves_the_rest() -> None:
    x = structured_images(16, seed=1)
    op = Blur()
    params = op.sample(16, 32, 32, generator(1), DEVICE)
    out = op.apply(x, params)
    for i in range(16):
        if params["blur"][i]:
            s = params["sigma"][i].item()
            expected = kornia.filters.gaussian_blur2d(x[i : i + 1], (3, 3), (s, s), border_type="reflect")[0]
            torch.testing.assert_close(out[i], expected, atol=1e-6, rtol=0)
            assert (out[i] - x[i]).abs().max() > 1e-3
        else:
            assert torch.equal(out[i], x[i])


# ------------------------------------------------------------------------------------------ cutout


def test_cutout_boxes_in_range_spread_and_inside_the_image() -> None:
    params = Cutout().sample(N, 32, 32, generator(2), DEVICE)
    x0, y0, w, h = params["box"].T.float()
    assert params["erase"].all()  # with these ranges a fitting box is always found on 32×32
    area = w * h / 1024
    aspect = h / w
    # whole-pixel rounding moves the area by at most a row and a column
    assert area.min() >= 0.02 - 2 * 32 / 1024 and area.max() <= 0.33 + 2 * 32 / 1024
    assert area.min() < 0.025 and area.max() > 0.30
    assert aspect.min() >= 0.3 * 0.8 and aspect.max() <= 3.3 / 0.8
    assert (x0 >= 0).all() and (y0 >= 0).all() and (x0 + w <= 32).all() and (y0 + h <= 32).all()
    assert x0.min() == 0 and (x0 + w).max() == 32  # positions reach both edges


@pytest.mark.parametrize("fill", ["zero", "mean"])
def test_cutout_erases_exactly_the_box(fill: str) -> None:
    x = structured_images(8, seed=3)
    op = Cutout(fill=fill)
    params = op.sample(8, 32, 32, generator(3), DEVICE)
    out = op.apply(x, params)
    for i, (x0, y0, w, h) in enumerate(params["box"].tolist()):
        inside = torch.zeros(32, 32, dtype=torch.bool)
        inside[y0 : y0 + h, x0 : x0 + w] = True
        expected_fill = torch.zeros(3) if fill == "zero" else x[i].mean(dim=(1, 2))
        torch.testing.assert_close(out[i][:, inside], expected_fill[:, None].expand(3, int(inside.sum())))
        assert torch.equal(out[i][:, ~inside], x[i][:, ~inside])


# ------------------------------------------------------------------------------------------- sobel


def test_sobel_known_answer_on_a_vertical_step() -> None:
    x = torch.zeros(2, 3, 16, 16)
    x[0, :, :, 8:] = 1.0  # white right half
    x[1, :, :, 8:] = 0.2  # faint step: normalisation brings it to the same picture
    out = Sobel()(x)
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 1], out[:, 2])
    torch.testing.assert_close(out[0], out[1], atol=1e-4, rtol=0)
    assert out[0, 0, :, 7:9].min() > 0.99  # the two columns at the step are the strongest edge
    assert out[0, 0, :, :6].max() < 1e-3 and out[0, 0, :, 10:].max() < 1e-3  # flat regions have no edge
    flat = Sobel()(torch.full((1, 3, 8, 8), 0.5))
    assert flat.abs().max() < 1e-3


# ------------------------------------------------------------------------------------------- noise


def test_noise_std_mean_and_clipping() -> None:
    x = torch.full((64, 3, 32, 32), 0.5)
    out = Noise(std=0.1)(x, generator(4))
    diff = out - x
    assert abs(diff.std().item() - 0.1) < 0.002 and abs(diff.mean().item()) < 0.002
    bright = Noise(std=0.1)(torch.full((8, 3, 32, 32), 0.98), generator(5))
    assert bright.max() == 1.0 and (bright == 1.0).float().mean() > 0.3  # clipped, not wrapped


# ------------------------------------------------------------------------------------------ rotate


def test_rotate_draws_only_the_three_angles_each_a_third() -> None:
    quarters = Rotate().sample(N, 32, 32, generator(6), DEVICE)["quarters"]
    assert set(quarters.unique().tolist()) == {1, 2, 3}
    shares = torch.bincount(quarters, minlength=4)[1:].float() / N
    assert (shares - 1 / 3).abs().max() < standard_error_bound(1 / 3, N)


def test_rotate_equals_rot90_per_image() -> None:
    x = structured_images(12, seed=7)
    op = Rotate()
    params = op.sample(12, 32, 32, generator(7), DEVICE)
    out = op.apply(x, params)
    for i, k in enumerate(params["quarters"].tolist()):
        assert torch.equal(out[i], torch.rot90(x[i], k, dims=(-2, -1)))


@pytest.mark.parametrize("size", [3, 7, 23])
def test_gaussian_weights_equal_kornias(size: int) -> None:
    from ablate.augment.blur import gaussian_weights

    sigma = torch.tensor([0.1, 0.5, 1.0, 2.0, 5.0])
    expected = kornia.filters.get_gaussian_kernel1d(size, sigma.unsqueeze(1))
    torch.testing.assert_close(gaussian_weights(sigma, size), expected, atol=1e-7, rtol=0)
