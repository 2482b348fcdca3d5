"""STL-10 loader on a handful of 96×96 images written exactly like the official binary files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ablate.config import DatasetSpec
from ablate.data import DatasetUnavailable, load_dataset

NAMES = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]


def _images(count: int, offset: int) -> np.ndarray:
    """count×3×96×96 in the usual [c][y][x] order: offset+i everywhere, 100+i at green (y=3, x=70)."""
    images = np.empty((count, 3, 96, 96), dtype=np.uint8)
    for i in range(count):
        images[i] = offset + i
        images[i, 1, 3, 70] = 100 + i
    return images


def _write_x(path: Path, images: np.ndarray) -> None:
    # The official files store each channel column-major: bytes in [c][x][y] order.
    path.write_bytes(np.ascontiguousarray(images.transpose(0, 1, 3, 2)).tobytes())


def write_stl10(root: Path, unlabeled: bool = True) -> dict[str, np.ndarray]:
    folder = root / "stl10_binary"
    folder.mkdir(parents=True)
    data = {
        "train_x": _images(4, 10), "train_y": np.array([1, 10, 3, 1], dtype=np.uint8),
        "test_x": _images(3, 30), "test_y": np.array([2, 2, 7], dtype=np.uint8),
        "unlabeled_x": _images(5, 50),
    }
    for split in ("train", "test"):
        _write_x(folder / f"{split}_X.bin", data[f"{split}_x"])
        (folder / f"{split}_y.bin").write_bytes(data[f"{split}_y"].tobytes())
    if unlabeled:
        _write_x(folder / "unlabeled_X.bin", data["unlabeled_x"])
    (folder / "class_names.txt").write_text("\n".join(NAMES) + "\n")
    return data


def test_round_trip_pixels_labels_and_names(tmp_path: Path) -> None:
    written = write_stl10(tmp_path)
    data = load_dataset(DatasetSpec(name="stl10", root=str(tmp_path), image_size=96))
    assert data.classes == NAMES
    assert data.train.images.shape == (4, 3, 96, 96) and data.train.images.dtype == torch.uint8
    assert torch.equal(data.train.labels, torch.tensor([0, 9, 2, 0]))  # 1..10 on disk → 0..9
    assert torch.equal(data.test.labels, torch.tensor([1, 1, 6]))
    assert torch.equal(data.train.images, torch.from_numpy(written["train_x"]))
    # The marked pixel is at (y=3, x=70), not at the transposed (70, 3).
    assert data.test.images[2, 1, 3, 70] == 102 and data.test.images[2, 1, 70, 3] == 32
    assert data.pretrain is data.train


@pytest.mark.parametrize("split, count, labels", [
    ("unlabeled", 5, [-1] * 5),
    ("train+unlabeled", 9, [0, 9, 2, 0] + [-1] * 5),
])
def test_pretrain_split(tmp_path: Path, split: str, count: int, labels: list[int]) -> None:
    written = write_stl10(tmp_path)
    data = load_dataset(DatasetSpec(name="stl10", root=str(tmp_path), image_size=96, pretrain_split=split))
    assert len(data.pretrain) == count and data.pretrain.labels.tolist() == labels
    assert torch.equal(data.pretrain.images[-5:], torch.from_numpy(written["unlabeled_x"]))
    assert len(data.train) == 4  # the probe still gets the labelled images


def test_subset_of_unlabeled_matches_the_generic_subset(tmp_path: Path) -> None:
    write_stl10(tmp_path)
    # 25 images needed for the minimum subset size of 10: write a bigger unlabeled file.
    many = _images(25, 0)
    _write_x(tmp_path / "stl10_binary" / "unlabeled_X.bin", many)
    spec = DatasetSpec(name="stl10", root=str(tmp_path), image_size=96, pretrain_split="unlabeled",
                       train_size=10, seed=7)
    data = load_dataset(spec)
    chosen = torch.randperm(25, generator=torch.Generator().manual_seed(7))[:10]
    assert torch.equal(data.pretrain.images, torch.from_numpy(many)[chosen])
    assert len(data.train) == 4  # fewer than train_size: all of them


def test_resized_on_load(tmp_path: Path) -> None:
    write_stl10(tmp_path)
    data = load_dataset(DatasetSpec(name="stl10", root=str(tmp_path), image_size=32, pretrain_split="train+unlabeled"))
    assert data.train.images.shape == (4, 3, 32, 32) and data.pretrain.images.shape == (9, 3, 32, 32)
    assert (data.train.images[1, 0] == 11).all()  # a flat channel keeps its value
    # The 3× reduction spreads the single bright pixel over neighbours: above 11, well below 101.
    assert 11 < int(data.train.images[1, 1, 1, 23]) < 60


def test_unlabeled_file_only_needed_when_used(tmp_path: Path) -> None:
    write_stl10(tmp_path, unlabeled=False)
    assert len(load_dataset(DatasetSpec(name="stl10", root=str(tmp_path), image_size=96)).pretrain) == 4
    with pytest.raises(DatasetUnavailable, match=r"missing: unlabeled_X\.bin"):
        load_dataset(DatasetSpec(name="stl10", root=str(tmp_path), pretrain_split="unlabeled"))


def test_missing_files_say_where_and_how(tmp_path: Path) -> None:
    with pytest.raises(DatasetUnavailable) as err:
        load_dataset(DatasetSpec(name="stl10", root=str(tmp_path)))
    message = str(err.value)
    assert str(tmp_path / "stl10_binary") in message and "train_X.bin" in message
    assert "http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz" in message
    assert "dataset.root" in message and "ABLATE_DATA" in message


def test_truncated_file_and_label_mismatch(tmp_path: Path) -> None:
    write_stl10(tmp_path)
    folder = tmp_path / "stl10_binary"
    (folder / "test_y.bin").write_bytes(bytes([1, 2]))
    with pytest.raises(DatasetUnavailable, match="2 labels but .* 3 images"):
        load_dataset(DatasetSpec(name="stl10", root=str(tmp_path)))
    (folder / "test_X.bin").write_bytes(b"\0" * 1000)
    with pytest.raises(DatasetUnavailable, match="not a whole number"):
        load_dataset(DatasetSpec(name="stl10", root=str(tmp_path)))
