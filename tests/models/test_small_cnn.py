"""The small CNN standardises each image before its first convolution (see ablate/models/small_cnn.py)."""

import torch

from ablate.models.small_cnn import STANDARDISE_EPS, SmallCNN, standardise


def two_tone_image(low: float, high: float) -> torch.Tensor:
    """1×3×8×8: left half `low`, right half `high` in every channel (population std = (high - low) / 2)."""
    image = torch.full((1, 3, 8, 8), low)
    image[..., 4:] = high
    return image


def test_each_image_gets_zero_mean_and_the_documented_scale():
    image = two_tone_image(0.2, 0.9)
    out = standardise(image)
    std = image.std().item()  # torch's default: unbiased, as standardise uses
    assert abs(out.mean().item()) < 1e-6
    assert abs(out.std().item() - std / (std + STANDARDISE_EPS)) < 1e-5
    # Images are standardised one by one: a second, different image in the batch changes nothing.
    batch = torch.cat([image, two_tone_image(0.0, 0.1)])
    assert torch.allclose(standardise(batch)[:1], out)


def test_brightness_and_contrast_are_damped_not_removed():
    # A view with contrast 0.2 (blended 80 % towards its mean) reaches the network at
    # (0.2 s / (0.2 s + eps)) / (s / (s + eps)) of the original amplitude, not at 0.2.
    image = two_tone_image(0.2, 0.9)
    mean = image.mean()
    flat = 0.2 * image + 0.8 * mean
    s = image.std().item()
    expected = (0.2 * s / (0.2 * s + STANDARDISE_EPS)) / (s / (s + STANDARDISE_EPS))
    ratio = standardise(flat).norm() / standardise(image).norm()
    assert abs(ratio.item() - expected) < 1e-5
    assert 0.6 < expected < 0.7  # for this image: two thirds, against a fifth without standardisation
    # Brightness (a factor on every value, no clipping) is damped the same way.
    assert torch.allclose(standardise(0.2 * image) / standardise(image), torch.tensor(expected), atol=1e-5)


def test_forward_applies_the_standardisation_first():
    torch.manual_seed(0)
    model = SmallCNN().eval()
    images = torch.rand(4, 3, 32, 32)
    assert torch.allclose(model(images), model.features(standardise(images)), atol=1e-6)
    assert model(images).shape == (4, 128)
