"""Fine-tuning with few labels (paper §6, Table 7; recipe in Appendix B.5): the whole pre-trained
encoder and a new linear head trained on a class-balanced fraction of the labels.

Recipe (B.5): SGD with Nesterov momentum 0.9, learning rate 0.05 × batch / 256 (0.8 at the paper's
batch of 4096), no warm-up, no regularisation (no weight decay), random crop with left-to-right flip
(and resize) as the only augmentation; 60 epochs for 1 % of the labels, 30 for 10 %. The paper does
not say how long it fine-tunes on 100 % of the labels; ablate uses 30 epochs there, as for 10 % (the
same number SimCLRv2, Chen et al. NeurIPS 2020 §4, uses for 10 % and for all labels). Any fraction of
at most 1 % gets 60 epochs, any larger one 30; `eval.finetune.epochs` overrides them. After the
warm-up that B.5 leaves out, the learning rate decays along a cosine to zero, the schedule of the
official code (google-research/simclr, whose fine-tuning also starts the head at zero:
`zero_init_logits_layer`). The batch is capped at the labelled subset's size.

The labelled subset is `ablate.evaluate.linear.label_subset(labels, fraction, seed)`: class-balanced
and a function of the labels, the fraction and the run's seed only, so every run of a seed fine-tunes
on the same images, and the linear probe at the same `eval.label_fraction` reads the same ones.

The supervised baseline of Table 7 (`scratch`) is the same network freshly initialised and trained
on the same subset with the same recipe, views and batch order. Its initialisation draws from the
run's seed inside `torch.random.fork_rng`, so the evaluations that run after it see the global
random state they would have seen without it.

The encoder passed in is never changed: fine-tuning trains a deep copy. The views are made on the
device with ablate's own `Crop` operator (the spec's crop scale, ratio and flip probability), and the
network runs through `ModelForward` (channels_last, bf16 autocast on CUDA). torch.compile is left off
here: each fraction trains a new network for a few hundred steps at most, shorter than a compilation.
The test images are classified as they are (the full image, no augmentation).

Metrics (percent): ``finetune_<p>_top1``, ``finetune_<p>_top5``, ``scratch_<p>_top1``,
``scratch_<p>_top5`` with <p> = `fraction_label` (0.01 → 1pct, 0.1 → 10pct, 1.0 → 100pct, 0.005 → 0p5pct).
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ablate.augment.crop import Crop
from ablate.config import RunSpec
from ablate.config.specs import FinetuneSpec
from ablate.data import DatasetSplits, ImageData
from ablate.evaluate.linear import label_subset, topk_accuracy
from ablate.methods.base import Method
from ablate.methods.train import DeviceSettings, ModelForward, autocast
from ablate.models import Encoder, build_encoder

FEW_LABELS_EPOCHS = 60  # B.5: 1 % of the labels
MANY_LABELS_EPOCHS = 30  # B.5: 10 % of the labels (and ablate's choice for 100 %, see the module docstring)
FEW_LABELS_UP_TO = 0.01  # fractions up to 1 % get FEW_LABELS_EPOCHS
LR_BATCH_UNIT = 256  # lr is per 256 images (B.5: 0.05 × batch / 256)
EVAL_BATCH = 1024


@dataclass(frozen=True)
class FinetuneResult:
    top1: float  # percent, test set
    top5: float
    train_examples: int
    steps: int


class Classifier(nn.Module):
    """An encoder f and a linear head on h = f(x): class logits."""

    def __init__(self, encoder: nn.Module, feature_dim: int, num_classes: int):
        super().__init__()
        self.encoder = encoder
        # skip_init: no random draw for weights that are zeroed next (the global random state stays as it was)
        self.head = torch.nn.utils.skip_init(nn.Linear, feature_dim, num_classes)
        nn.init.zeros_(self.head.weight)  # the official code's zero_init_logits_layer
        nn.init.zeros_(self.head.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(images))


def fraction_label(fraction: float) -> str:
    """The metric-name form of a label fraction: 0.01 → '1pct', 0.1 → '10pct', 1.0 → '100pct', 0.005 → '0p5pct'."""
    percent = round(fraction * 100, 6)  # 0.1 × 100 is 10.000000000000002 in floating point
    return f"{percent:g}".replace(".", "p") + "pct"


def default_epochs(fraction: float) -> int:
    """The paper's epochs for a label fraction (B.5): 60 up to 1 %, 30 above."""
    return FEW_LABELS_EPOCHS if fraction <= FEW_LABELS_UP_TO else MANY_LABELS_EPOCHS


def epochs_per_fraction(spec: FinetuneSpec) -> list[int]:
    """The epochs of each of spec.fractions: the spec's own list, else the paper's."""
    if spec.epochs is not None:
        return list(spec.epochs)
    return [default_epochs(fraction) for fraction in spec.fractions]


def epochs_for(spec: FinetuneSpec, fraction: float) -> int:
    """The epochs of one fraction: the spec's, when it lists that fraction with its own epochs, else the paper's."""
    return dict(zip(spec.fractions, epochs_per_fraction(spec))).get(fraction, default_epochs(fraction))


def finetune_optimizer(model: nn.Module, spec: FinetuneSpec, batch_size: int) -> torch.optim.SGD:
    """SGD with Nesterov momentum, lr = spec.lr × batch / 256, no weight decay (B.5)."""
    return torch.optim.SGD(
        model.parameters(), lr=spec.lr * batch_size / LR_BATCH_UNIT, momentum=spec.momentum,
        nesterov=spec.momentum > 0, weight_decay=0.0,  # torch refuses Nesterov without momentum
    )


def fresh_encoder_like(spec: RunSpec, seed: int) -> Encoder:
    """The run's architecture freshly initialised from `seed`, leaving the global random state as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_encoder(spec.model, spec.dataset.image_size)


def fine_tune(
    encoder: nn.Module, feature_dim: int, train: ImageData, test: ImageData, num_classes: int,
    spec: FinetuneSpec, epochs: int, crop: Crop, settings: DeviceSettings, seed: int,
) -> FinetuneResult:
    """Train a copy of `encoder` with a zero-initialised linear head on `train` (all of it), then
    classify `test`; `encoder` itself is left untouched.

    Each epoch visits every training image once, in batches of near-equal size (no image dropped, no
    batch of a handful left over); each batch is a fresh random crop + flip of its images.
    """
    device = settings.device
    model = Classifier(copy.deepcopy(encoder), feature_dim, num_classes).to(device)
    if settings.channels_last:
        model.to(memory_format=torch.channels_last)
    model.train()
    images = train.images.to(device)
    labels = train.labels.to(device)
    n = len(train)
    batch_size = min(spec.batch_size, n)
    batches = math.ceil(n / batch_size)
    optimizer = finetune_optimizer(model, spec, batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * batches)
    forward = ModelForward(model, dataclasses.replace(settings, compile=False))
    generator = torch.Generator(device=device).manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator, device=device)
        for index in order.tensor_split(batches):
            views = crop(images[index].float().div_(255), generator)
            loss = F.cross_entropy(forward(views).float(), labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    top1, top5 = held_out_accuracy(model, test, settings)
    return FinetuneResult(top1, top5, n, epochs * batches)


@torch.no_grad()
def held_out_accuracy(model: nn.Module, test: ImageData, settings: DeviceSettings) -> tuple[float, float]:
    """Top-1 and top-5 (percent) of the model in eval mode on the un-augmented test images."""
    model.eval()
    logits = []
    for start in range(0, len(test), EVAL_BATCH):
        batch = test.images[start : start + EVAL_BATCH].to(settings.device).float().div_(255)
        if settings.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        with autocast(settings):
            logits.append(model(batch).float())
    joined = torch.cat(logits)
    labels = test.labels.to(joined.device)
    return topk_accuracy(joined, labels, 1), topk_accuracy(joined, labels, 5)


def finetune_metrics(model: Method, data: DatasetSplits, spec: RunSpec, settings: DeviceSettings) -> dict[str, float]:
    """Table 7's numbers for each fraction of `spec.eval.finetune`: the pre-trained encoder fine-tuned,
    and (when `scratch`) the same network trained from a fresh initialisation; {} when no fraction is asked."""
    finetune = spec.eval.finetune
    crop = Crop(spec.augment.crop_scale, spec.augment.crop_ratio, spec.augment.flip_p)
    num_classes = len(data.classes)
    metrics: dict[str, float] = {}
    for fraction, epochs in zip(finetune.fractions, epochs_per_fraction(finetune)):
        labelled = label_subset(data.train.labels, fraction, spec.seed)
        train = ImageData(data.train.images[labelled], data.train.labels[labelled])
        name = fraction_label(fraction)
        starts = {"finetune": model.encoder}
        if finetune.scratch:
            starts["scratch"] = fresh_encoder_like(spec, spec.seed)
        for start, encoder in starts.items():
            result = fine_tune(encoder, model.encoder.feature_dim, train, data.test, num_classes, finetune,
                               epochs, crop, settings, spec.seed)
            metrics[f"{start}_{name}_top1"] = result.top1
            metrics[f"{start}_{name}_top5"] = result.top5
    return metrics
