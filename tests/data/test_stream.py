"""Streamed image folders (ablate.data.stream): crops against images decoded by hand, labels, seeds,
resume mid-epoch, the memory budget, flat memory, and evaluation features equal to the in-memory path's."""

from __future__ import annotations

import gc
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ablate.augment import ViewMaker
from ablate.augment.crop import Crop
from ablate.config import AugmentSpec, DatasetSpec, RunSpec
from ablate.data import DatasetUnavailable, ImageData, load_dataset
from ablate.data import stream
from ablate.data.stream import CropDataset, ImageFiles, StreamedBatches, crop_seed, decode_crops, reduction
from ablate.evaluate.features import extract_features
from ablate.methods.train import InterruptedForTest, device_settings, train
from ablate.models import build_encoder
from ablate.run import build_trainable, seed_everything

pytestmark = pytest.mark.usefixtures("one_torch_thread")
CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def _private_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ABLATE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("ABLATE_STREAM_WORKERS", "0")  # a test that wants worker processes asks for them
    monkeypatch.delenv("ABLATE_STREAM_BUDGET_GB", raising=False)


def smooth_image(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """H×W×3 uint8 with structure at every scale (gradients + a few blobs), so a misplaced crop shows."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    phase = rng.uniform(0, 2 * np.pi, 3)
    channels = [127 + 120 * np.sin(x / width * (2 + c) * np.pi + y / height * (3 - c) * np.pi + phase[c]) for c in range(3)]
    return np.clip(np.stack(channels, axis=2), 0, 255).astype(np.uint8)


def write_jpegs(root: Path, layout: dict[str, dict[str, int]], sizes: tuple[int, int] = (40, 72), seed: int = 0) -> None:
    """root/<part>/<class>/<i>.JPEG, quality 90, sides drawn in `sizes`."""
    rng = np.random.default_rng(seed)
    for part, classes in layout.items():
        for name, count in classes.items():
            for i in range(count):
                width, height = (int(v) for v in rng.integers(*sizes, 2))
                path = root / part / name / f"{name}_{i}.JPEG"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(smooth_image(rng, width, height)).save(path, quality=90)


IMAGENET_LAYOUT = {"train": {"n01": 10, "n02": 8, "n03": 6}, "val": {"n01": 3, "n02": 3, "n03": 2}}


@pytest.fixture
def imagenet_root(tmp_path: Path) -> Path:
    root = tmp_path / "imagenet"
    write_jpegs(root, IMAGENET_LAYOUT)
    return root


def streamed(root: Path, image_size: int = 16, **fields) -> DatasetSpec:
    return DatasetSpec(name="imagenet", root=str(root), image_size=image_size, stream=True, **fields)


# ------------------------------------------------------------------------------- crops by hand


def hand_crops(path: Path, crop: Crop, count: int, side: int, seed: int, epoch: int, index: int) -> torch.Tensor:
    """The crops written out independently: full PIL decode, the box in whole pixels, PIL's antialiased bilinear resize."""
    image = Image.open(path).convert("RGB")
    width, height = image.size
    generator = torch.Generator().manual_seed(crop_seed(seed, epoch, index))
    params = crop.sample(count, height, width, generator, CPU)
    out = []
    for (x0, y0, w, h), flip in zip(params["box"].tolist(), params["flip"].tolist(), strict=True):
        left, top = round(x0 * width), round(y0 * height)
        right, bottom = left + max(1, round(w * width)), top + max(1, round(h * height))
        piece = image.resize((side, side), Image.BILINEAR, box=(left, top, min(right, width), min(bottom, height)))
        array = np.asarray(piece)[:, ::-1] if flip else np.asarray(piece)
        out.append(torch.from_numpy(array.copy()).permute(2, 0, 1))
    return torch.stack(out)


def mean_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().mean())


def test_crops_equal_images_decoded_by_hand_with_the_same_crop_params(imagenet_root: Path) -> None:
    data = load_dataset(streamed(imagenet_root, image_size=16))
    crop = Crop((0.08, 1.0), (3 / 4, 4 / 3), 0.5)
    views = ViewMaker.from_operators("both_branches", [crop])
    dataset = CropDataset(data.pretrain, views.worker_crop(2), seed=7)
    for index in range(6):
        crops, label = dataset[(3, index)]
        path = data.pretrain.root / data.pretrain.paths[index]
        assert crops.shape == (2, 3, 16, 16) and crops.dtype == torch.uint8
        assert int(label) == int(data.pretrain.labels[index])
        by_hand = hand_crops(path, crop, 2, 16, seed=7, epoch=3, index=index)
        assert mean_abs(crops, by_hand) < 2.0  # torchvision's and PIL's antialiased resizes differ by rounding only
        # The same image under another epoch's crops is far off: the comparison can tell crops apart.
        assert mean_abs(crops, hand_crops(path, crop, 2, 16, seed=7, epoch=4, index=index)) > 10.0


def test_reduced_jpeg_decoding_is_used_only_when_every_crop_keeps_its_pixels(tmp_path: Path) -> None:
    path = tmp_path / "big.JPEG"
    Image.fromarray(smooth_image(np.random.default_rng(1), 320, 256)).save(path, quality=90)
    crop = Crop((0.5, 1.0), (3 / 4, 4 / 3), 0.5)
    generator = torch.Generator().manual_seed(crop_seed(0, 0, 0))
    box = crop.sample(2, 256, 320, generator, CPU)["box"]
    smallest = float(torch.minimum(box[:, 2] * 320, box[:, 3] * 256).min())
    factor = reduction(box, 256, 320, side=16)
    assert factor == 8 and smallest / 8 >= 16  # 16 px out of crops of >= 128 px: libjpeg decodes at 1/8
    assert reduction(box, 256, 320, side=int(smallest) + 1) == 1  # one pixel more than the crop has: full decode
    reduced = decode_crops(path, crop, 2, 16, torch.Generator().manual_seed(crop_seed(0, 0, 0)))
    full = hand_crops(path, crop, 2, 16, seed=0, epoch=0, index=0)
    assert mean_abs(reduced, full) < 3.0  # DCT-domain scaling then resizing ≈ resizing the full decode


# ------------------------------------------------------------------------- labels, order, seeds


def every_batch(loader: StreamedBatches, epoch: int, order: torch.Tensor, first_step: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(images.clone(), labels.clone()) for images, labels in loader.epoch(epoch, order, first_step)]


def test_batches_follow_the_order_with_their_labels_and_replay_per_seed(imagenet_root: Path) -> None:
    files = load_dataset(streamed(imagenet_root)).pretrain
    assert files.labels.tolist() == [0] * 10 + [1] * 8 + [2] * 6  # sorted wnids, sorted files
    crop = ViewMaker.from_operators("one_branch", [], base=Crop()).worker_crop(2)
    order = torch.randperm(len(files), generator=torch.Generator().manual_seed(3))
    batches = every_batch(StreamedBatches(files, crop, 5, seed=1, device=CPU, workers=0), 0, order)
    assert len(batches) == 4  # 24 images, batch 5: the last partial batch is dropped
    assert torch.cat([labels for _, labels in batches]).tolist() == files.labels[order[:20]].tolist()
    assert batches[0][0].shape == (5, 1, 3, 16, 16)
    in_two_workers = every_batch(StreamedBatches(files, crop, 5, seed=1, device=CPU, workers=2), 0, order)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches, in_two_workers, strict=True))  # whichever worker read it
    other_seed = every_batch(StreamedBatches(files, crop, 5, seed=2, device=CPU, workers=0), 0, order)
    other_epoch = every_batch(StreamedBatches(files, crop, 5, seed=1, device=CPU, workers=0), 1, order)
    assert not torch.equal(batches[0][0], other_seed[0][0]) and not torch.equal(batches[0][0], other_epoch[0][0])
    from_step_2 = every_batch(StreamedBatches(files, crop, 5, seed=1, device=CPU, workers=0), 0, order, first_step=2)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches[2:], from_step_2, strict=True))


def test_without_a_worker_crop_the_loader_gives_the_in_memory_images(imagenet_root: Path) -> None:
    in_memory = load_dataset(streamed(imagenet_root).model_copy(update={"stream": False}))
    files = load_dataset(streamed(imagenet_root)).pretrain
    order = torch.arange(len(files))
    batches = every_batch(StreamedBatches(files, None, 4, seed=0, device=CPU, workers=0), 0, order)
    assert torch.equal(torch.cat([images for images, _ in batches]), in_memory.pretrain.images)  # B×3×S×S, same pixels


# ----------------------------------------------------------------------- the views on the device


def test_views_do_not_crop_again_what_the_loader_cropped() -> None:
    crops = torch.randint(0, 256, (4, 2, 3, 8, 8), dtype=torch.uint8)
    plain = AugmentSpec(protocol="both_branches", ops=["crop", "color"], color_p=0.0, grayscale_p=0.0)
    maker = ViewMaker(plain)
    assert maker.worker_crop(2).count == 2 and maker.worker_crop(1).count == 1
    view1, view2 = maker.pair(crops, torch.Generator().manual_seed(0))
    assert torch.equal(view1, crops[:, 0].float() / 255) and torch.equal(view2, crops[:, 1].float() / 255)
    one_branch = ViewMaker(AugmentSpec(protocol="one_branch", ops=["color"], color_p=0.0, grayscale_p=0.0))
    assert one_branch.worker_crop(2).count == 1 and one_branch.worker_crop(2).crop is one_branch.base
    view1, view2 = one_branch.pair(crops[:, :1], torch.Generator().manual_seed(0))
    assert torch.equal(view2, crops[:, 0].float() / 255) and torch.equal(view1, view2)  # the shared crop, as taken
    assert torch.equal(maker.single(crops[:, :1]), crops[:, 0].float() / 255)
    assert ViewMaker(AugmentSpec(protocol="both_branches", ops=["color", "crop"])).worker_crop(2) is None
    assert ViewMaker(AugmentSpec(protocol="one_branch", ops=["color"], base_crop=False)).worker_crop(2) is None
    with pytest.raises(ValueError, match="expected 2 loader crop"):
        maker.pair(crops[:, :1])


# ---------------------------------------------------------------------------- resume mid-epoch


def tiny_run(root: Path) -> RunSpec:
    return RunSpec.model_validate({
        "dataset": {"name": "imagenet", "root": str(root), "image_size": 16, "stream": True},
        "model": {"arch": "small_cnn"}, "method": {"name": "simclr", "temperature": 0.5},
        "train": {"epochs": 2, "batch_size": 8, "optimizer": "adamw", "lr": 0.01, "warmup_epochs": 0},
        "augment": {"protocol": "both_branches", "ops": ["crop", "color"]}, "seed": 4,
    })


def trained(spec: RunSpec, folder: Path, stop_after_steps: int | None = None) -> dict[str, torch.Tensor]:
    seed_everything(spec.seed)
    data = load_dataset(spec.dataset)
    settings = device_settings(spec, CPU)
    model, step = build_trainable(spec, len(data.classes), settings)
    train(model, step, model.pretraining_data(data), spec, settings, folder, stop_after_steps=stop_after_steps)
    return {name: value.clone() for name, value in model.state_dict().items()}


def test_resume_mid_epoch_equals_an_uninterrupted_run(imagenet_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ABLATE_STREAM_WORKERS", "1")
    spec = tiny_run(imagenet_root)  # 24 images, batch 8: 3 steps an epoch, 6 in all
    whole = trained(spec, tmp_path / "whole")
    with pytest.raises(InterruptedForTest):
        trained(spec, tmp_path / "resumed", stop_after_steps=4)  # stopped after the first step of epoch 2
    resumed = trained(spec, tmp_path / "resumed")
    assert all(torch.equal(whole[name], resumed[name]) for name in whole)
    fresh = trained(spec.model_copy(update={"seed": 5}), tmp_path / "other-seed")
    assert not all(torch.equal(whole[name], fresh[name]) for name in whole)  # the comparison can fail


# ------------------------------------------------------------------------------ the memory budget


def test_auto_streams_exactly_when_the_decoded_size_is_above_the_budget(imagenet_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    auto = streamed(imagenet_root, image_size=16).model_copy(update={"stream": "auto"})
    decoded = 32 * 3 * 16 * 16  # every file (24 train + 8 val) as uint8 3×16×16
    assert stream.decoded_bytes(32, 16) == decoded == 24_576
    monkeypatch.setenv("ABLATE_STREAM_BUDGET_GB", str(decoded / 1e9))  # exactly the size: it fits
    assert isinstance(load_dataset(auto).pretrain, ImageData)
    monkeypatch.setenv("ABLATE_STREAM_BUDGET_GB", str((decoded - 1) / 1e9))  # one byte short
    assert isinstance(load_dataset(auto).pretrain, ImageFiles)
    assert isinstance(load_dataset(auto.model_copy(update={"stream": False})).pretrain, ImageData)
    monkeypatch.setenv("ABLATE_STREAM_BUDGET_GB", "1000")
    assert isinstance(load_dataset(auto.model_copy(update={"stream": True})).pretrain, ImageFiles)
    monkeypatch.delenv("ABLATE_STREAM_BUDGET_GB")
    available = stream.host_available_bytes()
    assert 0 < stream.memory_budget_bytes() <= available // 2 + 1 or torch.cuda.is_available()


def test_stream_is_refused_for_datasets_held_in_memory() -> None:
    with pytest.raises(ValueError, match="cannot stream"):
        DatasetSpec(name="cifar10", stream=True)
    assert DatasetSpec(name="cifar10", stream="auto").stream == "auto"


# --------------------------------------------------------------------------------- flat memory


def resident_kib(pids: list[int]) -> int:
    """VmRSS of the given processes (this one and the loader's workers), KiB."""
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def worker_pids() -> list[int]:
    children = Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children")
    return [int(pid) for pid in children.read_text().split()] if children.exists() else []


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads resident memory from /proc")
def test_resident_memory_stays_flat_over_hundreds_of_steps(tmp_path: Path) -> None:
    root = tmp_path / "mem"
    write_jpegs(root, {"train": {"a": 12, "b": 12}, "val": {"a": 1, "b": 1}}, sizes=(64, 96))
    files = load_dataset(streamed(root, image_size=64)).pretrain
    crop = ViewMaker.from_operators("both_branches", [Crop()]).worker_crop(2)
    loader = StreamedBatches(files, crop, 8, seed=0, device=CPU, workers=1)
    order = torch.arange(len(files))
    readings = []
    for epoch in range(100):  # 3 steps an epoch: 300 steps of 8 × 2 crops of 3×64×64 (59 MB if all were kept)
        for images, _ in loader.epoch(epoch, order, 0):
            images.float().mean()  # use the batch as training would, then let it go
        if epoch in (15, 99):
            gc.collect()
            readings.append(resident_kib([os.getpid(), *worker_pids()]))
    assert readings[1] - readings[0] < 12 * 1024, f"resident memory grew from {readings[0]} to {readings[1]} KiB"


# ------------------------------------------------------------------------------------ evaluation


def test_evaluation_features_equal_the_in_memory_paths(imagenet_root: Path) -> None:
    spec = streamed(imagenet_root, image_size=16, train_size=15, test_size=10)
    files = load_dataset(spec)
    memory = load_dataset(spec.model_copy(update={"stream": False}))
    assert files.train.labels.tolist() == memory.train.labels.tolist()  # same seeded subsets
    assert files.test.labels.tolist() == memory.test.labels.tolist()
    torch.manual_seed(0)
    encoder = build_encoder(RunSpec().model, 16)
    for split in ("train", "test"):
        from_files = extract_features(encoder, getattr(files, split).images, CPU, batch_size=4)
        from_memory = extract_features(encoder, getattr(memory, split).images, CPU, batch_size=4)
        assert torch.equal(from_files, from_memory)
    assert torch.equal(files.test.images[torch.tensor([2, 0])], memory.test.images[torch.tensor([2, 0])])


# -------------------------------------------------------------------------------- the layouts


def test_imagenet_layout_and_its_errors(tmp_path: Path, imagenet_root: Path) -> None:
    data = load_dataset(streamed(imagenet_root))
    assert data.classes == ["n01", "n02", "n03"]
    assert len(data.train) == 24 and len(data.test) == 8 and data.pretrain is data.train
    assert data.test.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2]
    assert all(path.startswith("val/") for path in data.test.paths)
    flat = tmp_path / "raw"
    write_jpegs(flat, {"train": {"n01": 2}})
    (flat / "val").mkdir()
    Image.fromarray(smooth_image(np.random.default_rng(0), 20, 20)).save(flat / "val" / "ILSVRC2012_val_00000001.JPEG")
    with pytest.raises(DatasetUnavailable, match="valprep"):
        load_dataset(streamed(flat))


def test_a_folder_with_a_seeded_split_streams_the_same_images_as_in_memory(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    write_jpegs(root, {".": {"cat": 10, "dog": 5}})
    spec = DatasetSpec(name="folder", root=str(root), image_size=16, stream=True)
    files, memory = load_dataset(spec), load_dataset(spec.model_copy(update={"stream": False}))
    assert len(files.test) == 3 and files.test.labels.tolist() == memory.test.labels.tolist()  # round(0.2 n) per class
    assert torch.equal(files.train.images[:], memory.train.images)


def test_the_gpu_decode_path_on_the_cpu_equals_the_workers_crops(imagenet_root: Path) -> None:
    """Everything of ABLATE_STREAM_GPU_DECODE but nvJPEG itself: the workers' JPEG records, the mixed batch
    (a PNG among the JPEGs stays decoded by its worker), one batched decode_jpeg, the crops."""
    png = imagenet_root / "train" / "n01" / "n01_0.JPEG"
    Image.open(png).save(png, format="PNG")  # a PNG named .JPEG, as ImageNet has one
    files = load_dataset(streamed(imagenet_root, image_size=32)).pretrain
    crop = ViewMaker.from_operators("both_branches", [Crop()]).worker_crop(2)
    keys = [(0, index) for index in range(8)]
    on_workers = stream.collate_crops([CropDataset(files, crop, seed=3)[key] for key in keys])
    records, labels = stream.collate_crops([CropDataset(files, crop, seed=3, gpu_decode=True)[key] for key in keys])
    assert isinstance(records, list) and not isinstance(records[0], stream.JpegCrops)  # the PNG: decoded by its worker
    assert all(isinstance(record, stream.JpegCrops) for record in records[1:])
    batched = stream.gpu_crops(records, 32, CPU)
    assert batched.shape == on_workers[0].shape == (8, 2, 3, 32, 32) and torch.equal(labels, on_workers[1])
    assert mean_abs(batched, on_workers[0]) < 2.0  # a worker may decode at reduced size where the crop allows


@pytest.mark.skipif(not torch.cuda.is_available(), reason="nvJPEG decoding needs a CUDA device")
def test_gpu_decoding_matches_the_cpu_workers(imagenet_root: Path) -> None:
    files = load_dataset(streamed(imagenet_root, image_size=32)).pretrain
    crop = ViewMaker.from_operators("both_branches", [Crop()]).worker_crop(2)
    cuda, order = torch.device("cuda"), torch.arange(len(files))
    on_gpu = every_batch(StreamedBatches(files, crop, 8, seed=3, device=cuda, workers=1, gpu_decode=True), 0, order)
    on_cpu = every_batch(StreamedBatches(files, crop, 8, seed=3, device=cuda, workers=1, gpu_decode=False), 0, order)
    for (gpu_images, gpu_labels), (cpu_images, cpu_labels) in zip(on_gpu, on_cpu, strict=True):
        assert gpu_images.device.type == "cuda" and torch.equal(gpu_labels, cpu_labels)
        assert mean_abs(gpu_images.cpu(), cpu_images.cpu()) < 3.0  # nvJPEG's IDCT and upsampling differ by rounding


def test_the_ranks_of_a_machine_share_its_cores_for_workers(monkeypatch):
    monkeypatch.delenv("ABLATE_STREAM_WORKERS", raising=False)
    monkeypatch.setattr(stream.os, "sched_getaffinity", lambda pid: set(range(8)))
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert stream.stream_workers() == 8  # one process: a worker per core
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert stream.stream_workers() == 4  # two ranks here: 4 each, 8 in all
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "16")
    assert stream.stream_workers() == 1  # never none
    monkeypatch.setenv("ABLATE_STREAM_WORKERS", "3")
    assert stream.stream_workers() == 3  # asked for: as asked, on every rank
