"""The Tiny ImageNet loader on tiny files in the zip's layout (train/<wnid>/images, val/images labelled by
val_annotations.txt, wnids.txt, words.txt), and `ablate data fetch tiny-imagenet` from a local server,
including a damaged zip that leaves nothing behind."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from fetch_helpers import Served, colour, http_server, md5, write_tiny_imagenet, zip_of

from ablate import cli
from ablate.config import DatasetSpec
from ablate.data import DatasetUnavailable, ImageData, fetch, load_dataset

NAMES = ["goldfish", "Egyptian cat", "reel"]  # words.txt's first names of the sorted n01443537, n02124075, n04067472


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ABLATE_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("ABLATE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "data"


def colour_indices(data: ImageData) -> list[tuple[int, int]]:
    """(label, i) of each image: the i whose colour(label, i) its mean matches (JPEG moves a level or two)."""
    found = []
    for image, label in zip(data.images, data.labels.tolist()):
        mean = image.double().mean(dim=(1, 2))
        matches = [i for i in range(5) if (mean - torch.tensor(colour(label, i), dtype=torch.float64)).abs().max() <= 4]
        assert len(matches) == 1, (label, mean)
        found.append((label, matches[0]))
    return sorted(found)


def test_layout_is_read_with_val_labels_from_the_annotations(data_dir):
    write_tiny_imagenet(data_dir / "tiny-imagenet")
    data = load_dataset(DatasetSpec(name="tiny-imagenet", image_size=32))
    assert data.classes == NAMES
    assert data.train.images.shape == (9, 3, 32, 32)
    assert colour_indices(data.train) == [(label, i) for label in range(3) for i in range(3)]
    assert colour_indices(data.test) == [(label, i) for label in range(3) for i in (3, 4)]  # test/ images not read


def test_class_names_fall_back_to_the_wnid(tmp_path):
    folder = write_tiny_imagenet(tmp_path / "t", train_per_class=1, val_per_class=1)
    (folder / "words.txt").unlink()
    data = load_dataset(DatasetSpec(name="tiny-imagenet", root=str(folder), image_size=8))  # root: the folder itself
    assert data.classes == ["n01443537", "n02124075", "n04067472"]


def test_bad_annotations_name_the_file_and_line(tmp_path):
    folder = write_tiny_imagenet(tmp_path / "t", train_per_class=1, val_per_class=1)
    annotations = folder / "val" / "val_annotations.txt"
    lines = annotations.read_text().splitlines()
    annotations.write_text(lines[0] + "\nval_9.JPEG\tn09999999\t0\t0\t1\t1\n")
    with pytest.raises(DatasetUnavailable) as raised:
        load_dataset(DatasetSpec(name="tiny-imagenet", root=str(tmp_path / "t")))
    assert str(raised.value) == f"{annotations}:2: 'n09999999' is not one of the ids in wnids.txt"


def test_a_missing_folder_says_where_and_how_to_fetch(data_dir):
    with pytest.raises(DatasetUnavailable) as raised:
        load_dataset(DatasetSpec(name="tiny-imagenet"))
    root = data_dir / "tiny-imagenet"
    assert str(raised.value) == (
        f"Tiny ImageNet not found: expected {root / 'tiny-imagenet-200'}/ holding wnids.txt, train/<wnid>/images/*.JPEG, "
        f"val/images/*.JPEG and val/val_annotations.txt. Download http://cs231n.stanford.edu/tiny-imagenet-200.zip and "
        f"extract it there (unzip tiny-imagenet-200.zip -d {root}), or set dataset.root (or $ABLATE_DATA, which holds one "
        f"folder per dataset) to the folder that contains tiny-imagenet-200/. Or let ablate fetch it: "
        f"`ablate data fetch tiny-imagenet`, or set dataset.download: true.")


def serve_zip(monkeypatch, payload: bytes, checksum: str) -> Served:
    served = Served()
    served.files["tiny-imagenet-200.zip"] = payload
    monkeypatch.setitem(fetch.SOURCES, "tiny-imagenet", dataclasses.replace(fetch.SOURCES["tiny-imagenet"], md5=checksum))
    return served


def test_download_true_fetches_the_zip_then_reads_it(tmp_path, data_dir, monkeypatch):
    archive = zip_of(write_tiny_imagenet(tmp_path / "made"))
    served = serve_zip(monkeypatch, archive, md5(archive))
    with http_server(served) as base:
        monkeypatch.setenv("ABLATE_DATA_MIRROR", base)
        data = load_dataset(DatasetSpec(name="tiny-imagenet", image_size=16, download=True))
    assert served.requests == ["tiny-imagenet-200.zip"] and data.classes == NAMES
    assert colour_indices(data.test) == [(label, i) for label in range(3) for i in (3, 4)]
    assert sorted(p.name for p in (data_dir / "tiny-imagenet").iterdir()) == ["tiny-imagenet-200"]


def test_a_damaged_zip_is_removed_and_nothing_half_extracted(tmp_path, data_dir, capsys, monkeypatch):
    archive = zip_of(write_tiny_imagenet(tmp_path / "made"))
    damaged = archive[: len(archive) - 300]  # the central directory at the end is cut off
    served = serve_zip(monkeypatch, damaged, md5(damaged))  # a checksum that cannot tell
    with http_server(served) as base:
        monkeypatch.setenv("ABLATE_DATA_MIRROR", base)
        status = cli.main(["data", "fetch", "tiny-imagenet"])
    assert (status, capsys.readouterr().err) == (2, (
        "ablate: Tiny ImageNet: tiny-imagenet-200.zip could not be extracted (File is not a zip file): damaged or "
        "truncated; removed it and the partial extraction. Run the fetch again\n"))
    assert [p.name for p in (data_dir / "tiny-imagenet").rglob("*")] == []
