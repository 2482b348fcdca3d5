"""The paper's linear protocol (eval.linear: paper, Appendix B.6): Nesterov SGD at 0.1 × batch / 256 with a
cosine decay from a zero classifier, on crop + flip views made by ablate's crop operator from the run's seed,
through a frozen network that it leaves bit-identical; un-augmented images for the reported accuracies."""

from __future__ import annotations

import math

import pytest
import torch

import ablate.evaluate.linear_paper as linear_paper
from ablate.augment.crop import Crop
from ablate.config import RunSpec
from ablate.data import DatasetSplits, ImageData
from ablate.evaluate.linear_paper import (
    PAPER_EPOCHS,
    frozen,
    network_representation,
    paper_batch_size,
    paper_learning_rate,
    paper_optimizer,
    train_linear_paper,
)
from ablate.methods.train import device_settings
from ablate.run import build_trainable, evaluate

CPU = torch.device("cpu")
ORIGINAL_ZERO_CLASSIFIER = linear_paper.zero_classifier

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def colour_images(n: int, seed: int, size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat images of one of three colours (class = the brightest channel) with pixel noise: uint8 B×3×H×W."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 3
    colour = torch.full((n, 3), 0.2)
    colour[torch.arange(n), labels] = 0.8
    images = colour[:, :, None, None] + 0.05 * torch.randn(n, 3, size, size, generator=generator)
    return (images.clamp(0, 1) * 255).round().to(torch.uint8), labels


def mean_colour(images: torch.Tensor) -> torch.Tensor:
    """A parameter-free 'frozen network': each image's mean colour (a crop of a flat image keeps it)."""
    return images.mean(dim=(2, 3))


class Recorder:
    """A representation that remembers every batch it was given."""

    def __init__(self, represent):
        self.represent, self.batches = represent, []

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        self.batches.append(images.clone())
        return self.represent(images)


def test_paper_settings_are_the_papers():
    assert PAPER_EPOCHS == 90 and RunSpec().eval.linear_paper_epochs == 90 and RunSpec().eval.linear == "features"
    assert paper_learning_rate(4096) == pytest.approx(1.6)  # B.6: 0.1 × 4096 / 256
    assert paper_learning_rate(3072) == pytest.approx(1.2)
    assert paper_batch_size(50_000) == 4096 and paper_batch_size(3072) == 3072 and paper_batch_size(1) == 1
    optimizer = paper_optimizer(torch.nn.Linear(4, 2), 4096)
    group = optimizer.param_groups[0]
    assert isinstance(optimizer, torch.optim.SGD)
    assert (group["lr"], group["momentum"], group["nesterov"], group["weight_decay"]) == (pytest.approx(1.6), 0.9, True, 0.0)


def test_training_is_nesterov_sgd_with_cosine_decay_from_zero_as_a_hand_written_float64_loop(monkeypatch):
    """With an identity crop (area 1, aspect 1, no flip) every epoch is one full-batch step, so the classifier
    must equal plain gradient descent written out here: PyTorch's Nesterov form v ← μv + g, w ← w − lr(g + μv),
    lr_t = 0.1 × n / 256 × (1 + cos(π t / T)) / 2, weights and bias starting at zero."""
    made = []

    def recording_zero_classifier(*args):
        made.append(ORIGINAL_ZERO_CLASSIFIER(*args))
        return made[-1]

    monkeypatch.setattr(linear_paper, "zero_classifier", recording_zero_classifier)
    images, labels = colour_images(48, seed=0)
    epochs = 7
    identity_crop = Crop(scale=(1.0, 1.0), ratio=(1.0, 1.0), flip_p=0.0)
    train_linear_paper(mean_colour, images, labels, images, labels, 3, identity_crop, seed=0, device=CPU, epochs=epochs)

    x = (images.double() / 255).mean(dim=(2, 3))
    y = torch.nn.functional.one_hot(labels, 3).double()
    weight, bias = torch.zeros(3, 3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)
    velocity_w, velocity_b = torch.zeros_like(weight), torch.zeros_like(bias)
    base_lr = 0.1 * 48 / 256
    for step in range(epochs):
        logits = x @ weight.T + bias
        p = torch.softmax(logits, dim=1)
        grad_logits = (p - y) / x.shape[0]  # mean cross-entropy
        grad_w, grad_b = grad_logits.T @ x, grad_logits.sum(dim=0)
        lr = base_lr * (1 + math.cos(math.pi * step / epochs)) / 2
        velocity_w = 0.9 * velocity_w + grad_w
        velocity_b = 0.9 * velocity_b + grad_b
        weight -= lr * (grad_w + 0.9 * velocity_w)
        bias -= lr * (grad_b + 0.9 * velocity_b)
    (classifier,) = made
    assert torch.allclose(classifier.weight.double(), weight, atol=1e-6, rtol=1e-4)
    assert torch.allclose(classifier.bias.double(), bias, atol=1e-6, rtol=1e-4)
    assert weight.abs().max() > 1e-3  # it did learn something, so the comparison means something


def test_the_classifier_sees_the_crop_operators_views_of_the_seed_and_reports_on_unaugmented_images():
    images, labels = colour_images(40, seed=1)
    test_images, test_labels = colour_images(20, seed=2)
    crop = Crop(scale=(0.25, 1.0))
    recorder = Recorder(mean_colour)
    train_linear_paper(recorder, images, labels, test_images, test_labels, 3, crop, seed=5, device=CPU, epochs=2)
    # Calls: 1 image (sizes the classifier), epoch 1, epoch 2 (one full batch each), test images, training images.
    assert [batch.shape[0] for batch in recorder.batches] == [1, 40, 40, 20, 40]
    order_generator = torch.Generator().manual_seed(5)
    view_generator = torch.Generator().manual_seed(5)
    for epoch_views in recorder.batches[1:3]:
        order = torch.randperm(40, generator=order_generator)
        expected = crop(images[order].float() / 255, view_generator)
        assert torch.equal(epoch_views, expected)
    assert not torch.equal(recorder.batches[1], recorder.batches[2])  # new views every epoch
    assert torch.equal(recorder.batches[3], test_images.float() / 255)  # test: un-augmented
    assert torch.equal(recorder.batches[4], images.float() / 255)


def test_a_linearly_separable_set_is_learned_to_about_100_percent():
    images, labels = colour_images(300, seed=3)
    test_images, test_labels = colour_images(150, seed=4)
    result = train_linear_paper(mean_colour, images, labels, test_images, test_labels, 3, Crop(), seed=0, device=CPU, epochs=30)
    assert result.top1 >= 98.0 and result.train_top1 >= 98.0 and result.top5 == 100.0
    assert result.train_examples == 300


def test_results_are_reproducible_per_seed_and_the_views_change_with_it():
    images, labels = colour_images(60, seed=5)
    runs = {}
    for seed in (0, 0, 1):
        recorder = Recorder(mean_colour)
        result = train_linear_paper(recorder, images, labels, images, labels, 3, Crop(), seed=seed, device=CPU, epochs=3)
        runs.setdefault(seed, []).append((result, recorder.batches[1]))
    (first, views_first), (second, views_second) = runs[0]
    assert first == second and torch.equal(views_first, views_second)
    assert not torch.equal(views_first, runs[1][0][1])


def tiny_splits() -> DatasetSplits:
    images, labels = colour_images(72, seed=6, size=16)
    train = ImageData(images[:48], labels[:48])
    return DatasetSplits(pretrain=train, train=train, test=ImageData(images[48:], labels[48:]), classes=list("abc"))


@pytest.mark.parametrize("linear, representation", [("features", "h"), ("paper", "h"), ("paper", "z")])
def test_both_protocols_leave_every_parameter_and_buffer_of_the_method_bit_identical(linear, representation):
    spec = RunSpec.model_validate({
        "dataset": {"name": "shapes", "image_size": 16}, "model": {"arch": "small_cnn"},
        "eval": {"linear": linear, "representation": representation, "linear_paper_epochs": 2, "linear_epochs": 2,
                 "knn_k": 5, "label_fraction": 0.5},
    })
    settings = device_settings(spec, CPU)
    model, _ = build_trainable(spec, 3, settings)
    with torch.no_grad():  # non-trivial batch-norm statistics, as after training
        model.train()
        model(torch.rand(32, 3, 16, 16) * 3)
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    assert any("running_mean" in name for name in before) and any("num_batches_tracked" in name for name in before)
    metrics = evaluate(model, tiny_splits(), spec, settings).metrics
    after = model.state_dict()
    assert before.keys() == after.keys()
    changed = [name for name in before if not torch.equal(before[name], after[name])]
    assert not changed, f"the {linear} protocol changed {changed}"
    assert model.training and model.encoder.training  # the mode it was in before evaluation
    assert metrics["labelled_examples"] == 24
    assert 0 <= metrics["linear_top1"] <= metrics["linear_top5"] <= 100


def test_the_z_representation_is_the_methods_embedding_of_h_in_eval_mode():
    spec = RunSpec.model_validate({"dataset": {"name": "shapes", "image_size": 16}, "model": {"arch": "small_cnn"}})
    model, _ = build_trainable(spec, 3, device_settings(spec, CPU))
    images = torch.rand(10, 3, 16, 16)
    with frozen(model):
        z = network_representation(model.encoder, model.embedding)(images)
        h = network_representation(model.encoder)(images)
    assert model.training  # restored
    model.eval()
    with torch.no_grad():
        expected_h = model.encoder(images)
        expected_z = model.embedding(expected_h)
    assert torch.allclose(h, expected_h, atol=1e-6) and torch.allclose(z, expected_z, atol=1e-6)
    assert z.shape[1] != h.shape[1] or not torch.allclose(z, h)
