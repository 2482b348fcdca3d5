"""The Imagenette loader on tiny files in the archive's layout (train/<wnid>/*.JPEG, val/<wnid>/*.JPEG), and
`ablate data fetch imagenette` from a local server: labels follow the sorted WordNet ids, every image decodes
to its own colour, val is the test split, and a missing folder says where it is expected and how to fetch it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from fetch_helpers import Served, colour, http_server, md5, tar_gz, write_imagenette

from ablate import cli
from ablate.config import DatasetSpec
from ablate.data import DatasetUnavailable, ImageData, fetch, load_dataset

NAMES = ["tench", "chain saw", "parachute"]  # the sorted wnids n01440764, n03000684, n03888257


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ABLATE_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("ABLATE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "data"


def assert_colours(data: ImageData, first_index: int, per_class: int) -> None:
    """Each image is solid colour(label, i) for some i of its class (JPEG moves a level or two), each i once."""
    seen = []
    for image, label in zip(data.images, data.labels.tolist()):
        mean = image.double().mean(dim=(1, 2))
        assert (image.double() - mean[:, None, None]).abs().max() <= 4  # still one solid colour
        matches = [i for i in range(first_index, first_index + per_class)
                   if (mean - torch.tensor(colour(label, i), dtype=torch.float64)).abs().max() <= 4]
        assert len(matches) == 1, (label, mean)
        seen.append((label, matches[0]))
    assert sorted(seen) == sorted(set(seen))


def test_layout_is_read_with_labels_by_sorted_wnid(data_dir):
    write_imagenette(data_dir / "imagenette")
    data = load_dataset(DatasetSpec(name="imagenette", image_size=16))
    assert data.classes == NAMES
    assert data.train.images.shape == (9, 3, 16, 16) and data.train.images.dtype == torch.uint8
    assert sorted(data.train.labels.tolist()) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert sorted(data.test.labels.tolist()) == [0, 0, 1, 1, 2, 2]
    assert_colours(data.train, first_index=0, per_class=3)
    assert_colours(data.test, first_index=3, per_class=2)
    assert data.pretrain is data.train


def test_root_may_be_the_folder_itself_and_the_largest_version_comes_first(tmp_path, data_dir):
    folder = write_imagenette(tmp_path / "mine", folder="imagenette2-160", train_per_class=1, val_per_class=1)
    assert len(load_dataset(DatasetSpec(name="imagenette", root=str(folder), image_size=8)).train) == 3
    write_imagenette(tmp_path / "mine", folder="imagenette2", train_per_class=2, val_per_class=1)
    assert len(load_dataset(DatasetSpec(name="imagenette", root=str(tmp_path / "mine"), image_size=8)).train) == 6


def test_subsets_keep_images_and_labels_together(data_dir):
    write_imagenette(data_dir / "imagenette", train_per_class=4)
    whole = load_dataset(DatasetSpec(name="imagenette", image_size=8))
    part = load_dataset(DatasetSpec(name="imagenette", image_size=8, train_size=10, seed=5))
    assert len(part.train) == 10 and len(part.test) == 6
    assert_colours(part.train, first_index=0, per_class=4)
    kept = {tuple(image.flatten().tolist()) for image in part.train.images}
    assert kept <= {tuple(image.flatten().tolist()) for image in whole.train.images}


def test_a_missing_folder_says_where_and_how_to_fetch(data_dir):
    with pytest.raises(DatasetUnavailable) as raised:
        load_dataset(DatasetSpec(name="imagenette"))
    root = data_dir / "imagenette"
    assert str(raised.value) == (
        f"Imagenette not found: expected {root / 'imagenette2-320'}/ (or imagenette2 or imagenette2-160) holding "
        f"train/<wnid>/*.JPEG and val/<wnid>/*.JPEG. Download https://s3.amazonaws.com/fast-ai-imageclas/imagenette2-320.tgz "
        f"and extract it there (tar xzf imagenette2-320.tgz -C {root}), or set dataset.root (or $ABLATE_DATA, which holds "
        f"one folder per dataset) to the folder that contains it. Or let ablate fetch it: `ablate data fetch imagenette`, "
        f"or set dataset.download: true.")


def test_a_val_class_that_train_lacks_is_refused(data_dir):
    folder = write_imagenette(data_dir / "imagenette", train_per_class=1, val_per_class=1)
    (folder / "val" / "n09999999").mkdir()
    with pytest.raises(DatasetUnavailable, match=r"val has classes that .*train lacks: n09999999"):
        load_dataset(DatasetSpec(name="imagenette"))


def test_fetched_from_a_server_then_read(tmp_path, data_dir, capsys, monkeypatch):
    archive = tar_gz(write_imagenette(tmp_path / "made"))
    served = Served()
    served.files["imagenette2-320.tgz"] = archive
    monkeypatch.setitem(fetch.SOURCES, "imagenette", dataclasses.replace(fetch.SOURCES["imagenette"], md5=md5(archive)))
    with http_server(served) as base:
        monkeypatch.setenv("ABLATE_DATA_MIRROR", base)
        assert cli.main(["data", "fetch", "imagenette"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"imagenette: {data_dir / 'imagenette' / 'imagenette2-320'} (fetched)"
    data = load_dataset(DatasetSpec(name="imagenette", image_size=16))
    assert data.classes == NAMES and len(data.train) == 9 and len(data.test) == 6
    assert_colours(data.train, first_index=0, per_class=3)


def test_stream_true_streams_the_same_splits_the_memory_path_decodes(data_dir):
    from ablate.data.stream import ImageFiles

    write_imagenette(data_dir / "imagenette")
    in_memory = load_dataset(DatasetSpec(name="imagenette", image_size=16, train_size=10, test_size=10))
    streamed = load_dataset(DatasetSpec(name="imagenette", image_size=16, train_size=10, test_size=10, stream=True))
    assert isinstance(streamed.train, ImageFiles) and isinstance(streamed.test, ImageFiles)
    for split in ("train", "test"):
        memory, files = getattr(in_memory, split), getattr(streamed, split)
        assert files.labels.tolist() == memory.labels.tolist()
        assert torch.equal(files.images[torch.arange(len(files))], memory.images)  # the same centre crops, in order
