"""CIFAR-10 and CIFAR-100 from the "python version" pickle batches (Krizhevsky, 2009).

On-disk format (https://www.cs.toronto.edu/~kriz/cifar.html): each batch file is a pickled dict
whose ``data`` is a uint8 array N×3072 — the 1024 red, then 1024 green, then 1024 blue values of a
32×32 image, each channel row-major — and whose ``labels`` (CIFAR-10) or ``fine_labels``
(CIFAR-100) is a list of N ints. CIFAR-10 has ``data_batch_1..5`` and ``test_batch`` in
``cifar-10-batches-py/`` with names in ``batches.meta['label_names']``; CIFAR-100 has ``train`` and
``test`` in ``cifar-100-python/`` with names in ``meta['fine_label_names']``.

The files are read by torchvision's own CIFAR10 / CIFAR100 classes (``download=False``: nothing is
ever fetched). Only their md5 comparison is relaxed to "the file exists", see `_UncheckedCIFAR10`.
SimCLR pre-trains on the training images, so ``pretrain`` is ``train``.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torchvision.datasets import CIFAR10, CIFAR100
from torchvision.transforms.v2 import functional as F

from ablate.config import DatasetSpec
from ablate.data import DatasetSplits, DatasetUnavailable, ImageData, data_root, subset

RESIZE_CHUNK = 4096  # images resized at a time: bounds the temporary memory of a 50 000-image resize


# torchvision compares every file's md5 with the official archive's. Files in the same format but
# with other contents (the tiny fixtures of the tests, a user's re-packed subset) can never match, and
# the check adds little for real files: a truncated or foreign pickle fails to unpickle or to
# reshape to N×3×32×32, and `_read_split` turns that into a clear message. So these subclasses keep
# torchvision's reader unchanged and set each expected md5 to None, which torchvision's
# `check_integrity` defines as "the file exists". (Like torchvision, this unpickles the files: only
# point dataset.root at CIFAR files you trust.)
class _UncheckedCIFAR10(CIFAR10):
    train_list = [[name, None] for name, _ in CIFAR10.train_list]
    test_list = [[name, None] for name, _ in CIFAR10.test_list]
    meta = {**CIFAR10.meta, "md5": None}


class _UncheckedCIFAR100(CIFAR100):
    train_list = [[name, None] for name, _ in CIFAR100.train_list]
    test_list = [[name, None] for name, _ in CIFAR100.test_list]
    meta = {**CIFAR100.meta, "md5": None}


@dataclass(frozen=True)
class _Variant:
    title: str  # for messages
    reader: type[CIFAR10]

    @property
    def folder(self) -> str:
        return self.reader.base_folder

    @property
    def files(self) -> list[str]:
        reader = self.reader
        return [name for name, _ in reader.train_list + reader.test_list] + [reader.meta["filename"]]


_CIFAR10 = _Variant("CIFAR-10", _UncheckedCIFAR10)
_CIFAR100 = _Variant("CIFAR-100", _UncheckedCIFAR100)


def load_cifar10(spec: DatasetSpec) -> DatasetSplits:
    """CIFAR-10: 50 000 training and 10 000 test images of 10 classes."""
    return _load(spec, _CIFAR10)


def load_cifar100(spec: DatasetSpec) -> DatasetSplits:
    """CIFAR-100 with its 100 fine labels: 50 000 training and 10 000 test images."""
    return _load(spec, _CIFAR100)


def _load(spec: DatasetSpec, variant: _Variant) -> DatasetSplits:
    parent = _parent_folder(data_root(spec), variant)
    train, classes = _read_split(parent, variant, train=True)
    test, _ = _read_split(parent, variant, train=False)
    train = _resized(subset(train, spec.train_size, spec.seed), spec.image_size)
    test = _resized(subset(test, spec.test_size, spec.seed), spec.image_size)
    return DatasetSplits(pretrain=train, train=train, test=test, classes=classes)


def _parent_folder(root: Path, variant: _Variant) -> Path:
    """The folder that holds e.g. ``cifar-10-batches-py``; root may also name that folder itself."""
    candidates = [root, root.parent] if root.name == variant.folder else [root]
    for parent in candidates:
        if all((parent / variant.folder / name).is_file() for name in variant.files):
            return parent
    raise DatasetUnavailable(_missing_message(root, variant))


def _missing_message(root: Path, variant: _Variant) -> str:
    folder = root / variant.folder
    missing = [name for name in variant.files if not (folder / name).is_file()]
    url = variant.reader.url
    return (
        f"{variant.title} not found: expected the files {', '.join(variant.files)} in {folder} "
        f"(missing: {', '.join(missing)}). Download the python version from {url} and extract it there "
        f"(tar xzf {variant.reader.filename} -C {root}), or set dataset.root (or $ABLATE_DATA, which "
        f"holds one folder per dataset) to the folder that contains {variant.folder}/."
    )


def _read_split(parent: Path, variant: _Variant, train: bool) -> tuple[ImageData, list[str]]:
    """One split through torchvision's reader, as uint8 N×3×32×32 and int64 labels."""
    try:
        dataset = variant.reader(str(parent), train=train, download=False)
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError, AttributeError) as err:
        raise DatasetUnavailable(
            f"{variant.title} files in {parent / variant.folder} could not be read "
            f"({type(err).__name__}: {err}); they are not the python-version pickle batches or are damaged. "
            f"Download them again from {variant.reader.url}."
        ) from None
    images = torch.from_numpy(np.ascontiguousarray(dataset.data)).permute(0, 3, 1, 2).contiguous()
    labels = torch.as_tensor(dataset.targets, dtype=torch.int64)
    classes = [str(name) for name in dataset.classes]
    _check_labels(labels, len(classes), parent / variant.folder, variant.title)
    return ImageData(images, labels), classes


def _check_labels(labels: torch.Tensor, num_classes: int, folder: Path, title: str) -> None:
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise DatasetUnavailable(
            f"{title} labels in {folder} range over [{int(labels.min())}, {int(labels.max())}], "
            f"expected inside [0, {num_classes - 1}] (the meta file names {num_classes} classes)"
        )


def _resized(data: ImageData, side: int) -> ImageData:
    return ImageData(resize_images(data.images, side), data.labels)


def resize_images(images: torch.Tensor, side: int, chunk: int = RESIZE_CHUNK) -> torch.Tensor:
    """uint8 N×3×H×W → uint8 N×3×side×side, bilinear with antialiasing; unchanged if already that size.

    Done once when a dataset is loaded, so training never pays for it. torchvision's resize has a
    native uint8 path (no float copy of the whole set); chunks bound the temporary memory anyway.
    """
    if images.shape[-2:] == (side, side):
        return images
    out = torch.empty((images.shape[0], images.shape[1], side, side), dtype=torch.uint8)
    for start in range(0, images.shape[0], chunk):
        out[start : start + chunk] = F.resize(images[start : start + chunk], [side, side], antialias=True)
    return out
