"""Supervised baseline (Table 1's second row): the same encoder, a linear classifier, cross-entropy."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ablate.config.methods import SupervisedSpec
from ablate.evaluate.linear import topk_accuracy
from ablate.methods.base import Forward, Method, MethodContext, ProbeFeatures


class Supervised(Method):
    """The supervised baseline: one augmented view of each labelled image, a linear classifier, cross-entropy.

    Trains on the labelled split (`DatasetSplits.train`) and adds its own classifier's accuracy to
    the results (`supervised_top1`, `supervised_top5`: Table 1's supervised row).

    Example (one training step's loss on a batch of labelled uint8 images)::

        >>> import torch
        >>> from ablate.augment import ViewMaker
        >>> from ablate.config import AugmentSpec, ModelSpec
        >>> from ablate.config.methods import SupervisedSpec
        >>> from ablate.methods.base import MethodContext
        >>> from ablate.models import build_encoder
        >>> model = ModelSpec(arch="small_cnn")
        >>> context = MethodContext(build_encoder(model, 16), ViewMaker(AugmentSpec(ops=["crop"])), model, num_classes=10)
        >>> supervised = Supervised(SupervisedSpec(), context)
        >>> images, labels = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8), torch.arange(8)
        >>> (view,) = supervised.make_inputs(images, labels, torch.Generator().manual_seed(0))
        >>> view.shape, supervised(view).shape
        (torch.Size([8, 3, 16, 16]), torch.Size([8, 10]))
        >>> bool(supervised.loss((view,), labels) > 0)
        True
    """

    spec_class = SupervisedSpec
    pretrain_split = "train"
    views_per_image = 1

    def __init__(self, spec: SupervisedSpec, context: MethodContext):
        super().__init__(spec, context)
        self.classifier = nn.Linear(self.encoder.feature_dim, context.num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Class logits of the images."""
        return self.classifier(self.encoder(images))

    def embedding(self, features: torch.Tensor) -> torch.Tensor:
        """The class logits: what the cross-entropy reads (for the collapse diagnostic)."""
        return self.classifier(features)

    def make_inputs(self, images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        """One augmented view of every image (the labels are the targets, not an input)."""
        return (self.views.single(images, generator),)

    def loss(self, inputs: tuple[torch.Tensor, ...], labels: torch.Tensor, forward: Forward | None = None) -> torch.Tensor:
        """Cross-entropy (float32) of the view's logits against the labels."""
        (images,) = inputs
        return F.cross_entropy((forward or self)(images).float(), labels)

    def extra_metrics(self, features: ProbeFeatures) -> dict[str, float]:
        """The trained classifier's own top-1 / top-5 on the test set (Table 1's supervised row)."""
        top1, top5 = self.classifier_accuracy(features.test, features.test_labels)
        return {"supervised_top1": top1, "supervised_top5": top5}

    @torch.no_grad()
    def classifier_accuracy(self, features: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
        """Top-1 and top-5 (percent) of the trained classifier itself on the encoder's features of
        un-augmented images (Table 1's supervised row); the features are the ones the probes use."""
        logits = self.classifier(features.to(self.classifier.weight.dtype)).float()
        labels = labels.to(logits.device)
        return topk_accuracy(logits, labels, 1), topk_accuracy(logits, labels, 5)
