"""The paper's linear evaluation (`eval.linear: paper`): a linear classifier trained by SGD on random
crop + flip views of the training images, through the frozen encoder.

SimCLR, Appendix B.6: the linear classifier is trained as the fine-tuning of B.5 is (Nesterov
momentum 0.9, no weight decay or other regularisation, random crop with resize and random flip as
the only augmentation) but with learning rate 0.1 × batch / 256 (1.6 at the paper's batch of 4096)
for 90 epochs; the classifier sits on the frozen base network (the paper's stop_gradient). The
official code's linear-evaluation command (google-research/simclr, README) adds what the paper
leaves out: the logits layer starts at zero (``--zero_init_logits_layer``) and the learning rate
follows a cosine decay to 0 over the training steps with no warm-up (``--warmup_epochs=0``; the
code's schedule is always a cosine decay). Test images are not augmented.

How this module maps those settings onto a small set:

* batch: 4096, capped at the number of labelled training images (``paper_batch_size``).
* epochs: 90 passes over the labelled training images (``eval.linear_paper_epochs``), as the
  paper's 90 passes over ImageNet. A set of at most 4096 images is then one step per epoch, so
  90 steps in all, where ImageNet's 90 epochs are about 28,000 (1.28 M / 4096 × 90): the paper's
  epochs, not its number of steps. Raise ``eval.linear_paper_epochs`` for more steps.
* crop + flip: ablate's ``crop`` operator (ablate.augment.crop: random resized crop, then a flip with
  p = 0.5) with the run's ``augment`` settings (crop_scale, crop_ratio, flip_p; the paper's
  [0.08, 1], [3/4, 4/3] and 0.5 unless the grid changes them), drawn on the device from a
  generator seeded by the run's seed, new views every epoch.
* frozen: the encoder (and the method, for z = g(h)) runs in eval mode under ``torch.no_grad``, so
  batch-norm statistics and weights stay bit-identical (tested); only the classifier learns.

Unlike ``ablate.evaluate.linear`` (the fast default), the features are not standardised: the paper
trains on the raw representation. The cost is one forward pass of every training image per epoch,
about `epochs` times that of the default probe's single pass (measured: the README and
notes/linear.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from ablate.augment.base import to_unit_float
from ablate.augment.crop import Crop
from ablate.evaluate.linear import LinearProbeResult, topk_accuracy

if TYPE_CHECKING:
    from ablate.config import RunSpec
    from ablate.data import DatasetSplits
    from ablate.methods import Method
    from ablate.methods.train import DeviceSettings

PAPER_EPOCHS = 90  # B.6
PAPER_BATCH_SIZE = 4096  # B.6 (B.5's batch)
PAPER_LR_PER_256 = 0.1  # B.6: learning rate 0.1 × batch / 256
PAPER_MOMENTUM = 0.9  # B.5, which B.6 follows: Nesterov momentum 0.9
ENCODE_CHUNK = 1024  # images per forward pass of the frozen network (memory, not numbers)

# Float images in [0, 1] (B×3×H×W, on the device) → what the classifier reads (B×D float32).
Representation = Callable[[torch.Tensor], torch.Tensor]


def paper_batch_size(examples: int, batch_size: int = PAPER_BATCH_SIZE) -> int:
    """The paper's batch, capped at the number of training examples."""
    return max(1, min(batch_size, examples))


def paper_learning_rate(batch_size: int, lr_per_256: float = PAPER_LR_PER_256) -> float:
    """The paper's linear scaling: lr = 0.1 × batch / 256 (1.6 at a batch of 4096)."""
    return lr_per_256 * batch_size / 256


def paper_optimizer(classifier: nn.Module, batch_size: int) -> torch.optim.SGD:
    """SGD with Nesterov momentum 0.9, no weight decay, at the paper's scaled learning rate."""
    return torch.optim.SGD(
        classifier.parameters(), lr=paper_learning_rate(batch_size), momentum=PAPER_MOMENTUM, nesterov=True, weight_decay=0.0
    )


def zero_classifier(feature_dim: int, num_classes: int, device: torch.device) -> nn.Linear:
    """The logits layer, weights and bias at zero (the official code's --zero_init_logits_layer):
    no random initialisation, so a seed decides only the views and the order of the images."""
    classifier = nn.Linear(feature_dim, num_classes).to(device)
    nn.init.zeros_(classifier.weight)
    nn.init.zeros_(classifier.bias)
    return classifier


@contextmanager
def frozen(module: nn.Module) -> Iterator[nn.Module]:
    """`module` in eval mode (batch norm on its running statistics) for the block; its mode restored after."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)


def network_representation(
    encoder: nn.Module, head: Callable[[torch.Tensor], torch.Tensor] | None = None, bf16: bool = False, channels_last: bool = False
) -> Representation:
    """h = encoder(x), or head(h) when a head is given (z = g(h): `Method.embedding`), as float32 without
    gradients. Call it inside `frozen(...)` of every module it runs. `bf16` / `channels_last`: the CUDA
    fast path, as `ablate.evaluate.features.extract_features` takes it."""

    @torch.no_grad()
    def represent(images: torch.Tensor) -> torch.Tensor:
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(images.device.type, dtype=torch.bfloat16) if bf16 else nullcontext():
            features = encoder(images).float()
        if head is not None:
            features = head(features).float()
        return features

    return represent


def represent_in_chunks(represent: Representation, images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """`represent` of every image (uint8 or float in [0, 1], any device), ENCODE_CHUNK at a time, each
    chunk moved to `device` as float [0, 1], without augmentation."""
    chunks = []
    for start in range(0, images.shape[0], ENCODE_CHUNK):
        chunks.append(represent(to_unit_float(images[start : start + ENCODE_CHUNK].to(device, non_blocking=True))))
    return torch.cat(chunks)


def train_linear_paper(
    represent: Representation,
    train_images: torch.Tensor,
    train_labels: torch.Tensor,
    test_images: torch.Tensor,
    test_labels: torch.Tensor,
    num_classes: int,
    crop: Crop,
    seed: int,
    device: torch.device,
    epochs: int = PAPER_EPOCHS,
    batch_size: int = PAPER_BATCH_SIZE,
) -> LinearProbeResult:
    """Train the paper's linear classifier on crop + flip views through `represent` (frozen); report
    top-1 / top-5 on the un-augmented test images and top-1 on the un-augmented training images.

    Images: uint8 (or float in [0, 1]) B×3×H×W on any device; each batch is moved to `device`,
    cropped and flipped there, and represented there. Same seed, same device → same numbers.
    """
    device = torch.device(device)
    train_labels = train_labels.to(device)
    n = train_images.shape[0]
    batch = paper_batch_size(n, batch_size)
    steps_per_epoch = -(-n // batch)
    view_generator = torch.Generator(device=device).manual_seed(seed)
    order_generator = torch.Generator(device="cpu").manual_seed(seed)
    feature_dim = represent(to_unit_float(train_images[:1].to(device))).shape[1]
    classifier = zero_classifier(feature_dim, num_classes, device)
    optimizer = paper_optimizer(classifier, batch)
    # Cosine decay to 0 over every step, no warm-up (the official code's linear-evaluation schedule).
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * steps_per_epoch)
    for _ in range(epochs):
        order = torch.randperm(n, generator=order_generator)
        for start in range(0, n, batch):
            index = order[start : start + batch]
            images = to_unit_float(train_images[index.to(train_images.device)].to(device, non_blocking=True))
            features = represent(crop(images, view_generator))
            loss = F.cross_entropy(classifier(features), train_labels[index.to(device)])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    with torch.no_grad():
        test_logits = classifier(represent_in_chunks(represent, test_images, device))
        train_logits = classifier(represent_in_chunks(represent, train_images, device))
    test_labels = test_labels.to(device)
    return LinearProbeResult(
        top1=topk_accuracy(test_logits, test_labels, 1),
        top5=topk_accuracy(test_logits, test_labels, 5),
        train_top1=topk_accuracy(train_logits, train_labels, 1),
        train_examples=n,
    )


def paper_linear_evaluation(
    model: Method, data: DatasetSplits, labelled: torch.Tensor, spec: RunSpec, settings: DeviceSettings
) -> LinearProbeResult:
    """`eval.linear: paper` for a run: the classifier on `eval.representation` (h, or z = `model.embedding(h)`)
    of the frozen network, trained on the `labelled` training images (indices), tested on all test images."""
    head = model.embedding if spec.eval.representation == "z" else None
    represent = network_representation(model.encoder, head, bf16=settings.autocast_bf16, channels_last=settings.channels_last)
    index = labelled.to(data.train.images.device)
    with frozen(model):  # the whole method: its encoder and head are submodules
        return train_linear_paper(
            represent, data.train.images[index], data.train.labels[index], data.test.images, data.test.labels,
            num_classes=len(data.classes), crop=Crop.from_spec(spec.augment), seed=spec.seed, device=settings.device,
            epochs=spec.eval.linear_paper_epochs,
        )


__all__ = [
    "PAPER_BATCH_SIZE", "PAPER_EPOCHS", "PAPER_LR_PER_256", "PAPER_MOMENTUM", "Representation", "frozen",
    "network_representation", "paper_batch_size", "paper_linear_evaluation", "paper_learning_rate", "paper_optimizer", "represent_in_chunks",
    "train_linear_paper", "zero_classifier",
]
