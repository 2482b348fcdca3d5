"""The small CNN standardises each image before its first convolution (see ablate/models/small_cnn.py)."""

import torch

from ablate.config import ModelSpec
from ablate.models import INPUT_STD, build_encoder
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
    # standardise alone, on values of this scale: a view with contrast 0.2 (blended 80 % towards its
    # mean) comes out at (0.2 s / (0.2 s + eps)) / (s / (s + eps)) of the original amplitude, not 0.2.
    image = two_tone_image(0.2, 0.9)
    mean = image.mean()
    flat = 0.2 * image + 0.8 * mean
    s = image.std().item()
    expected = (0.2 * s / (0.2 * s + STANDARDISE_EPS)) / (s / (s + STANDARDISE_EPS))
    ratio = standardise(flat).norm() / standardise(image).norm()
    assert abs(ratio.item() - expected) < 1e-5
    assert 0.6 < expected < 0.7  # for this image on this scale: two thirds (in the encoder: next test)
    # Brightness (a factor on every value, no clipping) is damped the same way.
    assert torch.allclose(standardise(0.2 * image) / standardise(image), torch.tensor(expected), atol=1e-5)


def test_forward_applies_the_standardisation_first():
    torch.manual_seed(0)
    model = SmallCNN().eval()
    images = torch.rand(4, 3, 32, 32)
    assert torch.allclose(model(images), model.features(standardise(images)), atol=1e-6)
    assert model(images).shape == (4, 128)


def test_in_the_encoder_a_five_times_flatter_view_keeps_nine_tenths_of_its_amplitude():
    # What training sees: Encoder scales the images by 1 / INPUT_STD (= 4) before the backbone
    # standardises them, so the eps acts on that scale (0.05 there = 0.0125 on [0, 1]).
    encoder = build_encoder(ModelSpec(arch="small_cnn"), 32).eval()
    seen = []
    encoder.backbone.features[0].register_forward_hook(lambda module, inputs, output: seen.append(inputs[0]))
    image = two_tone_image(0.2, 0.9).expand(1, 3, 8, 8).contiguous()
    flat = 0.2 * image + 0.8 * image.mean()
    encoder(image), encoder(flat)
    s = image.std().item() / INPUT_STD[0]
    expected = (0.2 * s / (0.2 * s + STANDARDISE_EPS)) / (s / (s + STANDARDISE_EPS))
    assert abs((seen[1].norm() / seen[0].norm()).item() - expected) < 1e-5
    assert 0.85 < expected < 0.9  # nine tenths, against a fifth without the standardisation
