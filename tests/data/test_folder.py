"""Image-folder loader on small PNG / JPEG folders: layouts, pixels, resizing, the on-disk cache."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ablate.config import DatasetSpec
from ablate.data import DatasetUnavailable, load_dataset
from ablate.data import folder as folder_module


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("ABLATE_CACHE", str(cache))
    return cache


def _png(path: Path, value: int, size: tuple[int, int] = (16, 16), mode: str = "RGB") -> np.ndarray:
    """A flat image of `value` with a marker: red 250 at (y=1, x=4); returns its H×W×3 array."""
    width, height = size
    array = np.full((height, width, 3), value, dtype=np.uint8)
    array[1, 4] = (250, value, value)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(array)
    (image.convert(mode) if mode != "RGB" else image).save(path)
    return array


def _split_folder(root: Path) -> None:
    for i in range(3):
        _png(root / "train" / "cat" / f"c{i}.png", 10 + i)
        _png(root / "train" / "dog" / f"d{i}.png", 20 + i)
    _png(root / "train" / "emu" / "e0.png", 30)
    _png(root / "test" / "dog" / "t0.png", 40)
    _png(root / "test" / "cat" / "t1.png", 41)
    (root / "train" / "cat" / "notes.txt").write_text("not an image")


def test_train_test_layout_round_trip(tmp_path: Path) -> None:
    _split_folder(tmp_path / "imgs")
    data = load_dataset(DatasetSpec(name="folder", root=str(tmp_path / "imgs"), image_size=16))
    assert data.classes == ["cat", "dog", "emu"]
    assert data.train.labels.tolist() == [0, 0, 0, 1, 1, 1, 2]  # sorted classes, sorted files
    assert data.test.labels.tolist() == [0, 1]  # test/cat/t1 sorts before test/dog/t0
    assert data.train.images.shape == (7, 3, 16, 16) and data.train.images.dtype == torch.uint8
    assert data.train.images[4, 1, 0, 0] == 21 and data.train.images[4, 0, 1, 4] == 250
    assert data.train.images[4, 1, 1, 4] == 21 and data.train.images[4, 0, 4, 1] == 21
    assert data.test.images[0, 2, 7, 7] == 41 and data.test.images[1, 2, 7, 7] == 40
    assert data.pretrain is data.train


def test_second_load_reads_the_cache(tmp_path: Path, _private_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _split_folder(tmp_path / "imgs")
    spec = DatasetSpec(name="folder", root=str(tmp_path / "imgs"), image_size=16)
    first = load_dataset(spec)
    caches = list(_private_cache.glob("folder-*.pt"))
    assert len(caches) == 1 and not list(_private_cache.glob("*.tmp"))

    def no_decoding(*args: object) -> None:
        raise AssertionError("decoded again although a cache exists")

    monkeypatch.setattr(folder_module, "decode_all", no_decoding)
    second = load_dataset(spec)
    assert torch.equal(first.train.images, second.train.images) and torch.equal(first.test.labels, second.test.labels)


def test_cache_follows_file_changes_and_image_size(tmp_path: Path, _private_cache: Path) -> None:
    root = tmp_path / "imgs"
    _split_folder(root)
    spec = DatasetSpec(name="folder", root=str(root), image_size=16)
    load_dataset(spec)
    load_dataset(spec.model_copy(update={"image_size": 8}))
    assert len(list(_private_cache.glob("folder-*.pt"))) == 2
    path = root / "train" / "cat" / "c0.png"
    _png(path, 99)
    os.utime(path, ns=(1, 1))  # a different mtime, even on coarse-clock file systems
    assert load_dataset(spec).train.images[0, 1, 5, 5] == 99
    assert len(list(_private_cache.glob("folder-*.pt"))) == 3


def test_resize_keeps_aspect_and_converts_to_rgb(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    wide = np.zeros((32, 64, 3), dtype=np.uint8)  # 64 wide, 32 high: black margins, a 200 centre
    wide[:, 8:56] = 200  # the kept centre (columns 16..47) plus a margin for the filter's reach
    (root / "train" / "a").mkdir(parents=True)
    Image.fromarray(wide).save(root / "train" / "a" / "wide.png")
    _png(root / "train" / "a" / "grey.png", 70, size=(8, 8), mode="L")
    _png(root / "test" / "a" / "x.jpg", 128, size=(8, 8))
    data = load_dataset(DatasetSpec(name="folder", root=str(root), image_size=8))
    assert data.train.images.shape == (2, 3, 8, 8) and data.test.images.shape == (1, 3, 8, 8)
    grey = data.train.images[0]  # "grey.png" sorts first; already 8 px, so exact values
    assert grey[:, 1, 4].tolist() == [124] * 3  # L of (250, 70, 70) = .299·250 + .587·70 + .114·70
    assert grey[:, 0, 0].tolist() == [70] * 3
    # Shorter side 32 → 8 makes it 16 wide; the centre 8 columns are all 200, the black margins cut off.
    # (Squashing 64×32 to 8×8 would keep the black margins.)
    assert (data.train.images[1] == 200).all()
    assert abs(int(data.test.images[0, 0, 4, 4]) - 128) <= 2  # JPEG is lossy


def test_flat_layout_is_split_80_20_per_class(tmp_path: Path) -> None:
    root = tmp_path / "flat"
    for i in range(10):
        _png(root / "a" / f"{i:02d}.png", i)
        _png(root / "b" / f"{i:02d}.png", 100 + i)
    _png(root / "c" / "only.png", 200)
    spec = DatasetSpec(name="folder", root=str(root), image_size=16, seed=1)
    data = load_dataset(spec)
    assert data.classes == ["a", "b", "c"]
    assert sorted(data.test.labels.tolist()) == [0, 0, 1, 1]  # 2 of 10 each; 1 image rounds to 0
    assert len(data.train) == 17
    values = sorted(data.train.images[:, 1, 8, 8].tolist() + data.test.images[:, 1, 8, 8].tolist())
    assert values == sorted(list(range(10)) + list(range(100, 110)) + [200])  # no image lost or doubled
    again = load_dataset(spec)
    other = load_dataset(spec.model_copy(update={"seed": 2}))
    assert torch.equal(data.test.images, again.test.images)
    assert not torch.equal(data.test.images, other.test.images)


def test_split_per_class_counts() -> None:
    labels = torch.tensor([0] * 7 + [1] * 3 + [2] * 20)
    mask = folder_module.split_per_class(labels, 0.2, seed=0)
    assert [int(mask[labels == c].sum()) for c in range(3)] == [1, 1, 4]  # round(1.4), round(0.6), 4


def test_subsets(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    for i in range(12):
        _png(root / "train" / "a" / f"{i:02d}.png", i)
    _png(root / "test" / "a" / "t.png", 50)
    data = load_dataset(DatasetSpec(name="folder", root=str(root), image_size=16, train_size=10, seed=5))
    chosen = torch.randperm(12, generator=torch.Generator().manual_seed(5))[:10]
    assert data.train.images[:, 2, 9, 9].tolist() == chosen.tolist()


def test_errors_name_the_folder(tmp_path: Path) -> None:
    with pytest.raises(DatasetUnavailable, match="does not exist.*dataset.root"):
        load_dataset(DatasetSpec(name="folder", root=str(tmp_path / "none")))
    (tmp_path / "only_train" / "train" / "a").mkdir(parents=True)
    with pytest.raises(DatasetUnavailable, match="no test/ folder"):
        load_dataset(DatasetSpec(name="folder", root=str(tmp_path / "only_train")))
    root = tmp_path / "extra"
    _png(root / "train" / "a" / "x.png", 1)
    _png(root / "test" / "zebra" / "x.png", 1)
    with pytest.raises(DatasetUnavailable, match="classes that .* lacks: zebra"):
        load_dataset(DatasetSpec(name="folder", root=str(root)))
    bad = tmp_path / "bad"
    _png(bad / "a" / "ok.png", 1)
    (bad / "a" / "broken.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(DatasetUnavailable, match="cannot decode .*broken.png"):
        load_dataset(DatasetSpec(name="folder", root=str(bad)))
