"""What every operator shares: the sample/apply contract and the few tensor helpers they reuse.

An operator is split in two, as in kornia.augmentation: ``sample`` draws every random number a
batch needs (from the run's ``torch.Generator``, on the images' device) into a dict of tensors, and
``apply`` is a deterministic function of the images and that dict. So a batch is replayed exactly
from its parameters, and tests can check the parameters themselves (ranges, probabilities).
"""

from __future__ import annotations

import functools
import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

import torch

if TYPE_CHECKING:  # pydantic is only needed to validate grid files, not to augment
    from ablate.config import AugmentSpec


Params = dict[str, torch.Tensor]


class Operator(ABC):
    """One augmentation operator of the paper, per-sample random, batched over B×3×H×W in [0, 1]."""

    name: ClassVar[str]

    @classmethod
    def from_spec(cls, spec: AugmentSpec) -> "Operator":
        """The operator configured by the grid file's ``augment:`` section."""
        return cls()

    # Contract of ``sample``: every tensor of the returned dict has the batch on dim 0, so the
    # parameters of two batches concatenate into those of the joined batch (ViewMaker runs both
    # views as one batch) and a subset of samples is selected by indexing dim 0.
    @abstractmethod
    def sample(
        self, batch_size: int, height: int, width: int, generator: torch.Generator | None, device: torch.device
    ) -> Params:
        """Every random number the batch needs, drawn from ``generator`` on ``device``."""

    @abstractmethod
    def apply(self, images: torch.Tensor, params: Params) -> torch.Tensor:
        """The augmented batch; deterministic given ``params`` (float32 B×3×H×W in [0, 1] in and out)."""

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        batch, _, height, width = images.shape
        return self.apply(images, self.sample(batch, height, width, generator, images.device))

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({fields})"


# ------------------------------------------------------------------------------------ random draws


def uniform(
    low: float, high: float, shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device
) -> torch.Tensor:
    """Uniform in [low, high) (float32)."""
    return torch.rand(shape, generator=generator, device=device) * (high - low) + low


def log_uniform(
    low: float, high: float, shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device
) -> torch.Tensor:
    """exp(uniform(log low, log high)): the aspect-ratio law of torchvision's RandomResizedCrop/RandomErasing."""
    return torch.exp(uniform(math.log(low), math.log(high), shape, generator, device))


def bernoulli(p: float, batch_size: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """A bool per sample, True with probability p."""
    return torch.rand(batch_size, generator=generator, device=device) < p


# ----------------------------------------------------------------------------------- application


def apply_to_subset(
    images: torch.Tensor,
    mask: torch.Tensor,
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    inplace: bool = False,
) -> torch.Tensor:
    """``fn`` applied to the samples where mask is True; the others are returned untouched (exactly).

    ``fn(subset, index)`` receives the selected images and their batch indices (to pick their
    parameters). Two strategies with the same result, chosen by device:

    * CPU: gather the subset, compute, scatter back (``index_select``/``index_copy_``): only the
      work needed (p = 0.5 blur halves the cost), which matters where arithmetic is the cost.
    * GPU: compute on the whole batch and keep the result where mask (a 0/1 ``lerp``, exact at 0
      and 1): no ``nonzero`` (a device sync) and no gathers, since there kernel launches and syncs,
      not arithmetic, are the cost.

    ``inplace=True`` writes into ``images`` (for a caller that owns it): no new batch-sized tensor,
    which on CPU saves the page faults of a fresh allocation (why they matter: ablate/cpu_memory.py).
    """
    if images.device.type != "cpu":
        return dense_apply(images, mask, fn, inplace)
    index = mask.nonzero().squeeze(1)
    if index.numel() == 0:
        return images
    if index.numel() == images.shape[0] and not inplace:
        return fn(images, index)
    target = images if inplace else images.clone()
    return target.index_copy_(0, index, fn(images.index_select(0, index), index))


def dense_apply(
    images: torch.Tensor,
    mask: torch.Tensor,
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    inplace: bool = False,
) -> torch.Tensor:
    """apply_to_subset's GPU strategy: fn on every sample, its result kept where mask (exact 0/1 lerp)."""
    keep = mask.to(images.dtype).view(-1, *([1] * (images.ndim - 1)))
    result = fn(images, torch.arange(images.shape[0], device=images.device))
    return images.lerp_(result, keep) if inplace else torch.lerp(images, result, keep)


def concat_params(parts: list[Params]) -> Params:
    """Parameters of several batches as those of their concatenation (every tensor has the batch on dim 0)."""
    return {key: torch.cat([part[key] for part in parts]) for key in parts[0]}


def to_unit_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] → float32 [0, 1]; float input is taken to be in [0, 1] already (cast to float32)."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images of shape B×3×H×W, got {tuple(images.shape)}")
    if images.dtype == torch.uint8:
        return images.to(torch.float32) / 255.0
    if not images.is_floating_point():
        raise TypeError(f"expected uint8 or floating images, got {images.dtype}")
    return images.to(torch.float32)


def constant(values: tuple[float, ...], shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    """A small constant tensor on like's device and dtype, made once per device (a fresh host-to-device
    copy on every call would synchronise a GPU each time)."""
    return _constant(values, shape, like.device, like.dtype)


@functools.lru_cache(maxsize=64)
def _constant(values: tuple[float, ...], shape: tuple[int, ...], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    return torch.tensor(values, dtype=dtype, device=device).view(shape)


def check_range(name: str, pair: tuple[float, float], lowest: float, highest: float) -> tuple[float, float]:
    """(low, high) with lowest <= low <= high <= highest, else ``expected inside [a, b], got x``."""
    low, high = float(pair[0]), float(pair[1])
    if not lowest <= low <= high <= highest:
        raise ValueError(f"{name}: expected low <= high inside [{lowest}, {highest}], got [{low}, {high}]")
    return low, high


def check_probability(name: str, p: float) -> float:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{name}: expected inside [0, 1], got {p}")
    return float(p)
