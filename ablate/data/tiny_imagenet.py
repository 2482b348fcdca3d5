"""Tiny ImageNet (Stanford CS231n): 200 ImageNet classes, 64×64 JPEGs, 500 training and 50
validation images per class.

Layout of ``tiny-imagenet-200.zip`` (``ablate data fetch tiny-imagenet``, ablate.data.fetch):

* ``wnids.txt`` — the 200 WordNet ids, one a line; ``words.txt`` — ``<wnid>\\t<names, comma-separated>``
  for many more ids than these (the first name of each is the class name here).
* ``train/<wnid>/images/<wnid>_<n>.JPEG`` (plus a ``<wnid>_boxes.txt`` this loader does not need).
* ``val/images/val_<n>.JPEG`` in one folder, labelled by ``val/val_annotations.txt``:
  ``<file>\\t<wnid>\\t<x0>\\t<y0>\\t<x1>\\t<y1>``, one image a line.
* ``test/images/`` — unlabelled, not used: the labelled ``val`` images are the test split.

Labels follow the sorted WordNet ids (as ImageFolder would). Decoding, resizing and the cache are
the image folder's (`ablate.data.folder`), through `ablate.data.folder.splits_of_files`.
"""

from __future__ import annotations

from pathlib import Path

from torchvision.datasets.folder import make_dataset

from ablate.config import DatasetSpec
from ablate.data import DatasetSplits, DatasetUnavailable, data_root
from ablate.data.folder import splits_of_files
from ablate.data.imagenette import EXTENSIONS, Files

FOLDER = "tiny-imagenet-200"
URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"


def load(spec: DatasetSpec) -> DatasetSplits:
    """Tiny ImageNet's train / val images as uint8 splits of ``image_size`` px (cached after the first load)."""
    folder = find_folder(data_root(spec))
    wnids = read_wnids(folder)
    files = train_files(folder, wnids) + val_files(folder, wnids)
    return splits_of_files(folder, class_names(folder, wnids), files, spec)


def find_folder(root: Path) -> Path:
    """root/tiny-imagenet-200, or root itself when it is that folder (holds wnids.txt, train/ and val/)."""
    for candidate in (root / FOLDER, root):
        if (candidate / "wnids.txt").is_file() and (candidate / "train").is_dir() and (candidate / "val").is_dir():
            return candidate.resolve()
    raise DatasetUnavailable(
        f"Tiny ImageNet not found: expected {root / FOLDER}/ holding wnids.txt, train/<wnid>/images/*.JPEG, "
        f"val/images/*.JPEG and val/val_annotations.txt. Download {URL} and extract it there "
        f"(unzip {FOLDER}.zip -d {root}), or set dataset.root (or $ABLATE_DATA, which holds one folder per "
        f"dataset) to the folder that contains {FOLDER}/."
    )


def read_wnids(folder: Path) -> list[str]:
    """The class ids of wnids.txt, sorted (label i is the i-th)."""
    wnids = sorted({line.strip() for line in (folder / "wnids.txt").read_text(encoding="utf-8").splitlines() if line.strip()})
    if not wnids:
        raise DatasetUnavailable(f"{folder / 'wnids.txt'} lists no class")
    return wnids


def class_names(folder: Path, wnids: list[str]) -> list[str]:
    """The first name words.txt gives each id; the id itself where words.txt is absent or silent."""
    names = {}
    path = folder / "words.txt"
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            wnid, _, words = line.partition("\t")
            names[wnid.strip()] = words.split(",")[0].strip()
    return [names.get(wnid) or wnid for wnid in wnids]


def train_files(folder: Path, wnids: list[str]) -> Files:
    """train/<wnid>/images/*.JPEG of every class, labelled by the class's place in the sorted ids."""
    files = []
    for label, wnid in enumerate(wnids):
        images = folder / "train" / wnid / "images"
        found = make_dataset(images.parent, {"images": label}, extensions=EXTENSIONS, allow_empty=True)
        if not found:
            raise DatasetUnavailable(f"{images} holds no .JPEG image (wnids.txt lists {wnid})")
        files += [(str(Path(path).relative_to(folder)), label, False) for path, _ in found]
    return files


def val_files(folder: Path, wnids: list[str]) -> Files:
    """val/images/<file> labelled by val_annotations.txt, in the annotation file's order."""
    annotations = folder / "val" / "val_annotations.txt"
    if not annotations.is_file():
        raise DatasetUnavailable(f"Tiny ImageNet: {annotations} is missing; it labels the val images")
    index = {wnid: label for label, wnid in enumerate(wnids)}
    files = []
    for number, line in enumerate(annotations.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        name, _, rest = line.partition("\t")
        wnid = rest.split("\t")[0].strip()
        if wnid not in index:
            raise DatasetUnavailable(f"{annotations}:{number}: {wnid!r} is not one of the ids in wnids.txt")
        if not (folder / "val" / "images" / name).is_file():
            raise DatasetUnavailable(f"{annotations}:{number}: {folder / 'val' / 'images' / name} is missing")
        files.append((f"val/images/{name}", index[wnid], True))
    return files
