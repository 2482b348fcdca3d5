"""Online kNN monitor: how far the encoder's features have come, every few epochs, at a small fixed cost.

At the end of some epochs (the training loop's epoch-end hook, composed in `ablate.run`) the frozen
encoder embeds a fixed subset, a bank of BANK_IMAGES labelled training images and QUERY_IMAGES test
images, and the weighted kNN vote of `ablate.evaluate.knn` (the run's eval.knn_k, capped at the
bank, and eval.knn_temperature) gives a top-1 accuracy in percent. The subset is drawn from the
dataset's seed, so every run of a grid, whatever its cell or seed, is measured on the same images.
It is a curve to watch, not a result: the run's `knn_top1` metric uses the whole sets after training.

It changes nothing about training: the encoder runs in eval mode without gradients
(`ablate.evaluate.features`: batch-norm statistics untouched, the training mode restored), and the
subset is drawn with a generator of its own, never the training generator nor torch's global one.
It is not part of the run spec, so a run's id is the same with it on or off; ABLATE_MONITOR_EVERY
(`ablate.settings`) chooses how often it measures:

    N ≥ 1   at the epochs that are multiples of N
    0       never
    auto    (the default) every max(1, epochs // 10) epochs, about ten points a run, widened until
            the monitor's share of the run's encoder work is at most MAX_SHARE_PERCENT (5 %); off
            when even one measurement a run would exceed it.

The share is counted, not timed: a measurement forwards the subset's images once; an epoch forwards
and back-propagates (about three forwards, as `ablate.models.flops` counts training) every view of
every image it draws. Counting keeps the choice the same on every machine and across a resume, so a
grid's runs have their curves at the same epochs, where a timed rule would move them with the load
of a shared machine. It is an estimate, not a bound: it leaves out augmentation and the optimiser on
the training side and the kNN vote on the monitor's. The time the monitor took is recorded in
result.json's timings (`monitor`, outside `train`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ablate.config import RunSpec
from ablate.data import DatasetSplits
from ablate.evaluate.features import extract_features
from ablate.evaluate.knn import knn_accuracy

BANK_IMAGES = 1000
QUERY_IMAGES = 500
MAX_SHARE_PERCENT = 5
FORWARDS_PER_TRAINING_VIEW = 3  # forward + backward ≈ 3 forward passes


@dataclass(frozen=True)
class MonitorSubset:
    """The fixed images the monitor measures on: a labelled bank and the queries classified against it."""

    bank_images: torch.Tensor  # uint8, N×3×H×W
    bank_labels: torch.Tensor
    query_images: torch.Tensor
    query_labels: torch.Tensor

    @property
    def images(self) -> int:
        """Images one measurement forwards through the encoder."""
        return len(self.bank_labels) + len(self.query_labels)

    def to(self, device: torch.device) -> MonitorSubset:
        return MonitorSubset(*(tensor.to(device) for tensor in
                               (self.bank_images, self.bank_labels, self.query_images, self.query_labels)))


def draw_subset(data: DatasetSplits, seed: int, bank_size: int = BANK_IMAGES, query_size: int = QUERY_IMAGES) -> MonitorSubset:
    """`bank_size` labelled training images and `query_size` test images (all of them when a split is
    smaller), chosen by a generator seeded with `seed` and nothing else."""
    generator = torch.Generator().manual_seed(seed)
    labelled = (data.train.labels >= 0).nonzero().flatten()
    bank = labelled[torch.randperm(len(labelled), generator=generator)[:bank_size]]
    queries = torch.randperm(len(data.test), generator=generator)[:query_size]
    return MonitorSubset(data.train.images[bank], data.train.labels[bank], data.test.images[queries], data.test.labels[queries])


def auto_interval(epochs: int, monitor_images: int, images_per_epoch: int, views_per_image: int) -> int:
    """Epochs between measurements under `auto` (0: off): every max(1, epochs // 10) epochs, or more
    seldom where one measurement (`monitor_images` forwards) is more than MAX_SHARE_PERCENT of the
    encoder work of the epochs between two measurements."""
    epoch_forwards = images_per_epoch * views_per_image * FORWARDS_PER_TRAINING_VIEW
    if epoch_forwards <= 0:
        return 0
    # The fewest epochs k with monitor_images ≤ MAX_SHARE_PERCENT / 100 · k · epoch_forwards, in integers.
    fewest = -(-monitor_images * 100 // (MAX_SHARE_PERCENT * epoch_forwards))
    every = max(1, epochs // 10, fewest)
    return every if every <= epochs else 0


def measuring_epochs(epochs: int, every: int) -> list[int]:
    """The epochs (counted from 1) at whose end the monitor measures."""
    return [epoch for epoch in range(1, epochs + 1) if every and epoch % every == 0]


class KnnMonitor:
    """kNN top-1 (%) of the encoder's features on a fixed subset, at the epochs that are multiples of `every`."""

    def __init__(self, subset: MonitorSubset, every: int, num_classes: int, k: int, temperature: float,
                 device: torch.device, bf16: bool = False, channels_last: bool = False):
        self.subset = subset.to(device)  # a few MB: kept on the device for the whole run
        self.every = every
        self.num_classes, self.k, self.temperature = num_classes, k, temperature
        self.device, self.bf16, self.channels_last = device, bf16, channels_last

    def due(self, epoch: int) -> bool:
        return self.every > 0 and epoch % self.every == 0

    def measure(self, encoder: nn.Module) -> float:
        """Features of bank and queries in eval mode without gradients, then the weighted kNN vote."""
        fast = {"bf16": self.bf16, "channels_last": self.channels_last}
        bank = extract_features(encoder, self.subset.bank_images, self.device, **fast)
        queries = extract_features(encoder, self.subset.query_images, self.device, **fast)
        return knn_accuracy(bank, self.subset.bank_labels, queries, self.subset.query_labels,
                            k=self.k, temperature=self.temperature, num_classes=self.num_classes)


def build_monitor(spec: RunSpec, data: DatasetSplits, images_per_epoch: int, views_per_image: int, every: int | None,
                  device: torch.device, bf16: bool = False, channels_last: bool = False) -> KnnMonitor | None:
    """The run's monitor for ABLATE_MONITOR_EVERY's value `every` (None: auto); None when it is off.

    `images_per_epoch` are the images one epoch draws and `views_per_image` the views each gives (the
    method's), which `auto` weighs the monitor's cost against.
    """
    if every == 0:
        return None
    subset = draw_subset(data, spec.dataset.seed)
    if every is None:
        every = auto_interval(spec.train.epochs, subset.images, images_per_epoch, views_per_image)
        if every == 0:
            return None
    return KnnMonitor(subset, every, len(data.classes), spec.eval.knn_k, spec.eval.knn_temperature,
                      device, bf16=bf16, channels_last=channels_last)
