"""The supervised baseline (Table 1's second row): it learns, and reports its classifier's accuracy."""

from __future__ import annotations

import torch
from torch import nn

from ablate.augment import ViewMaker
from ablate.config import AugmentSpec, ModelSpec, RunSpec
from ablate.config.methods import SupervisedSpec
from ablate.data import load_dataset
from ablate.evaluate.features import extract_features
from ablate.methods.base import MethodContext, ProbeFeatures
from ablate.methods.supervised import Supervised
from ablate.methods.train import device_settings, train
from ablate.run import build_trainable, seed_everything


def test_supervised_loss_decreases_on_shapes_in_a_few_steps():
    spec = RunSpec.model_validate({
        "method": "supervised",
        "dataset": {"name": "shapes", "train_size": 256, "test_size": 40, "image_size": 16},
        "model": {"arch": "small_cnn"},
        "train": {"epochs": 6, "batch_size": 64, "lr": 0.5, "optimizer": "sgd", "warmup_epochs": 1},  # 24 steps
        "augment": {"protocol": "both_branches", "ops": ["crop"], "crop_scale": [0.5, 1.0]},
    })
    seed_everything(spec.seed)
    settings = device_settings(spec, torch.device("cpu"))
    model, step_loss = build_trainable(spec, 10, settings)
    assert isinstance(model, Supervised) and model.classifier.out_features == 10
    outcome = train(model, step_loss, load_dataset(spec.dataset).train, spec, settings)
    first, last = outcome.epoch_losses[0], outcome.epoch_losses[-1]
    assert first > 2.0  # about log(10) = 2.30 at the start: ten classes, no idea yet
    assert last < first - 0.4, outcome.epoch_losses


class Identity(nn.Module):
    feature_dim = 3

    def forward(self, x):
        return x.mean(dim=(2, 3))  # N×3: the mean of each channel


def test_accuracy_is_that_of_the_classifier_on_plain_images():
    context = MethodContext(Identity(), ViewMaker(AugmentSpec()), ModelSpec(), num_classes=3)
    model = Supervised(SupervisedSpec(), context)
    with torch.no_grad():
        model.classifier.weight.copy_(torch.eye(3))  # predicts the brightest channel
        model.classifier.bias.zero_()
    images = torch.zeros(4, 3, 2, 2, dtype=torch.uint8)
    for i, channel in enumerate([0, 1, 2, 1]):
        images[i, channel] = 200
    labels = torch.tensor([0, 1, 0, 1])  # image 2 is brightest in channel 2: wrong; runner-up is a tie
    features = extract_features(model.encoder, images, torch.device("cpu"), batch_size=3)  # as evaluate() does
    unused = torch.zeros(0, 3)  # only the test features count
    metrics = model.extra_metrics(ProbeFeatures(unused, torch.zeros(0, dtype=torch.long), features, labels))
    assert metrics == {"supervised_top1": 75.0, "supervised_top5": 100.0}
    assert model.training  # restored
