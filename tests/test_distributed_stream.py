"""A streamed image folder (ablate.data.stream) trained on several processes (ablate.distributed): each rank's
loader reads only its rows of every global batch, the ranks' rows together are the one-process batch (same files,
same crops, same order), and 2 gloo processes train a streamed run that resumes exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ablate import distributed
from ablate.config import RunSpec
from ablate.data import load_dataset
from ablate.data import stream
from ablate.methods.train import CHECKPOINT_FILE, device_settings, streamed_batches
from ablate.run import build_method, seed_everything

pytestmark = pytest.mark.usefixtures("one_torch_thread")
CPU = torch.device("cpu")
TRAIN_PER_CLASS, VAL_PER_CLASS, CLASSES = 10, 2, ("n01", "n02", "n03")  # 30 training images
BATCH = 8  # global: 4 a rank on 2 processes, 3 steps an epoch


@pytest.fixture(autouse=True)
def _private_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Spawned ranks inherit these (os.environ is copied into each process)."""
    monkeypatch.setenv("ABLATE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("ABLATE_STREAM_WORKERS", "0")  # no DataLoader worker processes: see the training test
    monkeypatch.delenv("ABLATE_STREAM_BUDGET_GB", raising=False)


@pytest.fixture(scope="module")
def imagenet_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train/<wnid>/*.JPEG and val/<wnid>/*.JPEG: smooth colour waves of random phase and size (30 to 60 px),
    so that two different crops, or two different images, never have the same pixels."""
    root = tmp_path_factory.mktemp("imagenet")
    rng = np.random.default_rng(0)
    for part, count in (("train", TRAIN_PER_CLASS), ("val", VAL_PER_CLASS)):
        for wnid in CLASSES:
            (root / part / wnid).mkdir(parents=True)
            for i in range(count):
                width, height = (int(side) for side in rng.integers(30, 60, 2))
                y, x = np.mgrid[0:height, 0:width] / max(width, height)
                phase, frequency = rng.uniform(0, 2 * np.pi, 3), rng.uniform(2, 6, 3)
                pixels = np.stack([127 + 120 * np.sin(frequency[c] * np.pi * (x + (c - 1) * y) + phase[c]) for c in range(3)], axis=2)
                Image.fromarray(pixels.astype(np.uint8)).save(root / part / wnid / f"{wnid}_{i}.JPEG", quality=90)
    return root


def streamed_spec(root: Path, **train) -> RunSpec:
    return RunSpec.model_validate({
        "dataset": {"name": "imagenet", "root": str(root), "image_size": 16, "stream": True},
        "model": {"arch": "small_cnn"}, "method": {"name": "simclr", "temperature": 0.5},
        "train": {"epochs": 2, "batch_size": BATCH, "optimizer": "adamw", "lr": 0.01, "warmup_epochs": 0, **train},
        "augment": {"protocol": "both_branches", "ops": ["crop", "color"]}, "seed": 4,
    })


# --------------------------------------------------------------------------- each rank's rows


def test_the_ranks_rows_together_are_the_one_process_batch_and_each_reads_only_its_own(
        imagenet_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = streamed_spec(imagenet_root)
    seed_everything(spec.seed)
    method = build_method(spec, len(CLASSES), device_settings(spec, CPU))
    files = method.pretraining_data(load_dataset(spec.dataset))
    assert isinstance(files, stream.ImageFiles) and len(files) == 3 * TRAIN_PER_CLASS
    order = torch.randperm(len(files), generator=torch.Generator().manual_seed(7))
    epoch, first_step, steps = 1, 1, len(files) // BATCH - 1  # a resumed epoch: steps 1 and 2
    read: list[tuple[int, int]] = []  # every (epoch, index) a loader decoded, in order
    getitem = stream.CropDataset.__getitem__

    def recording(self: stream.CropDataset, key: tuple[int, int]):
        read.append(key)
        return getitem(self, key)

    monkeypatch.setattr(stream.CropDataset, "__getitem__", recording)

    def batches_of(rank: int, world: int) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], list[tuple[int, int]]]:
        """The batches the training loop's own loader (`streamed_batches`) gives rank `rank` of `world`, and the keys it read."""
        monkeypatch.setattr(distributed, "rank", lambda: rank)
        monkeypatch.setattr(distributed, "world_size", lambda: world)
        read.clear()
        loader = streamed_batches(method, files, spec, CPU)
        batches = [(images.clone(), labels.clone()) for images, labels in loader.epoch(epoch, order, first_step)]
        return batches, list(read)

    whole, whole_read = batches_of(0, 1)
    ranks = [batches_of(rank, 2) for rank in (0, 1)]
    assert len(whole) == steps and all(len(batches) == steps for batches, _ in ranks)
    for step in range(steps):
        global_rows = order[(first_step + step) * BATCH : (first_step + step + 1) * BATCH]
        images, labels = whole[step]
        assert images.shape == (BATCH, 2, 3, 16, 16) and torch.equal(labels, files.labels[global_rows])
        for rank, (batches, _) in enumerate(ranks):
            local = slice(rank * BATCH // 2, (rank + 1) * BATCH // 2)  # the rows the in-memory path gives this rank
            assert batches[step][0].shape == (BATCH // 2, 2, 3, 16, 16)
            assert torch.equal(batches[step][1], files.labels[global_rows[local]])
        assert torch.equal(torch.cat([batches[step][0] for batches, _ in ranks]), images)  # the same crops, in order
        assert torch.equal(torch.cat([batches[step][1] for batches, _ in ranks]), labels)
        assert not torch.equal(ranks[0][0][step][0], ranks[1][0][step][0])  # two different halves: the check can fail
    # Each rank decoded its own rows of each step and nothing else: together, once what one process decodes.
    expected_read = [[(epoch, index) for step in range(first_step, first_step + steps)
                      for index in order[step * BATCH : (step + 1) * BATCH][rank * BATCH // 2 : (rank + 1) * BATCH // 2].tolist()]
                     for rank in (0, 1)]
    assert [keys for _, keys in ranks] == expected_read
    assert sorted(ranks[0][1] + ranks[1][1]) == sorted(whole_read) and len(whole_read) == steps * BATCH


# ------------------------------------------------------------------------ training on 2 processes


def assert_same_weights(a: dict, b: dict) -> None:
    assert a["model"].keys() == b["model"].keys()
    different = [name for name in a["model"] if not torch.equal(a["model"][name], b["model"][name])]
    assert not different, different[:5]


def test_two_processes_train_a_streamed_folder_and_resume_exactly(imagenet_root: Path, tmp_path: Path) -> None:
    # Each rank reads in its own process (workers=0, set above): ranks are started by spawn, so DataLoader workers
    # would be too, each importing torch again, for seconds a run; which process decodes cannot change a batch
    # (its rows are chosen by the sampler, in the rank; tests/data/test_stream.py compares 0 and 2 workers).
    spec = streamed_spec(imagenet_root)  # 30 images, global batch 8: 3 steps an epoch, 6 in all
    distributed.train_distributed(spec, 2, tmp_path / "straight")
    straight = torch.load(tmp_path / "straight" / CHECKPOINT_FILE, weights_only=True)
    assert straight["state"]["global_step"] == 6 and straight["state"]["epoch"] == 2
    assert len(straight["state"]["epoch_losses"]) == 2
    seed_everything(spec.seed)
    initial = build_method(spec, len(CLASSES), device_settings(spec, CPU)).state_dict()
    assert any(not torch.equal(initial[name], straight["model"][name]) for name in initial)  # it trained

    distributed.train_distributed(spec, 2, tmp_path / "resumed", stop_after_steps=4)  # after the first step of epoch 2
    assert torch.load(tmp_path / "resumed" / CHECKPOINT_FILE, weights_only=True)["state"]["global_step"] == 4
    distributed.train_distributed(spec, 2, tmp_path / "resumed")
    resumed = torch.load(tmp_path / "resumed" / CHECKPOINT_FILE, weights_only=True)
    assert resumed["state"]["resumed_from_epoch"] == pytest.approx(1 + 1 / 3)
    assert resumed["state"]["epoch_losses"] == straight["state"]["epoch_losses"]
    assert_same_weights(resumed, straight)
