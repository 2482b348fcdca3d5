"""Linear evaluation: the probe leaves the encoder untouched, learns what is linearly there and nothing
that is not, and the semi-supervised label fractions are class-balanced subsets of the right size."""

from __future__ import annotations

import pytest
import torch

from ablate.config import RunSpec
from ablate.data import DatasetSplits, ImageData
from ablate.evaluate.features import extract_features
from ablate.evaluate.linear import label_subset, topk_accuracy, train_linear_probe
from ablate.methods.train import device_settings
from ablate.run import build_trainable, evaluate

CPU = torch.device("cpu")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def clusters(n: int, classes: int, dim: int, seed: int, spread: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian blobs around `classes` random centres (unit-norm × 4): linearly separable."""
    generator = torch.Generator().manual_seed(seed)
    centres = torch.nn.functional.normalize(torch.randn(classes, dim, generator=torch.Generator().manual_seed(99)), dim=1) * 4
    labels = torch.arange(n) % classes
    return centres[labels] + spread * torch.randn(n, dim, generator=generator), labels


def probe(train_x, train_y, test_x, test_y, classes, epochs=10):
    return train_linear_probe(train_x, train_y, test_x, test_y, num_classes=classes, epochs=epochs, lr=0.02, batch_size=128, seed=0)


def test_separable_features_are_learned_to_about_100_percent():
    train_x, train_y = clusters(1000, 10, 32, seed=1)
    test_x, test_y = clusters(500, 10, 32, seed=2)
    result = probe(train_x, train_y, test_x, test_y, 10)
    assert result.top1 >= 99.0 and result.top5 == 100.0 and result.train_top1 >= 99.0
    assert result.train_examples == 1000


def test_random_labels_give_chance_on_the_test_set():
    train_x, _ = clusters(1000, 10, 32, seed=1)
    test_x, _ = clusters(1000, 10, 32, seed=2)
    generator = torch.Generator().manual_seed(5)
    train_y = torch.randint(0, 4, (1000,), generator=generator)
    test_y = torch.randint(0, 4, (1000,), generator=generator)
    result = probe(train_x, train_y, test_x, test_y, 4)
    assert 25.0 - 6 <= result.top1 <= 25.0 + 6  # chance is 25 %; 6 points is > 4 binomial std at n = 1000


def test_topk_accuracy_counts_hits_in_the_top_k():
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.3], [0.2, 0.3, 0.5]])
    labels = torch.tensor([1, 2, 0])
    assert topk_accuracy(logits, labels, 1) == pytest.approx(100 / 3)
    assert topk_accuracy(logits, labels, 2) == pytest.approx(200 / 3)
    assert topk_accuracy(logits, labels, 5) == 100.0  # k is capped at the number of classes


@pytest.mark.parametrize("fraction, per_class", [(0.01, 5), (0.1, 50), (1.0, 500)])
def test_label_fraction_is_a_class_balanced_subset_of_the_right_size(fraction, per_class):
    labels = torch.arange(10).repeat_interleave(500)[torch.randperm(5000, generator=torch.Generator().manual_seed(0))]
    chosen = label_subset(labels, fraction, seed=7)
    assert chosen.numel() == 10 * per_class
    assert torch.unique(chosen).numel() == chosen.numel()  # no index twice
    assert torch.bincount(labels[chosen], minlength=10).tolist() == [per_class] * 10
    assert torch.equal(chosen, label_subset(labels, fraction, seed=7))  # seeded
    if fraction < 1:
        assert not torch.equal(chosen, label_subset(labels, fraction, seed=8))


def test_label_fraction_keeps_at_least_one_example_of_a_rare_class():
    labels = torch.tensor([0] * 300 + [1] * 20 + [2] * 1)
    counts = torch.bincount(labels[label_subset(labels, 0.01, seed=0)], minlength=3).tolist()
    assert counts == [3, 1, 1]


def tiny_splits() -> DatasetSplits:
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (120, 3, 16, 16), dtype=torch.uint8, generator=generator)
    labels = torch.arange(120) % 4
    train = ImageData(images[:80], labels[:80])
    return DatasetSplits(pretrain=train, train=train, test=ImageData(images[80:], labels[80:]), classes=list("abcd"))


@pytest.mark.parametrize("method", ["simclr", "supervised"])
def test_evaluation_leaves_the_encoder_bit_identical(method):
    spec = RunSpec.model_validate({
        "dataset": {"name": "shapes", "image_size": 16}, "model": {"arch": "small_cnn"}, "method": method,
        "eval": {"linear_epochs": 3, "knn_k": 5, "label_fraction": 0.5},
    })
    settings = device_settings(spec, CPU)
    model, _ = build_trainable(spec, 4, settings)
    with torch.no_grad():  # non-trivial batch-norm statistics, as after training
        model.train()
        model.encoder(torch.rand(32, 3, 16, 16) * 3)
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    metrics = evaluate(model, tiny_splits(), spec, settings).metrics
    after = model.state_dict()
    assert all(torch.equal(before[name], after[name]) for name in before), "the probe changed the encoder"
    assert model.training  # the mode it was in before evaluation
    assert metrics["labelled_examples"] == 40 and metrics["label_fraction"] == 0.5
    assert 0 <= metrics["linear_top1"] <= metrics["linear_top5"] <= 100
    assert ("supervised_top1" in metrics) == (method == "supervised")


def test_features_are_the_encoder_output_in_eval_mode():
    spec = RunSpec.model_validate({"model": {"arch": "small_cnn"}})
    model, _ = build_trainable(spec, 4, device_settings(spec, CPU))
    images = tiny_splits().test.images
    features = extract_features(model.encoder, images, CPU, batch_size=16)
    model.encoder.eval()
    with torch.no_grad():
        expected = model.encoder(images.float() / 255)
    assert features.shape == (40, model.encoder.feature_dim)
    assert torch.allclose(features, expected, atol=1e-6)
