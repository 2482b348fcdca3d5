"""Imagenette (fast.ai, https://github.com/fastai/imagenette): ten easily told apart ImageNet classes.

Layout of every version of the archive (``imagenette2``: full size, ``imagenette2-320`` and
``imagenette2-160``: shorter side 320 / 160 px): ``<folder>/train/<wnid>/*.JPEG`` and
``<folder>/val/<wnid>/*.JPEG``. Labels follow the sorted WordNet ids (torchvision's ``find_classes``,
as ImageFolder does); the class names are the fast.ai README's. `ablate data fetch imagenette`
fetches ``imagenette2-320`` (ablate.data.fetch); a version extracted by hand is found too, the one
with the largest images first.

The images are decoded, resized (shorter side to ``image_size``, centre square) and cached exactly
like an image folder's (`ablate.data.folder`, whose decoding and cache this module reuses); the
``val`` images are the test split. ``train_size`` / ``test_size`` draw seeded subsets after decoding,
as for a folder, so one cache serves every subset size.
"""

from __future__ import annotations

from pathlib import Path

from torchvision.datasets.folder import find_classes, make_dataset

from ablate.config import DatasetSpec
from ablate.data import DatasetSplits, DatasetUnavailable, data_root
from ablate.data.folder import splits_of_files

FOLDERS = ("imagenette2", "imagenette2-320", "imagenette2-160")  # largest images first
EXTENSIONS = (".jpeg", ".jpg")
URL = "https://s3.amazonaws.com/fast-ai-imageclas/imagenette2-320.tgz"
# The names the fast.ai README gives each WordNet id.
CLASS_NAMES = {
    "n01440764": "tench", "n02102040": "English springer", "n02979186": "cassette player", "n03000684": "chain saw",
    "n03028079": "church", "n03394916": "French horn", "n03417042": "garbage truck", "n03425413": "gas pump",
    "n03445777": "golf ball", "n03888257": "parachute",
}

Files = list[tuple[str, int, bool]]  # (path relative to the dataset folder, label, is_test): folder.py's list


def load(spec: DatasetSpec) -> DatasetSplits:
    """Imagenette's train / val images as uint8 splits of ``image_size`` px (cached after the first load)."""
    folder = find_folder(data_root(spec))
    wnids, files = list_files(folder)
    return splits_of_files(folder, [CLASS_NAMES.get(wnid, wnid) for wnid in wnids], files, spec)


def find_folder(root: Path) -> Path:
    """root itself when it holds train/ and val/, else the first of `FOLDERS` inside root that does."""
    for candidate in [root, *(root / name for name in FOLDERS)]:
        if (candidate / "train").is_dir() and (candidate / "val").is_dir():
            return candidate.resolve()
    raise DatasetUnavailable(
        f"Imagenette not found: expected {root / FOLDERS[1]}/ (or {' or '.join(FOLDERS[::2])}) holding "
        f"train/<wnid>/*.JPEG and val/<wnid>/*.JPEG. Download {URL} and extract it there "
        f"(tar xzf {URL.rsplit('/', 1)[-1]} -C {root}), or set dataset.root (or $ABLATE_DATA, which holds one "
        f"folder per dataset) to the folder that contains it."
    )


def list_files(folder: Path) -> tuple[list[str], Files]:
    """The sorted WordNet ids and every image of train/ (then val/) with its label."""
    wnids, index = find_classes(folder / "train")
    extra = sorted(set(find_classes(folder / "val")[0]) - set(wnids))
    if extra:
        raise DatasetUnavailable(f"{folder / 'val'} has classes that {folder / 'train'} lacks: {', '.join(extra)}")
    files = []
    for split, is_test in (("train", False), ("val", True)):
        try:
            found = make_dataset(folder / split, index, extensions=EXTENSIONS, allow_empty=is_test)
        except FileNotFoundError as err:  # a class folder without a single image
            raise DatasetUnavailable(f"{folder / split}: {err}") from None
        files += [(str(Path(path).relative_to(folder)), label, is_test) for path, label in found]
    return wnids, files
