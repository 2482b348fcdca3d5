"""What h and z = g(h) know about the transformation applied: SimCLR's Table 3 (§4.2), as linear probes.

For each name in `eval.transform_probes`, a labelled set is built from the run's training images (and
another from its test images) by transforming them with ablate's own operators, and a linear
classifier learns to tell the transformation from the frozen network's h = f(x) and from
z = `method.embedding(h)` (SimCLR: g(h)). Table 3's finding: z has lost what the contrastive loss
makes it invariant to, while h keeps it (random guess / h / g(h), ImageNet, ResNet-50):

    colour vs grayscale             80 / 99.3 / 97.4
    rotation 0/90/180/270           25 / 67.6 / 25.6
    original vs gaussian noise      50 / 99.5 / 59.6
    original vs Sobel-filtered      50 / 96.6 / 56.3

The probes' definitions (each image of a split appears once, transformed or not):

* ``color``: every image goes through the run's colour distortion (`augment.color_strength`,
  `color_p`, `grayscale_p`: with p = 0.8 the jitter, then grayscale with p = 0.2 at the paper's
  settings); the label is whether grayscale was drawn. The classes are as unbalanced as the
  grayscale probability makes them (about 80 % colour), which is why the paper's random guess is 80.
* ``rotation``: a quarter of the images each rotated by 0°, 90°, 180°, 270° (counter-clockwise,
  `ablate.augment.rotate`); the label is the number of quarter turns.
* ``noise``: half of the images get the run's gaussian noise (`augment.noise_std`,
  `ablate.augment.noise`); the label is whether they did.
* ``sobel``: half of the images are replaced by their Sobel edge map (`ablate.augment.sobel`); the
  label is whether they were.

Rotation, noise and Sobel split their images exactly evenly (a seeded permutation of balanced
labels; a remainder goes to the first classes); colour draws its label. Each split's draws come from
a generator seeded by (run seed, probe, split), so a probe's data does not depend on which other
probes a grid asks for. The reference for every probe is its `_chance` metric: the share of the
test set's most frequent label, i.e. the accuracy of always guessing it (the paper's "random guess").

Differences from the paper, on purpose: the paper trains small MLPs on h and g(h); the probes here
are linear (`ablate.evaluate.linear.train_linear_probe`, with the run's `eval.linear_*` settings,
the same probe as the classification metric), which can only find what is linearly readable. The
paper's last three rows come from networks pre-trained with rotation, noise and Sobel added to
crop + colour; here the probes read whatever network the run trained (its `augment.ops`), so a
run that did not train on a transformation measures what its representation keeps of it anyway.

Metrics, in percent: ``transform_probe_<name>_h``, ``transform_probe_<name>_z`` (test top-1) and
``transform_probe_<name>_chance``. For a method whose embedding is h itself, z equals h.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import torch

from ablate.augment.base import apply_to_subset, to_unit_float
from ablate.augment.registry import build_operator
from ablate.augment.rotate import Rotate
from ablate.evaluate.linear import train_linear_probe
from ablate.evaluate.linear_paper import ENCODE_CHUNK, frozen, network_representation

if TYPE_CHECKING:
    from ablate.config import AugmentSpec, RunSpec
    from ablate.data import DatasetSplits
    from ablate.methods import Method
    from ablate.methods.train import DeviceSettings

PROBE_CLASSES: dict[str, int] = {"color": 2, "rotation": 4, "noise": 2, "sobel": 2}

# Table 3 of the paper (ImageNet, ResNet-50, MLP probes): random guess, h, g(h), in percent.
PAPER_TABLE3: dict[str, tuple[float, float, float]] = {
    "color": (80.0, 99.3, 97.4),
    "rotation": (25.0, 67.6, 25.6),
    "noise": (50.0, 99.5, 59.6),
    "sobel": (50.0, 96.6, 56.3),
}


def probe_seed(seed: int, probe: str, split: str) -> int:
    """A seed of its own for each (run seed, probe, split), the same in every process (unlike hash())."""
    digest = hashlib.blake2b(f"{seed}/{probe}/{split}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


def balanced_labels(n: int, classes: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """n labels, each class n // classes times (the remainder to the first classes), in a seeded random order."""
    labels = torch.arange(n, device=device) % classes
    return labels[torch.randperm(n, generator=generator, device=device)]


def transform_for_probe(
    probe: str, images: torch.Tensor, generator: torch.Generator, augment: AugmentSpec | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(transformed images, labels) of one probe for a batch of float images in [0, 1] (definitions: the module).

    `augment`: the run's operator settings (colour strength and probabilities, noise std); None: the paper's.
    """
    n, _, height, width = images.shape
    device = images.device
    if probe == "color":
        color = build_operator("color", augment)
        params = color.sample(n, height, width, generator, device)
        return color.apply(images, params), params["gray"].long()
    if probe == "rotation":
        quarters = balanced_labels(n, 4, generator, device)
        return Rotate().apply(images, {"quarters": quarters}), quarters
    if probe in ("noise", "sobel"):
        operator = build_operator(probe, augment)
        transformed = balanced_labels(n, 2, generator, device)
        params = operator.sample(n, height, width, generator, device)
        views = apply_to_subset(
            images, transformed.bool(), lambda subset, index: operator.apply(subset, {k: v[index] for k, v in params.items()})
        )
        return views, transformed
    raise ValueError(f"unknown transformation probe {probe!r}; expected one of {', '.join(PROBE_CLASSES)}")


@torch.no_grad()
def probe_features(
    probe: str, images: torch.Tensor, model: Method, generator: torch.Generator, augment: AugmentSpec,
    settings: DeviceSettings,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(h, z, labels) of a probe's set made from `images` (uint8, any device): transformed on the device
    ENCODE_CHUNK images at a time, then through the frozen network. Call it inside `frozen(model)`."""
    represent = network_representation(model.encoder, bf16=settings.autocast_bf16, channels_last=settings.channels_last)
    hs, zs, labels = [], [], []
    for start in range(0, images.shape[0], ENCODE_CHUNK):
        batch = to_unit_float(images[start : start + ENCODE_CHUNK].to(settings.device, non_blocking=True))
        views, batch_labels = transform_for_probe(probe, batch, generator, augment)
        h = represent(views)
        hs.append(h)
        zs.append(model.embedding(h).float())
        labels.append(batch_labels)
    return torch.cat(hs), torch.cat(zs), torch.cat(labels)


def majority_share(labels: torch.Tensor, classes: int) -> float:
    """Percent of the labels that are the most frequent one: the accuracy of always guessing it."""
    return 100.0 * torch.bincount(labels, minlength=classes).max().item() / labels.numel()


def transform_probe_metrics(model: Method, data: DatasetSplits, spec: RunSpec, settings: DeviceSettings) -> dict[str, float]:
    """`transform_probe_<name>_{h,z,chance}` for each probe the spec names (none: an empty dict).

    The method is frozen throughout (eval mode, no gradients: its weights and batch-norm statistics
    are untouched) and its mode restored after.
    """
    metrics: dict[str, float] = {}
    with frozen(model):
        for probe in spec.eval.transform_probes:
            made = {}
            for split, images in (("train", data.train.images), ("test", data.test.images)):
                generator = torch.Generator(device=settings.device).manual_seed(probe_seed(spec.seed, probe, split))
                made[split] = probe_features(probe, images, model, generator, spec.augment, settings)
            (train_h, train_z, train_labels), (test_h, test_z, test_labels) = made["train"], made["test"]
            classes = PROBE_CLASSES[probe]
            for representation, train, test in (("h", train_h, test_h), ("z", train_z, test_z)):
                result = train_linear_probe(
                    train, train_labels, test, test_labels, num_classes=classes, epochs=spec.eval.linear_epochs,
                    lr=spec.eval.linear_lr, batch_size=spec.eval.linear_batch_size, seed=spec.seed,
                )
                metrics[f"transform_probe_{probe}_{representation}"] = result.top1
            metrics[f"transform_probe_{probe}_chance"] = majority_share(test_labels, classes)
    return metrics


__all__ = [
    "PAPER_TABLE3", "PROBE_CLASSES", "balanced_labels", "majority_share", "probe_features", "probe_seed",
    "transform_for_probe", "transform_probe_metrics",
]
