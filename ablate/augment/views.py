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

Crops taken by a streaming loader (`ablate.data.stream`): `worker_crop` names the random resized crop
the loader takes from each full-resolution file (the one_branch base crop, or under both_branches the
pipeline's first operator when it is ``crop``). A batch of B×K×3×H×W (K such crops per image, already
resized) tells `pair` and `single` that this crop was taken: they apply everything after it.
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


@dataclass(frozen=True)
class WorkerCrop:
    """The crop a streaming loader takes from each file: `count` independent draws of `crop` per image."""

    crop: Crop
    count: int  # 1: the shared base crop, or the single view; 2: one per view (both_branches)


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
        self._rest: ViewMaker | None = None  # what follows a loader's crop (`_after_worker_crop`), built when first needed

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
        """Two views (float32 [0, 1], same shape and device as images) under the spec's protocol.

        images B×3×H×W, or B×K×3×H×W: K crops per image taken by a loader (`worker_crop(2)`), not taken again."""
        if images.ndim == 5:
            return self._pair_of_taken_crops(images, generator)
        batch, _, height, width = images.shape
        return self.apply_pair(images, self.sample_pair(batch, height, width, generator, images.device))

    def single(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """One augmented view (supervised baseline): base crop (if the protocol uses it) + the operators.

        images B×3×H×W, or B×1×3×H×W: the crop taken by a loader (`worker_crop(1)`), not taken again."""
        if images.ndim == 5:
            return self._after_worker_crop().single(images[:, 0], generator)
        batch, _, height, width = images.shape
        params = self.sample_view(batch, height, width, generator, images.device)
        return self.apply_view(to_unit_float(images), params)

    # ------------------------------------------------------- crops taken by a streaming loader

    def worker_crop(self, views: int) -> WorkerCrop | None:
        """The crop a loader should take from each full-resolution image for `views` views (2: `pair`, 1: `single`),
        or None when the first random crop cannot move there (then the loader gives whole images, as in memory)."""
        if self.protocol == "one_branch":
            return WorkerCrop(self.base, 1) if self.base is not None else None
        if self.ops and isinstance(self.ops[0], Crop):
            return WorkerCrop(self.ops[0], views)
        return None

    def _after_worker_crop(self) -> ViewMaker:
        """The ViewMaker of what follows the worker crop: one_branch without its base crop (view 2 is the
        loader's crop, view 1 gets the operators), both_branches without its first operator."""
        if self._rest is None:
            if self.worker_crop(1) is None:
                raise ValueError(f"{self!r} takes no crop in a loader, so it expects B×3×H×W images, not B×K×3×H×W")
            ops = self.ops if self.protocol == "one_branch" else self.ops[1:]
            self._rest = ViewMaker.from_operators(self.protocol, ops, base=None)
        return self._rest

    def _pair_of_taken_crops(self, crops: torch.Tensor, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Two views from crops a loader took: one_branch from the shared crop (K = 1), both_branches one per crop (K = 2)."""
        rest = self._after_worker_crop()
        expected = 1 if self.protocol == "one_branch" else 2
        if crops.shape[1] != expected:
            raise ValueError(f"{self.protocol}: expected {expected} loader crop(s) per image, got {crops.shape[1]}")
        if self.protocol == "one_branch":
            return rest.pair(crops[:, 0], generator)
        return rest.single(crops[:, 0], generator), rest.single(crops[:, 1], generator)
