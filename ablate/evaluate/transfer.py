"""Transfer (paper §6, Table 8; protocol in Appendix B.8): the pre-trained encoder evaluated on other
datasets, by a linear probe on its frozen features and by fine-tuning it on all of a target's labels.

Each target of `eval.transfer` names a dataset (any `ablate.data` dataset: CIFAR-10 → CIFAR-100,
STL-10, an image folder; `shapes` → an image folder) and is loaded with `ablate.data.load_dataset`, so
a missing target fails the run with that dataset's usual message. The target's `image_size` is the
side its files are decoded and cached at; the encoder then sees them resized to the pre-training side,
as the paper resizes every transfer dataset to its pre-training resolution (B.8), because the network
(a ResNet's stem, for one) was built and trained for that side.

The linear probe is ablate's probe on pre-computed, un-augmented features (`ablate.evaluate.linear`,
`eval.linear_*` settings, all of the target's training labels); the paper instead fits an
ℓ2-regularised logistic regression with L-BFGS and picks the regularisation on a validation split
(B.8), which ablate leaves out. Fine-tuning is `ablate.evaluate.finetune.fine_tune` with the
`eval.finetune` recipe (B.5) on 100 % of the target's labels, for the target's `finetune_epochs` (default:
those of 100 % in `eval.finetune`); the paper's transfer fine-tuning (B.8) searches its learning rate and
weight decay per dataset, ablate uses the one recipe.

Metrics (percent): ``transfer_<label>_linear_top1`` / ``_top5`` and ``transfer_<label>_finetune_top1`` /
``_top5``, where <label> is the target's `label`.
"""

from __future__ import annotations

from ablate.augment.crop import Crop
from ablate.config import RunSpec
from ablate.config.specs import TransferTarget
from ablate.data import DatasetSplits, ImageData, load_dataset
from ablate.data.cifar import resize_images
from ablate.evaluate.features import extract_features
from ablate.evaluate.finetune import epochs_for, fine_tune
from ablate.evaluate.linear import train_linear_probe
from ablate.methods.base import Method
from ablate.methods.train import DeviceSettings

ALL_LABELS = 1.0


def at_side(data: ImageData, side: int) -> ImageData:
    """The images resized to side × side (unchanged when they already are)."""
    return ImageData(resize_images(data.images, side), data.labels)


def check_targets_available(spec: RunSpec) -> None:
    """Load every transfer target once before pre-training (fetching it where `download` asks), so that a missing
    one fails the run at its start with the dataset's message, not after hours of training."""
    for target in spec.eval.transfer:
        load_dataset(target.dataset)


def load_target(target: TransferTarget, side: int) -> DatasetSplits:
    """The target's dataset with its labelled training and test images at the pre-training side."""
    data = load_dataset(target.dataset)
    return DatasetSplits(pretrain=data.pretrain, train=at_side(data.train, side), test=at_side(data.test, side),
                         classes=data.classes)


def linear_transfer(model: Method, data: DatasetSplits, spec: RunSpec, settings: DeviceSettings) -> tuple[float, float]:
    """Top-1 and top-5 of a linear probe on the frozen encoder's features of the target's images."""
    fast = {"bf16": settings.autocast_bf16, "channels_last": settings.channels_last}
    train_features = extract_features(model.encoder, data.train.images, settings.device, **fast)
    test_features = extract_features(model.encoder, data.test.images, settings.device, **fast)
    probe = train_linear_probe(
        train_features, data.train.labels.to(settings.device), test_features, data.test.labels.to(settings.device),
        num_classes=len(data.classes), epochs=spec.eval.linear_epochs, lr=spec.eval.linear_lr,
        batch_size=spec.eval.linear_batch_size, seed=spec.seed,
    )
    return probe.top1, probe.top5


def finetune_transfer(
    model: Method, data: DatasetSplits, target: TransferTarget, spec: RunSpec, settings: DeviceSettings
) -> tuple[float, float]:
    """Top-1 and top-5 of a copy of the encoder fine-tuned on all of the target's labels (B.5's recipe), for
    the target's `finetune_epochs`, else eval.finetune's epochs for 100 % of the labels."""
    recipe = spec.eval.finetune
    crop = Crop(spec.augment.crop_scale, spec.augment.crop_ratio, spec.augment.flip_p)
    epochs = target.finetune_epochs or epochs_for(recipe, ALL_LABELS)
    result = fine_tune(model.encoder, model.encoder.feature_dim, data.train, data.test, len(data.classes), recipe,
                       epochs, crop, settings, spec.seed)
    return result.top1, result.top5


def transfer_metrics(model: Method, spec: RunSpec, settings: DeviceSettings) -> dict[str, float]:
    """Table 8's numbers for each target of `spec.eval.transfer` ({} when there is none)."""
    metrics: dict[str, float] = {}
    for target in spec.eval.transfer:
        data = load_target(target, spec.dataset.image_size)
        prefix = f"transfer_{target.label}"
        if target.linear:
            metrics[f"{prefix}_linear_top1"], metrics[f"{prefix}_linear_top5"] = linear_transfer(model, data, spec, settings)
        if target.finetune:
            metrics[f"{prefix}_finetune_top1"], metrics[f"{prefix}_finetune_top5"] = finetune_transfer(model, data, target, spec, settings)
    return metrics
