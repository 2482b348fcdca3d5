"""Any image folder with one sub-folder per class, decoded and resized once, cached as uint8.

Layouts (torchvision's ImageFolder convention, read with its `find_classes` / `make_dataset`):

* ``root/train/<class>/*`` and ``root/test/<class>/*`` — the given split is used; the classes are
  the training sub-folders (sorted), and a test folder may lack some of them but not add new ones.
* ``root/<class>/*`` (no ``train``/``test`` folders) — a seeded split per class: in each class a
  random fifth of the images (``round(0.2 × n)``, by ``spec.seed``) is the test set, the rest the
  training set. Splitting per class keeps every class's share equal in both sets.

Files with torchvision's image extensions (.jpg .jpeg .png .ppm .bmp .pgm .tif .tiff .webp) are
decoded with PIL (torchvision's `pil_loader`, so grey, palette and RGBA images become RGB), their
shorter side resized to ``image_size`` with antialiasing and the centre cropped to a square — the
aspect ratio is kept, as in the usual Resize + CenterCrop evaluation transform.

A folder whose decoded size is above the memory budget (or any folder with ``dataset.stream: true``)
is not decoded here: its files are read while training (`ablate.data.stream`), split the same way.

Decoding thousands of files is slow, so the result is cached in ``cache_root()`` under a name that
hashes the folder's absolute path, every file's relative path, size and mtime, and ``image_size``:
any change to the files makes a new cache. The cache is written atomically (temp file, then
``os.replace``) and read with ``torch.load(weights_only=True)``, which cannot run code.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset, pil_loader
from torchvision.transforms.v2 import functional as F

from ablate.config import DatasetSpec
from ablate.data import DatasetSplits, DatasetUnavailable, ImageData, cache_root, data_root, per_class_sample, save_cache, subset
from ablate.data.stream import streamed_splits, streams

TEST_FRACTION = 0.2  # of each class, for a folder without train/ and test/
CACHE_FORMAT = 1  # bump when the cached content changes meaning

HOW_TO = (
    "Set dataset.root to a folder laid out as root/train/<class>/*.png and root/test/<class>/*.png, "
    "or as root/<class>/*.png (then split 80/20 per class by dataset.seed)"
)


def load(spec: DatasetSpec) -> DatasetSplits:
    """The folder at ``data_root(spec)`` as uint8 splits of ``image_size`` px (cached after the first load)."""
    root = data_root(spec).resolve()
    classes, files = list_files(root)
    return splits_of_files(root, classes, files, spec, None if _has_split_folders(root) else TEST_FRACTION)


def splits_of_files(root: Path, classes: list[str], files: list[tuple[str, int, bool]], spec: DatasetSpec,
                    test_fraction: float | None = None) -> DatasetSplits:
    """The listed files (path relative to root, label, is_test) as the run's splits; every folder-like dataset
    (folder, imagenet, imagenette, tiny-imagenet) ends here. Streamed (`ablate.data.stream`) when too large for
    memory or with dataset.stream: true, else decoded once into uint8 splits (cached). The test files are those
    marked, or per class a seeded `test_fraction` of them; then the seeded train / test subsets."""
    if streams(spec, len(files)):
        return streamed_splits(spec, root, classes, files, test_fraction)
    decoded = _cached_or_decoded(root, files, spec.image_size)
    images, labels, is_test = decoded["images"], decoded["labels"], decoded["is_test"]
    if test_fraction is not None:
        is_test = split_per_class(labels, test_fraction, spec.seed)
    train = subset(ImageData(images[~is_test], labels[~is_test]), spec.train_size, spec.seed)
    test = subset(ImageData(images[is_test], labels[is_test]), spec.test_size, spec.seed)
    return DatasetSplits(pretrain=train, train=train, test=test, classes=classes)


# ------------------------------------------------------------------------------------ the file list


def _has_split_folders(root: Path) -> bool:
    return (root / "train").is_dir() or (root / "test").is_dir()


def list_files(root: Path) -> tuple[list[str], list[tuple[str, int, bool]]]:
    """Class names and every image as (path relative to root, label, is_test), in a fixed order."""
    if not root.is_dir():
        raise DatasetUnavailable(f"image folder {root} does not exist. {HOW_TO}.")
    if not _has_split_folders(root):
        classes, class_to_idx = _classes(root)
        return classes, [(rel, label, False) for rel, label in _images(root, root, class_to_idx)]
    for part in ("train", "test"):
        if not (root / part).is_dir():
            raise DatasetUnavailable(f"image folder {root} has no {part}/ folder. {HOW_TO}.")
    classes, class_to_idx = _classes(root / "train")
    extra = sorted(set(_classes(root / "test")[0]) - set(classes))
    if extra:
        raise DatasetUnavailable(f"{root / 'test'} has classes that {root / 'train'} lacks: {', '.join(extra)}")
    train = [(rel, label, False) for rel, label in _images(root, root / "train", class_to_idx)]
    test = [(rel, label, True) for rel, label in _images(root, root / "test", class_to_idx, allow_empty=True)]
    return classes, train + test


def _classes(folder: Path) -> tuple[list[str], dict[str, int]]:
    try:
        return find_classes(folder)
    except FileNotFoundError:
        raise DatasetUnavailable(f"{folder} has no class sub-folders. {HOW_TO}.") from None


def _images(root: Path, folder: Path, class_to_idx: dict[str, int], allow_empty: bool = False) -> list[tuple[str, int]]:
    try:
        found = make_dataset(str(folder), class_to_idx, extensions=IMG_EXTENSIONS, allow_empty=allow_empty)
    except FileNotFoundError as err:  # a class folder without any image
        raise DatasetUnavailable(f"{folder}: {err}") from None
    return [(os.path.relpath(path, root), label) for path, label in found]


def split_per_class(labels: torch.Tensor, fraction: float, seed: int) -> torch.Tensor:
    """Boolean mask: in each class a seeded random round(fraction × n) of its images is True (test)."""
    is_test = torch.zeros(len(labels), dtype=torch.bool)
    is_test[per_class_sample(labels, lambda n: int(fraction * n + 0.5), seed)] = True
    return is_test


# ------------------------------------------------------------------------------------------ cache


def cache_path(root: Path, files: list[tuple[str, int, bool]], image_size: int) -> Path:
    """``cache_root()/folder-<hash>.pt``; the hash covers the root, each file's path/size/mtime, the size."""
    entries = []
    for rel, label, is_test in files:
        stat = (root / rel).stat()
        entries.append([rel, label, is_test, stat.st_size, stat.st_mtime_ns])
    key = json.dumps([CACHE_FORMAT, str(root), image_size, entries], separators=(",", ":"))
    return cache_root() / f"folder-{hashlib.sha256(key.encode()).hexdigest()[:20]}.pt"


def _cached_or_decoded(root: Path, files: list[tuple[str, int, bool]], side: int) -> dict:
    path = cache_path(root, files, side)
    cached = _read_cache(path, len(files), side)
    if cached is not None:
        return cached
    decoded = {
        "images": decode_all([root / rel for rel, _, _ in files], side),
        "labels": torch.tensor([label for _, label, _ in files], dtype=torch.int64),
        "is_test": torch.tensor([is_test for _, _, is_test in files], dtype=torch.bool),
    }
    save_cache(path, decoded)
    return decoded


def _read_cache(path: Path, count: int, side: int) -> dict | None:
    """The cached tensors, or None when absent or unusable (then the folder is decoded again)."""
    if not path.is_file():
        return None
    try:
        cached = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a cache is disposable: whatever is wrong with it, decode again
        return None
    images = cached.get("images") if isinstance(cached, dict) else None
    if not isinstance(images, torch.Tensor) or tuple(images.shape) != (count, 3, side, side):
        return None
    return cached


# ----------------------------------------------------------------------------------------- decode


def decode_all(paths: list[Path], side: int) -> torch.Tensor:
    """uint8 N×3×side×side; PIL releases the GIL while decoding, so threads use every core."""
    images = torch.empty((len(paths), 3, side, side), dtype=torch.uint8)
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        for index, image in enumerate(pool.map(lambda p: decode_one(p, side), paths)):
            images[index] = image
    return images


def decode_one(path: Path, side: int) -> torch.Tensor:
    """One file → RGB uint8 3×side×side: shorter side resized (antialiased), centre cropped."""
    try:
        rgb = pil_loader(str(path))
    except (OSError, ValueError, SyntaxError) as err:  # PIL's errors for truncated / unknown files
        raise DatasetUnavailable(f"cannot decode {path} ({err}); remove or replace the file") from None
    image = F.pil_to_tensor(rgb)
    if min(image.shape[1:]) != side:
        image = F.resize(image, side, antialias=True)
    return F.center_crop(image, [side, side])
