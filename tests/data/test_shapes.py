"""The built-in `shapes` dataset: seeded, balanced, cached, and colour carries no class information."""

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
    # Nearest-class-mean on each image's mean colour: must be near chance (10 %), because the
    # palette is drawn independently of the class; this is what makes crop alone a weak task.
    data = shapes.generate(4000, 16, seed=0)
    colour = data.images.float().mean(dim=(2, 3))
    train, test = slice(0, 3000), slice(3000, 4000)
    means = torch.stack([colour[train][data.labels[train] == k].mean(0) for k in range(10)])
    predicted = torch.cdist(colour[test], means).argmin(1)
    accuracy = (predicted == data.labels[test]).float().mean().item()
    assert accuracy < 0.16


def test_shape_is_visible_every_image_has_two_tones():
    # Foreground and background differ in luminance by at least 0.25 by construction (before
    # anti-aliasing and grain): the darkest and brightest tenth of each image must differ clearly.
    data = shapes.generate(300, 32, seed=0)
    luminance = (data.images.float() / 255 * torch.tensor([0.299, 0.587, 0.114])[:, None, None]).sum(1).flatten(1)
    spread = luminance.quantile(0.9, dim=1) - luminance.quantile(0.1, dim=1)
    assert spread.min().item() > 0.2


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
