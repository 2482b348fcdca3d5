"""What a method is: the one seam through which methods differ (SimCLR, the supervised baseline, ...).

A method is one `nn.Module` holding every network it trains (encoder, heads, target networks), so
the optimiser, the checkpoint and the torch.compile path treat all methods alike. Besides its
modules, a method declares:

* ``make_inputs(images, labels, generator)`` — the network inputs of a step (two views, or one view),
  made on the device; every random draw of the step happens here, from `generator`;
* ``loss(inputs, labels, forward)`` — the training loss of those inputs (`forward` is the fast,
  possibly compiled ``self``, see `ablate.methods.train.ModelForward`);
* ``after_step(step, total_steps)`` — called by the training loop after every optimiser step (for
  momentum / EMA updates of target networks; a no-op by default);
* ``extra_state()`` / ``load_extra_state(state)`` — what it checkpoints beyond its modules' state_dict
  and the optimiser (tensors and plain numbers only: checkpoints load with weights_only=True);
* ``pretrain_split`` — the split of the dataset it trains on (unlabelled images or labelled ones);
* ``views_per_image`` — network inputs per training image, for the speed metrics;
* ``extra_metrics(features)`` — metrics it adds to result.json beyond the probes' (none by default);
* ``embedding(features)`` — the output its loss compares (e.g. z = g(h)) computed from the encoder's
  features h, for the collapse diagnostic (`ablate.evaluate.collapse`; default: h itself).

Each method lives in its own file, takes its spec (`ablate.config.methods`) and a `MethodContext`
in its constructor, and is listed once in `ablate.methods.METHODS`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch
from torch import nn

if TYPE_CHECKING:
    from ablate.augment import ViewMaker
    from ablate.config import ModelSpec
    from ablate.config.methods import MethodSpec
    from ablate.data import DatasetSplits, ImageData
    from ablate.models import Encoder

# `forward(images, *args)`: the method's own forward run the fast way (channels_last, bf16, compiled);
# args such as a branch name go to the method's forward unchanged.
Forward = Callable[..., Any]


@dataclass(frozen=True)
class MethodContext:
    """What a method is built from besides its own spec: the same for every method.

    The encoder is built (and so initialised) before the method's own modules, which keeps the
    order parameters are created in, and hence the initial weights under one seed, fixed.
    """

    encoder: Encoder
    views: ViewMaker  # the augmentation of the grid cell (`pair` and `single`)
    model: ModelSpec  # architecture settings shared by methods (projection head sizes)
    num_classes: int  # classes of the dataset (for methods that train on labels)


@dataclass(frozen=True)
class ProbeFeatures:
    """The frozen encoder's features of the un-augmented training and test images (all the training
    images: the probes use the `eval.label_fraction` subset of them), computed once for every metric."""

    train: torch.Tensor
    train_labels: torch.Tensor
    test: torch.Tensor
    test_labels: torch.Tensor


class Method(nn.Module, ABC):
    """Base of every method (see the module docstring for what each part is for)."""

    spec_class: ClassVar[type[MethodSpec]]  # the spec model this method takes (a test checks the registry)
    pretrain_split: ClassVar[Literal["pretrain", "train"]]  # "pretrain": unlabelled images (e.g. STL-10's)
    views_per_image: ClassVar[int]
    # The `forward` branch of a target network or teacher (run without gradients), if the method has
    # one: e.g. "target" for ``forward(images, "target")``. Lets benchmarks time it apart.
    target_branch: ClassVar[str | None] = None

    def __init__(self, spec: MethodSpec, context: MethodContext):
        if not isinstance(spec, self.spec_class):
            raise TypeError(f"{type(self).__name__} takes a {self.spec_class.__name__}, got a {type(spec).__name__}")
        super().__init__()
        self.spec = spec
        self.encoder = context.encoder
        self.views = context.views  # not a module: it holds no parameters or buffers

    @abstractmethod
    def make_inputs(self, images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        """The network inputs of one step from a batch of uint8 images (on their device)."""

    @abstractmethod
    def loss(self, inputs: tuple[torch.Tensor, ...], labels: torch.Tensor, forward: Forward | None = None) -> torch.Tensor:
        """The training loss of one step; `forward` replaces ``self`` (e.g. a compiled `ModelForward`)."""

    def after_step(self, step: int, total_steps: int) -> None:
        """Called after optimiser step number `step` (1 to total_steps) has updated the weights."""

    def extra_state(self) -> dict[str, Any]:
        """State to checkpoint beyond the modules' state_dict and the optimiser (default: none)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what `extra_state` returned (from a checkpoint of the same method). Its tensors
        arrive on the CPU (checkpoints load with map_location="cpu"): move them where they are used."""
        if state:
            raise ValueError(f"{type(self).__name__} keeps no extra state, but the checkpoint has {sorted(state)}")

    def extra_metrics(self, features: ProbeFeatures) -> dict[str, float]:
        """Metrics this method adds to result.json beyond the probes' (default: none)."""
        return {}

    def view_metrics(self, images: torch.Tensor, batch_size: int, generator: torch.Generator) -> dict[str, float]:
        """Metrics of the method's own task on augmented views of held-out `images` (uint8, on the model's
        device), measured after training with a generator of their own (SimCLR: Table 5's contrastive
        accuracy and entropy). Default: none."""
        return {}

    def embedding(self, features: torch.Tensor) -> torch.Tensor:
        """What the loss compares, computed from encoder features h (called in eval mode, without
        gradients): the collapse diagnostic measures its spread. Default: h itself; a method with a
        projector returns its (online) projection, e.g. z = g(h)."""
        return features

    def pretraining_data(self, data: DatasetSplits) -> ImageData:
        """The images (and labels) this method trains on."""
        return getattr(data, self.pretrain_split)


class TwoViewMethod(Method):
    """A self-supervised method: it compares two views of each unlabelled image (every method but the
    supervised baseline). Its inputs are the grid's pair of views, under the grid's protocol."""

    pretrain_split = "pretrain"
    views_per_image = 2

    def make_inputs(self, images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        """The two views of every image, under the grid's protocol (labels are not used)."""
        return self.views.pair(images, generator)


class ProjectionMethod(TwoViewMethod):
    """Two views through the encoder f and a projector g, then one loss of the two projections
    z1, z2 (Barlow Twins, VICReg): a subclass builds `self.projector` and writes `projection_loss`."""

    projector: nn.Module

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """z = g(f(x)): the projections the loss compares (the part that `torch.compile` compiles)."""
        return self.projector(self.encoder(images))

    def embedding(self, features: torch.Tensor) -> torch.Tensor:
        """z = g(h): what the loss compares (for the collapse diagnostic)."""
        return self.projector(features)

    def loss(self, inputs: tuple[torch.Tensor, ...], labels: torch.Tensor, forward: Forward | None = None) -> torch.Tensor:
        """`projection_loss` of the two views' projections (labels are not used)."""
        view1, view2 = inputs
        # One forward pass over both views (batch norm sees 2N images); float32 for the loss, also
        # after bf16 autocast (too coarse for correlations of hundreds of dimensions).
        z1, z2 = (forward or self)(torch.cat([view1, view2])).float().chunk(2)
        return self.projection_loss(z1, z2)

    @abstractmethod
    def projection_loss(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        """The loss of the two views' projections (float32, N × d each)."""
