"""Image folders too large for memory, read and decoded off the training loop (SimCLR §3 trains on ImageNet).

An in-memory dataset is decoded once into uint8 N×3×S×S (`ablate.data.folder`); ImageNet-1k at the
paper's 224 px would need ~190 GB that way. A streamed split is an `ImageFiles`: paths and labels
only. Each training step's images are read and decoded by torch DataLoader worker processes on
the CPU (persistent across epochs, pinned memory on CUDA), while the device trains on the step before.

What a worker does with one image (`decode_crops`):

1. read the file and its header (size) with PIL;
2. draw the image's random resized crops with the run's own `Crop` operator (area in scale, aspect
   log-uniform in ratio, 10 tries, torchvision's fallback, flip p = 0.5: SimCLR Appendix A) from
   a generator seeded by (run seed, epoch, index) alone, so a batch does not depend on which worker
   made it, and a run resumed mid-epoch gets the same crops as one never interrupted;
3. decode at a reduced size where that loses nothing: libjpeg can decode at 1/2, 1/4, 1/8 of the size
   from the DCT coefficients (PIL's ``draft``), which skips most of the inverse DCT and colour
   conversion; it is used only when every crop of the image keeps at least S pixels on each side
   after the reduction, so nothing is upsampled that a full decode would have had. Otherwise the
   JPEG is decoded in full by ``torchvision.io.decode_jpeg`` (libjpeg-turbo without PIL's per-image
   Python work), other formats by PIL;
4. take each crop from the decoded image, the crop's box rounded to whole pixels of the full image
   as torchvision's RandomResizedCrop does, resized to S×S with antialiasing (the crop is usually
   larger than S), mirrored where its flip says. A reduced decode gets the same boxes divided by its
   factor (fractional pixels, resampled by PIL), so both decodes sample the same points.

How the method learns that its crops were taken already: the ViewMaker names the crop the loader
must take (`ViewMaker.worker_crop`): the shared base crop under one_branch (SimCLR §3.1: one crop
per image), or, under both_branches, the pipeline's first operator when it is ``crop`` (one crop per
view). A batch of such crops is B×K×3×S×S (K crops per image); given a 5-dimensional batch, the
ViewMaker applies everything but that crop. Where no crop is taken in the worker (both_branches whose
pipeline does not start with ``crop``; one_branch with ``base_crop: false``), the worker gives the
image resized and centre-cropped exactly as the in-memory folder does (`ablate.data.folder.decode_one`)
and the device does the rest as it does in memory. The in-memory path is untouched.

On W processes (`ablate.distributed`) each rank's loader reads and decodes only its rows of every global
batch (`StreamedBatches`'s `rows`: the same `rank_slice` the in-memory path takes), so no file is decoded twice;
its crops are those one process takes of the same images, being seeded by (seed, epoch, index) alone.

Evaluation (linear probe, kNN) reads the same centre crops in one pass (`CentreCrops.batches`),
so its features equal the in-memory path's for the same images.

Memory: a worker holds one image at a time, the loader at most ``prefetch_factor`` batches per
worker, so resident memory stays flat over an epoch (tests/data/test_stream.py measures it).

When a folder streams (`streams`): ``dataset.stream: true``, or ``auto`` when its decoded size
(images × 3 × S², uint8) is above the memory budget: ABLATE_STREAM_BUDGET_GB when set, else half
of the memory available now: the host's (MemAvailable), and on a CUDA run the GPU's free memory
too, since the in-memory path keeps the whole training set on the device. Half leaves room for the
model, activations and the views.

On CUDA, with ABLATE_STREAM_GPU_DECODE=1, the workers only read each JPEG and draw its crops; the
batch's JPEGs are then decoded together by nvJPEG (``torchvision.io.decode_jpeg(device="cuda")``) and
cropped on the GPU (`gpu_crops`); files that are not JPEGs are still decoded by the workers. It is
off by default because no GPU was at hand to test it when it was written: tests/data/test_stream.py
has a CUDA test of it, skipped without one.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms.v2 import functional as F

from ablate.data import DatasetSplits, DatasetUnavailable, per_class_sample, subset_index
from ablate.settings import load_settings

if TYPE_CHECKING:
    from ablate.augment.crop import Crop
    from ablate.augment.views import WorkerCrop
    from ablate.config import DatasetSpec

BUDGET_FRACTION = 0.5  # of the memory available now: the rest is for the model, activations, views
JPEG_MAGIC = b"\xff\xd8"
REDUCTIONS = (8, 4, 2)  # the DCT scalings libjpeg offers through PIL's draft, largest first
PREFETCH_BATCHES = 2  # per worker (DataLoader's prefetch_factor): bounded, so memory stays flat
MAX_WORKERS = 16


# ---------------------------------------------------------------------------------- what streams


@dataclass(frozen=True)
class ImageFiles:
    """A split as files: what a streamed run holds instead of decoded images."""

    root: Path
    paths: tuple[str, ...]  # relative to root
    labels: torch.Tensor  # int64, N
    image_size: int  # S: the side of every crop and centre crop

    def __len__(self) -> int:
        return len(self.paths)

    def select(self, index: torch.Tensor) -> ImageFiles:
        """The files at `index` (in that order)."""
        return replace(self, paths=tuple(self.paths[i] for i in index.tolist()), labels=self.labels[index])

    @property
    def images(self) -> CentreCrops:
        """The centre crops, decoded when read (for evaluation, the kNN monitor, previews)."""
        return CentreCrops(self)


class CentreCrops:
    """The split's images as the in-memory folder decodes them (shorter side to S, centre crop), on demand.

    Indexing (an int, a slice, an index tensor or list) decodes those images now; `batches` reads
    them all in order with DataLoader workers, once (evaluation's single pass).
    """

    def __init__(self, files: ImageFiles) -> None:
        self.files = files

    def __len__(self) -> int:
        return len(self.files)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        side = self.files.image_size
        return (len(self.files), 3, side, side)

    def __getitem__(self, key: int | slice | torch.Tensor | Sequence[int]) -> torch.Tensor:
        if isinstance(key, int):
            return centre_crop(self.files.root / self.files.paths[key], self.files.image_size)
        index = range(len(self))[key] if isinstance(key, slice) else torch.as_tensor(key).flatten().tolist()
        side = self.files.image_size
        out = torch.empty((len(index), 3, side, side), dtype=torch.uint8)
        for row, i in enumerate(index):
            out[row] = centre_crop(self.files.root / self.files.paths[i], side)
        return out

    def to(self, device: torch.device | str) -> torch.Tensor:
        """Every image decoded into one uint8 tensor on `device`, for code that needs a split whole (e.g. SimCLR's
        contrastive task on the test set); refused, with the sizes, when the split is above the memory budget."""
        needed, budget = decoded_bytes(len(self), self.files.image_size), memory_budget_bytes()
        if needed > budget:
            raise DatasetUnavailable(f"a streamed split of {len(self)} images ({needed / 1e9:.1f} GB decoded) cannot be held "
                                     f"in memory whole (budget {budget / 1e9:.1f} GB, ABLATE_STREAM_BUDGET_GB)")
        side = self.files.image_size
        whole = torch.empty((len(self), 3, side, side), dtype=torch.uint8)
        start = 0
        for batch in self.batches(256):
            whole[start : start + len(batch)] = batch
            start += len(batch)
        return whole.to(device)

    def batches(self, batch_size: int, workers: int | None = None, pin_memory: bool = False) -> Iterator[torch.Tensor]:
        """uint8 B×3×S×S batches of every image, in order, decoded by `workers` processes."""
        workers = stream_workers() if workers is None else workers
        loader = DataLoader(
            CentreCropDataset(self.files), batch_size=batch_size, shuffle=False, num_workers=workers,
            pin_memory=pin_memory, prefetch_factor=PREFETCH_BATCHES if workers else None,
        )
        yield from loader


def streams(spec: DatasetSpec, images: int) -> bool:
    """Whether the folder of `images` files is streamed: dataset.stream, or under auto its decoded size against the budget."""
    if spec.stream != "auto":
        return bool(spec.stream)
    return decoded_bytes(images, spec.image_size) > memory_budget_bytes()


def decoded_bytes(images: int, image_size: int) -> int:
    """Bytes the in-memory path needs for `images` images of S×S (uint8, 3 channels)."""
    return images * 3 * image_size * image_size


def memory_budget_bytes() -> int:
    """ABLATE_STREAM_BUDGET_GB, else BUDGET_FRACTION of the memory available now (host, and the GPU on a CUDA run)."""
    settings = load_settings()
    if settings.stream_budget_gb is not None:
        return int(settings.stream_budget_gb * 1e9)
    available = host_available_bytes()
    on_cuda = settings.device.startswith("cuda") if settings.device else torch.cuda.is_available()  # as ablate.run.pick_device
    if on_cuda:
        device = torch.device(settings.device or "cuda")
        available = min(available, torch.cuda.mem_get_info(device)[0])
    return int(BUDGET_FRACTION * available)


def host_available_bytes() -> int:
    """MemAvailable of /proc/meminfo (free + reclaimable cache); sysconf's free pages where there is no /proc."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def stream_workers() -> int:
    """DataLoader worker processes: ABLATE_STREAM_WORKERS, else one per core this process may use (at most 16),
    shared by the ranks of a run on this machine (LOCAL_WORLD_SIZE, set for each rank by ablate.launch and by
    submitit on SLURM): W ranks of a machine together start about as many workers as it has cores."""
    chosen = load_settings().stream_workers
    if chosen is not None:
        return chosen
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    local_ranks = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    return max(1, min(MAX_WORKERS, cores // max(1, local_ranks)))


# ------------------------------------------------------------------------------- splits of files


def streamed_splits(spec: DatasetSpec, root: Path, classes: list[str], files: list[tuple[str, int, bool]],
                    test_fraction: float | None) -> DatasetSplits:
    """The folder's splits as files, chosen exactly as the in-memory folder chooses them (`ablate.data.folder.load`):
    the given test files, or per class a seeded `test_fraction` of them; then the seeded train/test subsets."""
    labels = torch.tensor([label for _, label, _ in files], dtype=torch.int64)
    is_test = torch.tensor([test for _, _, test in files], dtype=torch.bool)
    if test_fraction is not None:
        is_test = torch.zeros(len(files), dtype=torch.bool)
        is_test[per_class_sample(labels, lambda n: int(test_fraction * n + 0.5), spec.seed)] = True
    every = ImageFiles(root, tuple(rel for rel, _, _ in files), labels, spec.image_size)
    train = every.select(torch.nonzero(~is_test).flatten())
    test = every.select(torch.nonzero(is_test).flatten())
    train = train.select(subset_index(len(train), spec.train_size, spec.seed))
    test = test.select(subset_index(len(test), spec.test_size, spec.seed))
    return DatasetSplits(pretrain=train, train=train, test=test, classes=classes)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------- decoding


def crop_seed(run_seed: int, epoch: int, index: int) -> int:
    """The seed of one image's crops in one epoch: numpy's SeedSequence mixes the three into 63 well-spread bits."""
    return int(np.random.SeedSequence([run_seed, epoch, index]).generate_state(1, np.uint64)[0] >> np.uint64(1))


def centre_crop(path: Path, side: int) -> torch.Tensor:
    """The in-memory folder's decoding of one file (shorter side to S, centre crop): the same function, so the same pixels."""
    from ablate.data.folder import decode_one  # local import: folder imports this module

    return decode_one(path, side)


def reduction(boxes: torch.Tensor, height: int, width: int, side: int) -> int:
    """The largest DCT scaling (8, 4, 2; else 1) after which every crop still spans at least `side` pixels each way."""
    smallest = float(torch.minimum(boxes[:, 2] * width, boxes[:, 3] * height).min())
    for factor in REDUCTIONS:
        if smallest / factor >= side:
            return factor
    return 1


def decode_full(data: bytes, path: Path) -> torch.Tensor:
    """uint8 3×H×W RGB: JPEGs by libjpeg-turbo through torchvision, anything else (or a JPEG it refuses) by PIL."""
    if data[:2] == JPEG_MAGIC:
        try:
            return decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
        except RuntimeError:
            pass  # e.g. a JPEG extension on another format (ImageNet has a PNG and CMYK files named .JPEG)
    return pil_rgb(Image.open(io.BytesIO(data)), path)


def pil_rgb(image: Image.Image, path: Path) -> torch.Tensor:
    """A PIL image decoded to uint8 3×H×W RGB."""
    return torch.from_numpy(np.array(decoded_rgb(image, path))).permute(2, 0, 1)


def decoded_rgb(image: Image.Image, path: Path) -> Image.Image:
    """The opened image decoded, in RGB (grey, palette, CMYK and RGBA become RGB, as torchvision's pil_loader)."""
    try:
        return image.convert("RGB")
    except (OSError, ValueError, SyntaxError) as err:  # PIL's errors for truncated / unknown files
        raise DatasetUnavailable(f"cannot decode {path} ({err}); remove or replace the file") from None


@dataclass(frozen=True)
class SampledCrops:
    """One file read, its crops drawn: everything but the decoding (which the CPU or, on CUDA, nvJPEG does)."""

    data: bytes
    header: Image.Image  # opened, not decoded
    boxes: list[tuple[int, int, int, int]]  # (top, left, height, width) in pixels of the full image
    flips: list[bool]
    factor: int  # DCT scaling a CPU decode may use (1: full size)


def sample_crops(path: Path, crop: Crop, count: int, side: int, generator: torch.Generator) -> SampledCrops:
    """Read one file and its header, draw its `count` crops (module docstring, steps 1-3)."""
    data = path.read_bytes()
    try:
        header = Image.open(io.BytesIO(data))
    except (OSError, ValueError, SyntaxError) as err:
        raise DatasetUnavailable(f"cannot decode {path} ({err}); remove or replace the file") from None
    width, height = header.size
    params = crop.sample(count, height, width, generator, torch.device("cpu"))
    boxes = [pixel_box(box, height, width) for box in params["box"].tolist()]
    factor = reduction(params["box"], height, width, side) if header.format == "JPEG" else 1
    return SampledCrops(data, header, boxes, params["flip"].tolist(), factor)


def decode_crops(path: Path, crop: Crop, count: int, side: int, generator: torch.Generator) -> torch.Tensor:
    """uint8 count×3×S×S: `count` random resized crops of one file (see the module docstring, steps 1-4)."""
    return cpu_crops(sample_crops(path, crop, count, side, generator), side, path)


def cpu_crops(sampled: SampledCrops, side: int, path: Path) -> torch.Tensor:
    """Decode on the CPU (at 1/factor of the size where the crops allow) and take the crops."""
    if sampled.factor == 1:
        return crops_of(decode_full(sampled.data, path), sampled.boxes, sampled.flips, side)
    width, height = sampled.header.size
    sampled.header.draft("RGB", (width // sampled.factor, height // sampled.factor))  # libjpeg scales while decoding
    return reduced_crops_of(sampled.header, sampled.factor, sampled.boxes, sampled.flips, side, path)


def crops_of(image: torch.Tensor, boxes: Sequence[tuple[int, int, int, int]], flips: Sequence[bool], side: int) -> torch.Tensor:
    """Each (top, left, height, width) pixel box of a 3×H×W image resized to S×S (antialiased), flipped where asked."""
    out = torch.empty((len(boxes), 3, side, side), dtype=torch.uint8, device=image.device)
    for k, ((top, left, box_height, box_width), flip) in enumerate(zip(boxes, flips, strict=True)):
        crop = F.resized_crop(image, top, left, box_height, box_width, [side, side], antialias=True)
        out[k] = crop.flip(-1) if flip else crop
    return out


def reduced_crops_of(image: Image.Image, factor: int, boxes: Sequence[tuple[int, int, int, int]], flips: Sequence[bool],
                     side: int, path: Path) -> torch.Tensor:
    """`crops_of` for an image decoded at 1/factor of its size: the same full-resolution pixel boxes, divided
    by the factor. The quotients are fractional, so PIL's resize, which takes a fractional box (torchvision's
    takes whole pixels only), resamples them exactly where a full decode would have been sampled."""
    rgb = decoded_rgb(image, path)
    out = torch.empty((len(boxes), 3, side, side), dtype=torch.uint8)
    for k, ((top, left, box_height, box_width), flip) in enumerate(zip(boxes, flips, strict=True)):
        box = (left / factor, top / factor, (left + box_width) / factor, (top + box_height) / factor)
        crop = rgb.resize((side, side), Image.Resampling.BILINEAR, box=box)
        if flip:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        out[k] = torch.from_numpy(np.array(crop)).permute(2, 0, 1)
    return out


def pixel_box(box: Sequence[float], height: int, width: int) -> tuple[int, int, int, int]:
    """(top, left, height, width) in whole pixels of a fractional (x0, y0, w, h) box, at least one pixel, inside the image."""
    x0, y0, w, h = box
    left = min(width - 1, max(0, round(x0 * width)))
    top = min(height - 1, max(0, round(y0 * height)))
    box_width = min(width - left, max(1, round(w * width)))
    box_height = min(height - top, max(1, round(h * height)))
    return top, left, box_height, box_width


# --------------------------------------------------------------------------- datasets and loader


class CropDataset(Dataset):
    """Item (epoch, index) → (crops, label): the image's worker crops in that epoch, a pure function of the key.

    Without a worker crop, the centre crop as the in-memory folder makes it (3×S×S). With
    `gpu_decode`, a JPEG's item is its `JpegCrops` instead (bytes and boxes: nvJPEG decodes it later).
    """

    def __init__(self, files: ImageFiles, worker_crop: WorkerCrop | None, seed: int, gpu_decode: bool = False) -> None:
        self.files, self.worker_crop, self.seed, self.gpu_decode = files, worker_crop, seed, gpu_decode

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor | JpegCrops, torch.Tensor]:
        epoch, index = key
        path = self.files.root / self.files.paths[index]
        label = self.files.labels[index]
        side = self.files.image_size
        if self.worker_crop is None:
            return centre_crop(path, side), label
        generator = torch.Generator().manual_seed(crop_seed(self.seed, epoch, index))
        sampled = sample_crops(path, self.worker_crop.crop, self.worker_crop.count, side, generator)
        if self.gpu_decode and sampled.data[:2] == JPEG_MAGIC:
            return JpegCrops(torch.frombuffer(bytearray(sampled.data), dtype=torch.uint8), sampled.boxes, sampled.flips), label
        return cpu_crops(sampled, side, path), label


class CentreCropDataset(Dataset):
    """Item index → the centre crop of that file (evaluation's images)."""

    def __init__(self, files: ImageFiles) -> None:
        self.files = files

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> torch.Tensor:
        return centre_crop(self.files.root / self.files.paths[index], self.files.image_size)


class EpochBatches(Sampler[list[tuple[int, int]]]):
    """The keys of each step of the current epoch from a given step on; the loop sets the epoch before iterating.

    One sampler for the loader's whole life, so that its workers persist across epochs; the order is
    the loop's own permutation (drawn from the training generator and kept in the checkpoint).
    `rows`: the keys of each global batch this process reads (all; on W processes its
    `ablate.distributed.rank_slice`), so a rank's workers never read another rank's files.
    """

    def __init__(self, batch_size: int, rows: slice = slice(None)) -> None:
        self.batch_size, self.rows = batch_size, rows
        self.epoch, self.order, self.first_step = 0, torch.empty(0, dtype=torch.int64), 0

    def set_epoch(self, epoch: int, order: torch.Tensor, first_step: int) -> None:
        self.epoch, self.order, self.first_step = epoch, order.cpu(), first_step

    def __len__(self) -> int:
        return len(self.order) // self.batch_size - self.first_step

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for step in range(self.first_step, len(self.order) // self.batch_size):
            chunk = self.order[step * self.batch_size : (step + 1) * self.batch_size][self.rows].tolist()
            yield [(self.epoch, index) for index in chunk]


class StreamedBatches:
    """Each step's (images, labels) on the device, read by persistent DataLoader workers.

    images: uint8 B×K×3×S×S (K worker crops per image) or B×3×S×S (centre crops, no worker crop).
    `gpu_decode` (CUDA only; default: ABLATE_STREAM_GPU_DECODE): the workers read the JPEGs and draw
    their crops, and the batch's JPEGs are decoded together by nvJPEG on the device (`gpu_crops`).
    `rows`: this process's rows of each global batch of `batch_size` (`ablate.distributed.rank_slice` on
    W processes): only those files are read and decoded, and B is the slice's length. Their crops are
    those one process draws for the same images, since an image's crops depend on (seed, epoch, index) alone.
    """

    def __init__(self, files: ImageFiles, worker_crop: WorkerCrop | None, batch_size: int, seed: int,
                 device: torch.device, workers: int | None = None, gpu_decode: bool | None = None,
                 rows: slice = slice(None)) -> None:
        workers = stream_workers() if workers is None else workers
        gpu_decode = load_settings().stream_gpu_decode if gpu_decode is None else gpu_decode
        self.device, self.side = device, files.image_size
        self.gpu_decode = gpu_decode and device.type == "cuda" and worker_crop is not None
        self.sampler = EpochBatches(batch_size, rows)
        self.loader = DataLoader(
            CropDataset(files, worker_crop, seed, self.gpu_decode), batch_sampler=self.sampler, num_workers=workers,
            collate_fn=collate_crops, pin_memory=device.type == "cuda", persistent_workers=workers > 0,
            prefetch_factor=PREFETCH_BATCHES if workers else None,
            generator=torch.Generator().manual_seed(seed),  # the loader's own seed draw: torch's global RNG stays untouched
        )

    def epoch(self, epoch: int, order: torch.Tensor, first_step: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The batches of steps first_step, first_step + 1, ... of `epoch` under `order`, on the device."""
        self.sampler.set_epoch(epoch, order, first_step)
        for images, labels in self.loader:
            if isinstance(images, list):  # JPEGs left to nvJPEG, beside crops a worker decoded
                images = gpu_crops(images, self.side, self.device)
            yield images.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True)


# ------------------------------------------------------------------------------------ CUDA decode


@dataclass(frozen=True)
class JpegCrops:
    """A JPEG's bytes and its drawn crops, for nvJPEG to decode on the device."""

    data: torch.Tensor  # uint8, the file's bytes
    boxes: list[tuple[int, int, int, int]]  # (top, left, height, width) in pixels
    flips: list[bool]


def collate_crops(items: list[tuple[torch.Tensor | JpegCrops, torch.Tensor]]) -> tuple[torch.Tensor | list, torch.Tensor]:
    """Stack the crops of a batch; a batch holding JPEGs left to nvJPEG stays a list (see `gpu_crops`)."""
    images = [image for image, _ in items]
    labels = torch.stack([label for _, label in items])
    if any(isinstance(image, JpegCrops) for image in images):
        return images, labels
    return torch.stack(images), labels


def gpu_crops(items: list[torch.Tensor | JpegCrops], side: int, device: torch.device) -> torch.Tensor:
    """uint8 B×K×3×S×S on `device`: the batch's JPEGs decoded in one nvJPEG call, cropped and resized there;
    crops a worker decoded already (files that are not JPEGs) copied over."""
    jpegs = [item for item in items if isinstance(item, JpegCrops)]
    decoded = iter(decode_jpeg([item.data for item in jpegs], mode=ImageReadMode.RGB, device=device))
    crops = []
    for item in items:
        if isinstance(item, JpegCrops):
            crops.append(crops_of(next(decoded), item.boxes, item.flips, side))
        else:
            crops.append(item.to(device, non_blocking=True))
    return torch.stack(crops)
