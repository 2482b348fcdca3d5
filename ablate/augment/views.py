"""The two views of a batch under the grid's protocol (SimCLR §3.1 and ordinary SimCLR).

* ``one_branch`` — Figure 5's protocol: every image is first randomly cropped and resized ONCE
  (the base crop, shared by both views: without sharing it, "color alone" would silently be
  crop + color), then the targeted operators (``augment.ops``, in order) are applied to view 1
  only; view 2 is the base crop as is. With ``base_crop: false`` view 2 is the image itself.
* ``both_branches`` — ordinary SimCLR: the operator pipeline, drawn independently for each view;
  no extra base crop (the pipeline's own ``crop`` does that job).

Everything random is drawn first (``sample_pair``) and applied after (``apply_pair``), so a pair of
views replays exactly from its parameters.

Execution: on a GPU both views run as one batch of 2B (fewer, larger kernels); on CPU view by view
and in chunks of ~3 MiB, so that the intermediates of the pipeline stay in cache.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dataclasses import dataclass, field

import torch

from ablate.augment.base import Operator, Params, concat_params, to_unit_float
from ablate.augment.crop import Crop
from ablate.augment.registry import build_operator

if TYPE_CHECKING:  # pydantic is only needed to validate grid files, not to augment
    from ablate.config import AugmentSpec


@dataclass
class ViewParams:
    """Every random number of one view: the base crop's (or None) and one dict per operator, in order."""

    base: Params | None
    ops: list[Params] = field(default_factory=list)


@dataclass
class PairParams:
    """Both views' parameters. Under one_branch, view2.ops is empty and both share the same base crop."""

    view1: ViewParams
    view2: ViewParams


CPU_CHUNK_BYTES = 3 * 2**20  # ~3 MiB of float32 images per chunk: the pipeline's intermediates stay in cache
MIN_CHUNK = 32  # images; smaller chunks would spend more on per-operation overhead than they save


def chunk_size(images: torch.Tensor) -> int:
    """Images per chunk: all of them on a GPU; on CPU enough to fill CPU_CHUNK_BYTES (at least MIN_CHUNK).

    On CPU every operator is a handful of passes over the batch; a batch of 512 CIFAR images is
    6 MiB, more than a core's cache, so each pass goes to memory. Running the whole pipeline on
    chunks of ~3 MiB keeps the intermediates in cache, so most passes read from cache instead of
    memory. A GPU wants the opposite: few, large kernels.
    """
    if images.device.type != "cpu":
        return images.shape[0]
    per_image = images[0].numel() * images.element_size()
    return max(MIN_CHUNK, CPU_CHUNK_BYTES // max(per_image, 1))


def slice_view(params: ViewParams, start: int, stop: int) -> ViewParams:
    """The parameters of samples start:stop (every parameter tensor has the batch on dim 0)."""
    base = {k: v[start:stop] for k, v in params.base.items()} if params.base is not None else None
    return ViewParams(base, [{k: v[start:stop] for k, v in op.items()} for op in params.ops])


class ViewMaker:
    """Makes SimCLR views of a batch on its own device: ``pair`` (two views) and ``single`` (one view)."""

    def __init__(self, spec: AugmentSpec) -> None:
        uses_base = spec.protocol == "one_branch" and spec.base_crop
        base = Crop(spec.base_crop_scale, spec.crop_ratio, spec.flip_p) if uses_base else None
        self._setup(spec.protocol, [build_operator(name, spec) for name in spec.ops], base)

    @classmethod
    def from_operators(cls, protocol: str, ops: list[Operator], base: Crop | None = None) -> "ViewMaker":
        """A ViewMaker from operator objects (no grid spec, hence no pydantic: e.g. a bare benchmark machine)."""
        maker = cls.__new__(cls)
        maker._setup(protocol, list(ops), base if protocol == "one_branch" else None)
        return maker

    def _setup(self, protocol: str, ops: list[Operator], base: Crop | None) -> None:
        if protocol not in ("one_branch", "both_branches"):
            raise ValueError(f"protocol: expected 'one_branch' or 'both_branches', got {protocol!r}")
        self.protocol = protocol
        self.ops = ops
        self.base = base

    def __repr__(self) -> str:
        return f"ViewMaker(protocol={self.protocol!r}, base={self.base!r}, ops={self.ops!r})"

    # ------------------------------------------------------------------------------- sampling

    def sample_view(
        self, batch_size: int, height: int, width: int, generator: torch.Generator | None, device: torch.device
    ) -> ViewParams:
        """One view's parameters: base crop (if the protocol uses one) then every operator in order."""
        base = self.base.sample(batch_size, height, width, generator, device) if self.base else None
        return ViewParams(base, self._sample_ops(batch_size, height, width, generator, device))

    def sample_pair(
        self, batch_size: int, height: int, width: int, generator: torch.Generator | None, device: torch.device
    ) -> PairParams:
        if self.protocol == "one_branch":
            view1 = self.sample_view(batch_size, height, width, generator, device)
            return PairParams(view1, ViewParams(view1.base, []))  # the base crop is shared
        view1 = ViewParams(None, self._sample_ops(batch_size, height, width, generator, device))
        view2 = ViewParams(None, self._sample_ops(batch_size, height, width, generator, device))
        return PairParams(view1, view2)

    def _sample_ops(
        self, batch_size: int, height: int, width: int, generator: torch.Generator | None, device: torch.device
    ) -> list[Params]:
        return [op.sample(batch_size, height, width, generator, device) for op in self.ops]

    # ------------------------------------------------------------------------------ applying

    def apply_view(self, images: torch.Tensor, params: ViewParams) -> torch.Tensor:
        """images (float32 [0, 1]) → base crop (if any) → operators in order; in cache-sized chunks on CPU."""
        size = chunk_size(images)
        if size >= images.shape[0]:
            return self._apply_view(images, params)
        chunks = [
            self._apply_view(images[start : start + size], slice_view(params, start, start + size))
            for start in range(0, images.shape[0], size)
        ]
        return torch.cat(chunks)

    def _apply_view(self, images: torch.Tensor, params: ViewParams) -> torch.Tensor:
        out = self.base.apply(images, params.base) if params.base is not None and self.base else images
        for op, op_params in zip(self.ops, params.ops, strict=False):
            out = op.apply(out, op_params)
        return out

    def apply_pair(self, images: torch.Tensor, params: PairParams) -> tuple[torch.Tensor, torch.Tensor]:
        """Both views from their parameters; images uint8 or float [0, 1], B×3×H×W."""
        x = to_unit_float(images)
        if self.protocol == "one_branch":
            view2 = self.apply_view(x, ViewParams(params.view2.base, []))
            return self.apply_view(view2, ViewParams(None, params.view1.ops)), view2
        if x.device.type == "cpu":  # cache-sized work matters more than call count: view by view
            return self.apply_view(x, params.view1), self.apply_view(x, params.view2)
        # GPU: both views as ONE batch of 2B (every parameter tensor has the batch on dim 0): half
        # the kernel launches and Python work of two calls, and bigger, more efficient kernels.
        both = ViewParams(None, [concat_params([p1, p2]) for p1, p2 in zip(params.view1.ops, params.view2.ops, strict=True)])
        views = self.apply_view(torch.cat([x, x]), both)
        return views[: x.shape[0]], views[x.shape[0] :]

    # ------------------------------------------------------------------------- the interface

    def pair(self, images: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Two views (float32 [0, 1], same shape and device as images) under the spec's protocol."""
        batch, _, height, width = images.shape
        return self.apply_pair(images, self.sample_pair(batch, height, width, generator, images.device))

    def single(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """One augmented view (supervised baseline): base crop (if the protocol uses it) + the operators."""
        batch, _, height, width = images.shape
        params = self.sample_view(batch, height, width, generator, images.device)
        return self.apply_view(to_unit_float(images), params)
