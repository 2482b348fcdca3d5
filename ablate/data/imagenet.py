"""ImageNet-1k (ILSVRC-2012), ImageNet-100 or any subset of its classes, in the usual prepared layout.

SimCLR's experiments (Figure 5, Table 1: Chen et al., ICML 2020, §3) train on ImageNet's 1.28 M
training images and report linear-evaluation top-1 on its 50,000 validation images.

Layout supported (``dataset.root``, default ``$ABLATE_DATA/imagenet``)::

    root/train/<wnid>/*.JPEG     e.g. train/n01440764/n01440764_10026.JPEG
    root/val/<wnid>/*.JPEG       the validation images sorted into class folders

The validation folder is the layout after the usual preparation (the ``valprep.sh`` of the PyTorch
ImageNet example, or torchvision's ``ImageNet`` class, both move each image into its class's
folder); the archive's flat ``val/*.JPEG`` with a separate ground-truth file is not read: the
loader says so and what to run. ImageNet-100 (CMC's list of 100 classes) is the same layout holding
those 100 class folders; any subset of classes works the same way. Labels follow the sorted WordNet
ids (torchvision's ``find_classes``, as ImageFolder does); the class names are the WordNet ids.
The validation images are the test split; ``train_size`` / ``test_size`` draw seeded subsets.

At the paper's 224 px the decoded training set is ~190 GB, so under ``dataset.stream: auto`` it
streams (`ablate.data.stream`) unless it fits the memory budget (e.g. a small ``image_size`` or a
subset of classes); in memory it is decoded and cached like any image folder (`ablate.data.folder`).
"""

from __future__ import annotations

from pathlib import Path

from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

from ablate.config import DatasetSpec
from ablate.data import DatasetSplits, DatasetUnavailable, data_root
from ablate.data.folder import splits_of_files

PREPARE = (
    "sort val/ into one folder per class first (the PyTorch ImageNet example's valprep.sh, or "
    "torchvision.datasets.ImageNet(root, split='val') once), then set dataset.root to the folder holding train/ and val/"
)


def load(spec: DatasetSpec) -> DatasetSplits:
    """ImageNet's train / val images: streamed files when too large for memory, else uint8 splits of ``image_size`` px."""
    root = data_root(spec).resolve()
    wnids, files = list_files(root)
    return splits_of_files(root, wnids, files, spec)

def list_files(root: Path) -> tuple[list[str], list[tuple[str, int, bool]]]:
    """The sorted WordNet ids, and every image of train/ then val/ as (path relative to root, label, is_test)."""
    for part in ("train", "val"):
        if not (root / part).is_dir():
            raise DatasetUnavailable(f"ImageNet folder {root} has no {part}/ folder: expected root/train/<wnid>/*.JPEG "
                                     f"and root/val/<wnid>/*.JPEG; {PREPARE}")
    wnids, index = _classes(root / "train")
    val_classes, _ = _classes(root / "val")
    extra = sorted(set(val_classes) - set(wnids))
    if extra:
        raise DatasetUnavailable(f"{root / 'val'} has classes that {root / 'train'} lacks: {', '.join(extra[:5])}")
    files = []
    for part, is_test in (("train", False), ("val", True)):
        try:
            found = make_dataset(str(root / part), index, extensions=IMG_EXTENSIONS, allow_empty=is_test)
        except FileNotFoundError as err:  # a class folder without any image
            raise DatasetUnavailable(f"{root / part}: {err}") from None
        files += [(str(Path(path).relative_to(root)), label, is_test) for path, label in found]
    return wnids, files


def _classes(folder: Path) -> tuple[list[str], dict[str, int]]:
    try:
        return find_classes(str(folder))
    except FileNotFoundError:  # no sub-folder at all: the archive's flat val/*.JPEG, or an empty folder
        raise DatasetUnavailable(f"{folder} has no class folders; {PREPARE}") from None
