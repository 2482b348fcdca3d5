"""Datasets as uint8 tensors in memory: every loader returns the same `DatasetSplits`.

Images are kept as uint8 N×3×H×W (a quarter of float32's memory), so a whole training set fits on
a GPU and augmentation runs there; labels are int64 (−1 for unlabelled images).
"""

from __future__ import annotations

import importlib

import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ablate.config import DatasetSpec
from ablate.settings import load_settings


class DatasetUnavailable(Exception):
    """The files of a dataset are missing; the message says where they are expected and how to get them."""


@dataclass
class ImageData:
    images: torch.Tensor  # uint8, N×3×H×W
    labels: torch.Tensor  # int64, N; −1 where unlabelled

    def __len__(self) -> int:
        return int(self.images.shape[0])


@dataclass
class DatasetSplits:
    # Each split is an ImageData, or for a streamed image folder an ablate.data.stream.ImageFiles
    # (paths and labels; its `images` are decoded when read).
    pretrain: ImageData  # what self-supervised training sees (may include unlabelled images)
    train: ImageData  # labelled images for the linear probe and the supervised baseline
    test: ImageData
    classes: list[str]


Loader = Callable[[DatasetSpec], DatasetSplits]


def data_root(spec: DatasetSpec) -> Path:
    """Where a dataset's files live: the spec's root, else $ABLATE_DATA/<name>, else ./data/<name>."""
    if spec.root:
        return Path(spec.root).expanduser()
    return (load_settings().data or Path("data")) / spec.name


def cache_root() -> Path:
    """Folder for decoded/generated datasets ($ABLATE_CACHE, default ~/.cache/ablate)."""
    return load_settings().cache


def save_cache(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    """Save decoded/generated tensors to the cache atomically (a reader sees the old file or the whole new one).

    A cache that cannot be written is not an error: it only costs decoding or generating again.
    """
    from ablate.store import write_bytes_atomic  # local import: data must not depend on store at import

    buffer = io.BytesIO()
    torch.save(tensors, buffer)
    try:
        write_bytes_atomic(path, buffer.getvalue())
    except OSError:
        pass


def per_class_sample(labels: torch.Tensor, count: Callable[[int], int], seed: int) -> torch.Tensor:
    """Sorted indices of a seeded random `count(n)` of each class's n examples (classes drawn in sorted order)."""
    generator = torch.Generator().manual_seed(seed)
    labels = labels.cpu()
    chosen = []
    for label in torch.unique(labels).tolist():
        members = torch.nonzero(labels == label).flatten()
        chosen.append(members[torch.randperm(len(members), generator=generator)[: count(len(members))]])
    return torch.cat(chosen).sort().values


def subset(data: ImageData, size: int | None, seed: int) -> ImageData:
    """A seeded random subset of `size` images (all of them when size is None or larger)."""
    if size is None or size >= len(data):
        return data
    index = subset_index(len(data), size, seed)
    return ImageData(data.images[index], data.labels[index])


def subset_index(length: int, size: int | None, seed: int) -> torch.Tensor:
    """The indices `subset` keeps of `length` items (all of them, in order, when size is None or larger);
    a streamed split (ablate.data.stream) selects its files with them."""
    if size is None or size >= length:
        return torch.arange(length)
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(length, generator=generator)[:size]


# The registry of datasets: grid name -> "module:function" loading it. A string, so that a dataset's
# module (and what it imports) is loaded only when that dataset is used. A new dataset is one file in
# ablate/data/ and one line here (plus its name in ablate.config.specs.DATASETS; a test checks both agree).
LOADERS: dict[str, str] = {
    "shapes": "ablate.data.shapes:load",
    "cifar10": "ablate.data.cifar:load_cifar10",
    "cifar100": "ablate.data.cifar:load_cifar100",
    "stl10": "ablate.data.stl10:load",
    "folder": "ablate.data.folder:load",
    "imagenette": "ablate.data.imagenette:load",
    "tiny-imagenet": "ablate.data.tiny_imagenet:load",
    "imagenet": "ablate.data.imagenet:load",
}


def loader_of(name: str) -> Loader:
    """The loading function of a registered dataset."""
    module, function = LOADERS[name].split(":")
    return getattr(importlib.import_module(module), function)


def load_dataset(spec: DatasetSpec) -> DatasetSplits:
    if spec.name not in LOADERS:
        raise DatasetUnavailable(f"dataset {spec.name!r} has no loader; available: {', '.join(sorted(LOADERS))}")
    load = loader_of(spec.name)
    try:
        return load(spec)
    except DatasetUnavailable as missing:
        from ablate.data.fetch import fetch_when_asked  # local: only a missing dataset needs it

        fetch_when_asked(spec, missing)  # fetches when spec.download says so, else raises saying how to
    return load(spec)
