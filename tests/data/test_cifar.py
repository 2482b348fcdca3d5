"""CIFAR-10 / CIFAR-100 loaders on tiny files written in the real "python version" pickle format."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from ablate.config import DatasetSpec
from ablate.data import DatasetUnavailable, load_dataset

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _images(count: int, offset: int) -> np.ndarray:
    """count×3×32×32 uint8 with a known value at a known place: image i has 100+i at red (y=2, x=5),
    200−i at blue (y=31, x=0), and (offset + i) everywhere else."""
    images = np.zeros((count, 3, 32, 32), dtype=np.uint8)
    for i in range(count):
        images[i] = offset + i
        images[i, 0, 2, 5] = 100 + i
        images[i, 2, 31, 0] = 200 - i
    return images


def _flat(images: np.ndarray) -> np.ndarray:
    # The format: per image 1024 red, 1024 green, 1024 blue values, each channel row-major.
    return images.reshape(len(images), 3072)


def _dump(path: Path, obj: dict) -> None:
    with open(path, "wb") as handle:
        pickle.dump(obj, handle, protocol=2)  # the protocol of the official (Python 2) files


def write_cifar10(root: Path, per_batch: int = 3, test_count: int = 4) -> dict[str, np.ndarray]:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    train_images, train_labels = [], []
    for b in range(1, 6):
        images = _images(per_batch, offset=10 * b)
        labels = [(b + i) % 10 for i in range(per_batch)]
        _dump(folder / f"data_batch_{b}", {
            "batch_label": f"training batch {b} of 5", "labels": labels, "data": _flat(images),
            "filenames": [f"img_{b}_{i}.png" for i in range(per_batch)],
        })
        train_images.append(images)
        train_labels += labels
    test_images = _images(test_count, offset=70)
    test_labels = [(9 - i) % 10 for i in range(test_count)]
    _dump(folder / "test_batch", {"batch_label": "testing batch 1 of 1", "labels": test_labels,
                                  "data": _flat(test_images), "filenames": [f"t{i}.png" for i in range(test_count)]})
    _dump(folder / "batches.meta", {"num_cases_per_batch": per_batch, "label_names": CIFAR10_NAMES, "num_vis": 3072})
    return {"train_x": np.concatenate(train_images), "train_y": np.array(train_labels),
            "test_x": test_images, "test_y": np.array(test_labels)}


def write_cifar100(root: Path) -> dict[str, np.ndarray]:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    train_x, test_x = _images(12, offset=1), _images(10, offset=40)
    fine_train = [99 - 3 * i for i in range(12)]
    fine_test = [5 * i for i in range(10)]
    for name, images, fine in (("train", train_x, fine_train), ("test", test_x, fine_test)):
        _dump(folder / name, {"filenames": [f"{i}.png" for i in range(len(fine))], "batch_label": name,
                              "fine_labels": fine, "coarse_labels": [f // 5 for f in fine], "data": _flat(images)})
    fine_names = [f"fine{i:02d}" for i in range(100)]
    _dump(folder / "meta", {"fine_label_names": fine_names, "coarse_label_names": [f"coarse{i}" for i in range(20)]})
    return {"train_x": train_x, "train_y": np.array(fine_train), "test_x": test_x, "test_y": np.array(fine_test)}


def test_cifar10_round_trip(tmp_path: Path) -> None:
    written = write_cifar10(tmp_path)
    data = load_dataset(DatasetSpec(name="cifar10", root=str(tmp_path)))
    assert data.classes == CIFAR10_NAMES
    assert data.train.images.dtype == torch.uint8 and data.train.labels.dtype == torch.int64
    assert data.train.images.shape == (15, 3, 32, 32) and data.test.images.shape == (4, 3, 32, 32)
    assert torch.equal(data.train.images, torch.from_numpy(written["train_x"]))
    assert torch.equal(data.train.labels, torch.from_numpy(written["train_y"]))
    assert torch.equal(data.test.labels, torch.tensor([9, 8, 7, 6]))
    # Batch 2's first image is the 4th training image: red (y=2, x=5) = 100, blue (31, 0) = 200, rest 20.
    assert data.train.images[3, 0, 2, 5] == 100 and data.train.images[3, 2, 31, 0] == 200
    assert data.train.images[3, 1, 2, 5] == 20 and data.train.images[3, 0, 5, 2] == 20
    assert data.test.images[2, 0, 2, 5] == 102 and data.test.images[2, 2, 0, 0] == 72
    assert data.pretrain is data.train


def test_cifar10_root_may_name_the_batches_folder(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    data = load_dataset(DatasetSpec(name="cifar10", root=str(tmp_path / "cifar-10-batches-py")))
    assert len(data.train) == 15


def test_cifar10_from_abl_data_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_cifar10(tmp_path / "cifar10")
    monkeypatch.setenv("ABLATE_DATA", str(tmp_path))
    assert len(load_dataset(DatasetSpec(name="cifar10")).test) == 4


def test_cifar100_fine_labels_and_names(tmp_path: Path) -> None:
    written = write_cifar100(tmp_path)
    data = load_dataset(DatasetSpec(name="cifar100", root=str(tmp_path)))
    assert len(data.classes) == 100 and data.classes[7] == "fine07"
    assert torch.equal(data.train.labels, torch.from_numpy(written["train_y"]))
    assert torch.equal(data.test.labels, torch.arange(0, 50, 5))
    assert torch.equal(data.test.images, torch.from_numpy(written["test_x"]))
    assert data.train.images[4, 0, 2, 5] == 104 and data.train.images[4, 1, 0, 0] == 5


def test_subsets_are_seeded_and_keep_pairs(tmp_path: Path) -> None:
    written = write_cifar10(tmp_path, per_batch=4, test_count=12)
    spec = DatasetSpec(name="cifar10", root=str(tmp_path), train_size=10, test_size=10, seed=3)
    first, again = load_dataset(spec), load_dataset(spec)
    other = load_dataset(spec.model_copy(update={"seed": 4}))
    assert len(first.train) == 10 and len(first.test) == 10
    assert torch.equal(first.train.images, again.train.images)
    assert not torch.equal(first.train.labels, other.train.labels) or not torch.equal(first.train.images, other.train.images)
    # Every chosen image still carries its own label: image content identifies its index.
    expected = torch.randperm(20, generator=torch.Generator().manual_seed(3))[:10]
    assert torch.equal(first.train.images, torch.from_numpy(written["train_x"])[expected])
    assert torch.equal(first.train.labels, torch.from_numpy(written["train_y"])[expected])


def test_resize_once_with_antialiasing(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    up = load_dataset(DatasetSpec(name="cifar10", root=str(tmp_path), image_size=64))
    down = load_dataset(DatasetSpec(name="cifar10", root=str(tmp_path), image_size=16))
    assert up.train.images.shape == (15, 3, 64, 64) and up.train.images.dtype == torch.uint8
    assert down.test.images.shape == (4, 3, 16, 16)
    # Flat regions keep their value; green of image 0 is constant 10 everywhere.
    assert (up.train.images[0, 1] == 10).all() and (down.train.images[0, 1] == 10).all()
    # Antialiased 2× downsampling (PIL-style triangle filter stretched to 4 input pixels, weights
    # 1/8, 3/8, 3/8, 1/8 per axis): the lone 100 at (2, 5) sits at weight 3/8 · 3/8 in output (1, 2),
    # so 10 + 90 · 9/64 = 22.66 → 23. Nearest would give 10 or 100, bilinear without antialiasing 32.5.
    assert int(down.train.images[0, 0, 1, 2]) == 23
    # Output row 0 lies at the border: of its taps only rows 0, 1, 2 exist (weights 3/8, 3/8, 1/8,
    # renormalised to 3/7, 3/7, 1/7), so it sees y=2 at weight 1/7: 10 + 90 · 1/7 · 3/8 = 14.8 → 15.
    assert int(down.train.images[0, 0, 0, 2]) == 15


def test_missing_files_say_where_and_how(tmp_path: Path) -> None:
    with pytest.raises(DatasetUnavailable) as err:
        load_dataset(DatasetSpec(name="cifar10", root=str(tmp_path / "nowhere")))
    message = str(err.value)
    assert str(tmp_path / "nowhere" / "cifar-10-batches-py") in message
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz" in message
    assert "dataset.root" in message and "ABLATE_DATA" in message
    with pytest.raises(DatasetUnavailable, match="cifar-100-python.tar.gz"):
        load_dataset(DatasetSpec(name="cifar100", root=str(tmp_path)))


def test_one_missing_batch_is_named(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_4").unlink()
    with pytest.raises(DatasetUnavailable, match=r"missing: data_batch_4\)"):
        load_dataset(DatasetSpec(name="cifar10", root=str(tmp_path)))


def test_damaged_file_is_a_clear_error(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(DatasetUnavailable, match="could not be read"):
        load_dataset(DatasetSpec(name="cifar10", root=str(tmp_path)))
