"""The built-in `shapes` dataset: seeded, balanced, cached, and colour carries no class information."""

import math

import kornia
import torch

from ablate.config import DatasetSpec
from ablate.data import load_dataset, shapes


def test_same_seed_same_images_other_seed_other_images():
    a, b, c = shapes.generate(200, 16, seed=1), shapes.generate(200, 16, seed=1), shapes.generate(200, 16, seed=2)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.images, c.images)
    assert a.images.dtype == torch.uint8 and a.images.shape == (200, 3, 16, 16)


def test_labels_are_balanced_over_ten_classes():
    data = shapes.generate(1000, 16, seed=0)
    assert torch.bincount(data.labels, minlength=10).tolist() == [100] * 10
    assert len(shapes.CLASSES) == 10


def test_colour_alone_does_not_predict_the_class():
    # Nearest-class-mean on each image's colour: must be near chance (10 %), because the tint is
    # drawn independently of the class; this is what makes crop alone a weak task. Two colour
    # features: the tint itself (per-channel maximum: the shape's pixels) and the chromaticity of
    # the mean colour (mean / its sum). Not the raw mean colour: its brightness follows the share of
    # the image the shape covers, which is shape information (it predicts the class at ~23 %).
    data = shapes.generate(4000, 16, seed=0)
    images = data.images.float()
    mean = images.mean(dim=(2, 3))
    for colour in (images.amax(dim=(2, 3)), mean / mean.sum(1, keepdim=True)):
        train, test = slice(0, 3000), slice(3000, 4000)
        means = torch.stack([colour[train][data.labels[train] == k].mean(0) for k in range(10)])
        predicted = torch.cdist(colour[test], means).argmin(1)
        accuracy = (predicted == data.labels[test]).float().mean().item()
        assert accuracy < 0.16


def test_each_image_is_one_tint_with_its_background_at_a_fifth_of_its_brightness():
    # Rendered at twice the size and average-pooled, so no anti-aliased edge pixel is involved:
    # every pixel is the tint (shape) or the tint × 0.2 (background), rounded to uint8.
    data = shapes.generate(300, 16, seed=0)
    images = data.images.float() / 255
    flat = images.flatten(2)  # N×3×P
    brightest = flat.gather(2, flat.sum(1, keepdim=True).argmax(2, keepdim=True).expand(-1, 3, 1))[..., 0]
    darkest = flat.gather(2, flat.sum(1, keepdim=True).argmin(2, keepdim=True).expand(-1, 3, 1))[..., 0]
    assert torch.allclose(darkest, shapes.BACKGROUND_BRIGHTNESS * brightest, atol=1.5 / 255)
    value = brightest.max(1).values
    saturation = 1 - brightest.min(1).values / value
    assert value.min() >= 0.85 - 1 / 255 and saturation.min() >= 0.6 - 2 / 255 and saturation.max() <= 1
    # Every image has both tones (a shape or texture never fills the whole image, nor vanishes).
    assert (value - darkest.max(1).values).min() > 0.5


def test_tint_hue_is_uniform_over_the_circle():
    data = shapes.generate(4000, 8, seed=0)
    hsv = kornia.color.rgb_to_hsv(data.images.float().amax(dim=(2, 3), keepdim=True) / 255)
    hue = hsv[:, 0, 0, 0] / (2 * math.pi)  # turns; amax per channel = the tint (shape pixels)
    counts = torch.histc(hue, bins=10, min=0, max=1)
    # Multinomial: each tenth holds 400 ± 3 standard deviations (sqrt(4000 × 0.1 × 0.9) = 19).
    assert ((counts - 400).abs() < 3 * 19).all(), counts.tolist()


def test_load_uses_the_cache_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("ABLATE_CACHE", str(tmp_path))
    shapes._generate_cached.cache_clear()
    spec = DatasetSpec(name="shapes", train_size=100, test_size=50, image_size=16, seed=3)
    first = load_dataset(spec)
    files = list(tmp_path.glob("shapes-*.pt"))
    assert len(files) == 1
    shapes._generate_cached.cache_clear()
    second = load_dataset(spec)
    assert torch.equal(first.train.images, second.train.images) and torch.equal(first.test.labels, second.test.labels)
    assert len(first.train) == 100 and len(first.test) == 50 and first.classes == shapes.CLASSES
    shapes._generate_cached.cache_clear()


def test_a_changed_generator_does_not_reuse_the_cache(tmp_path, monkeypatch):
    # The key holds a hash of shapes.py: another source text means another cache file, and a file
    # written by other code (here: zeros under the other fingerprint) is never read for this one.
    monkeypatch.setenv("ABLATE_CACHE", str(tmp_path))
    spec = DatasetSpec(name="shapes", train_size=20, test_size=10, image_size=16, seed=5)
    monkeypatch.setattr(shapes, "SOURCE_FINGERPRINT", "other-code")
    shapes._generate_cached.cache_clear()
    stale = tmp_path / f"shapes-{shapes._cache_key(30, 16, 5)}.pt"
    torch.save({"images": torch.zeros(30, 3, 16, 16, dtype=torch.uint8), "labels": torch.zeros(30, dtype=torch.int64)}, stale)
    monkeypatch.undo()
    monkeypatch.setenv("ABLATE_CACHE", str(tmp_path))
    shapes._generate_cached.cache_clear()
    data = load_dataset(spec)
    assert torch.equal(data.train.images, shapes.generate(30, 16, 5).images[:20])
    assert len(list(tmp_path.glob("shapes-*.pt"))) == 2  # the stale file and the current one
    shapes._generate_cached.cache_clear()
