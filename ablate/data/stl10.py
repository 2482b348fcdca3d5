"""STL-10 from its binary files (Coates, Ng, Lee, AISTATS 2011): 96×96 images, 10 classes.

On-disk format (https://cs.stanford.edu/~acoates/stl10/, the ``stl10_binary`` folder): ``*_X.bin``
holds raw uint8 images of 3×96×96 = 27 648 bytes each, one channel after the other (red, green,
blue), each channel in *column-major* order — the bytes of a channel are x-major, so a channel read as
96×96 in C order is indexed [x][y] and must be transposed. ``*_y.bin`` holds one uint8 label per
image in 1..10 (returned as 0..9). ``class_names.txt`` lists the names, one per line. Files:
``train_X.bin`` / ``train_y.bin`` (5 000 labelled), ``test_X.bin`` / ``test_y.bin`` (8 000) and
``unlabeled_X.bin`` (100 000 images, 2.8 GB, no labels).

``spec.pretrain_split`` chooses what SimCLR pre-trains on: ``train``, ``unlabeled`` (label −1) or
``train+unlabeled`` (training labels kept, −1 for the rest). ``train_size`` draws a seeded subset of
the training images and, independently, of the pre-training images.

Why not torchvision's STL10 class: it reads a whole ``*_X.bin`` into memory and, for
``train+unlabeled``, concatenates copies, about three times the 2.8 GB of the unlabelled file at
peak. Here the files are memory-mapped and only the selected images are copied, in chunks, straight
into the final (resized) tensor, so peak memory is the result itself — and a 10 000-image subset of
the unlabelled set reads 10 000 images, not 100 000.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ablate.config import DatasetSpec
from ablate.data import DatasetSplits, DatasetUnavailable, ImageData, data_root, subset
from ablate.data.cifar import resize_images

URL = "http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz"
FOLDER = "stl10_binary"
SIDE = 96
IMAGE_BYTES = 3 * SIDE * SIDE
# The names in the official class_names.txt, used when that small file is absent.
CLASS_NAMES = ("airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck")
CHUNK = 2048  # images copied (and resized) at a time


def load(spec: DatasetSpec) -> DatasetSplits:
    """STL-10 as uint8 N×3×S×S splits; see the module docstring for the pre-training choice."""
    folder = _folder(data_root(spec), spec.pretrain_split)
    classes = _class_names(folder)
    train_y = _read_labels(folder / "train_y.bin", folder / "train_X.bin", len(classes))
    test_y = _read_labels(folder / "test_y.bin", folder / "test_X.bin", len(classes))
    side, seed = spec.image_size, spec.seed
    train = _gather([(folder / "train_X.bin", train_y)], spec.train_size, seed, side)
    test = _gather([(folder / "test_X.bin", test_y)], spec.test_size, seed, side)
    if spec.pretrain_split == "train":
        pretrain = train
    else:
        pretrain = _gather(_pretrain_sources(folder, spec.pretrain_split, train_y), spec.train_size, seed, side)
    return DatasetSplits(pretrain=pretrain, train=train, test=test, classes=classes)


def _required(pretrain_split: str) -> list[str]:
    files = ["train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin"]
    return files + (["unlabeled_X.bin"] if "unlabeled" in pretrain_split else [])


def _folder(root: Path, pretrain_split: str) -> Path:
    """``root/stl10_binary`` (or root itself when it is that folder) holding every needed file."""
    candidates = [root] if root.name == FOLDER else [root / FOLDER]
    required = _required(pretrain_split)
    for folder in candidates:
        if all((folder / name).is_file() for name in required):
            return folder
    folder = candidates[0]
    missing = [name for name in required if not (folder / name).is_file()]
    raise DatasetUnavailable(
        f"STL-10 not found: expected {', '.join(required)} in {folder} (missing: {', '.join(missing)}). "
        f"Download the binary version from {URL} (2.6 GB) and extract it there "
        f"(tar xzf stl10_binary.tar.gz -C {folder.parent}), or set dataset.root (or $ABLATE_DATA, which "
        f"holds one folder per dataset) to the folder that contains {FOLDER}/."
        + ("" if "unlabeled" in pretrain_split else " (unlabeled_X.bin is only needed for pretrain_split with 'unlabeled'.)")
    )


def _class_names(folder: Path) -> list[str]:
    path = folder / "class_names.txt"
    if not path.is_file():
        return list(CLASS_NAMES)
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return names or list(CLASS_NAMES)


def _image_count(path: Path) -> int:
    size = path.stat().st_size
    if size % IMAGE_BYTES:
        raise DatasetUnavailable(
            f"{path} is {size} bytes, not a whole number of 3×96×96 images ({IMAGE_BYTES} bytes each): "
            f"damaged or not an STL-10 binary file; download it again from {URL}"
        )
    return size // IMAGE_BYTES


def _read_labels(label_path: Path, image_path: Path, num_classes: int) -> torch.Tensor:
    """Labels 1..10 on disk → int64 0..9, checked against the image count and the class count."""
    raw = np.fromfile(label_path, dtype=np.uint8)
    count = _image_count(image_path)
    if len(raw) != count:
        raise DatasetUnavailable(f"{label_path} holds {len(raw)} labels but {image_path} holds {count} images")
    if len(raw) and (raw.min() < 1 or raw.max() > num_classes):
        raise DatasetUnavailable(
            f"{label_path}: labels range over [{raw.min()}, {raw.max()}], expected inside [1, {num_classes}]"
        )
    return torch.from_numpy(raw.astype(np.int64) - 1)


def _pretrain_sources(folder: Path, pretrain_split: str, train_y: torch.Tensor) -> list[tuple[Path, torch.Tensor]]:
    sources = []
    if pretrain_split in ("train", "train+unlabeled"):
        sources.append((folder / "train_X.bin", train_y))
    if "unlabeled" in pretrain_split:
        path = folder / "unlabeled_X.bin"
        sources.append((path, torch.full((_image_count(path),), -1, dtype=torch.int64)))
    return sources


def _subset_index(count: int, size: int | None, seed: int) -> torch.Tensor:
    """The indices `ablate.data.subset` would pick, without loading any image: subset a label-only
    ImageData whose labels are the indices themselves (its images have zero bytes)."""
    index_only = ImageData(torch.empty((count, 0, 0, 0), dtype=torch.uint8), torch.arange(count))
    return subset(index_only, size, seed).labels


def _gather(sources: list[tuple[Path, torch.Tensor]], size: int | None, seed: int, side: int) -> ImageData:
    """A seeded subset of the images of the concatenated sources, decoded and resized chunk by chunk."""
    maps = [_map(path) for path, _ in sources]
    offsets = np.cumsum([0] + [len(m) for m in maps])
    index = _subset_index(int(offsets[-1]), size, seed)
    labels = torch.cat([labels for _, labels in sources])[index]
    images = torch.empty((len(index), 3, side, side), dtype=torch.uint8)
    for start in range(0, len(index), CHUNK):
        chunk = index[start : start + CHUNK].numpy()
        images[start : start + CHUNK] = resize_images(_read_rows(maps, offsets, chunk), side)
    return ImageData(images, labels)


def _map(path: Path) -> np.ndarray:
    """The file's images as a read-only N×3×96×96 memory map (mmap refuses empty files)."""
    if _image_count(path) == 0:
        return np.empty((0, 3, SIDE, SIDE), dtype=np.uint8)
    return np.memmap(path, dtype=np.uint8, mode="r").reshape(-1, 3, SIDE, SIDE)


def _read_rows(maps: list[np.ndarray], offsets: np.ndarray, index: np.ndarray) -> torch.Tensor:
    """Images at global `index` (in that order) as uint8 n×3×96×96, row-major (transposed from disk)."""
    out = np.empty((len(index), 3, SIDE, SIDE), dtype=np.uint8)
    source = np.searchsorted(offsets, index, side="right") - 1
    for which, images in enumerate(maps):
        positions = np.nonzero(source == which)[0]
        if len(positions):
            local = index[positions] - offsets[which]
            order = np.argsort(local)  # read the file forwards; put each image back in its place
            out[positions[order]] = images[local[order]]
    # On disk a channel is stored x-major ([c][x][y]); swap to the usual [c][y][x].
    return torch.from_numpy(out).transpose(2, 3).contiguous()
