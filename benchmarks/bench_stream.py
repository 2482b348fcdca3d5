"""Benchmark: ablate's streaming image-folder loader against torchvision's ImageFolder pipeline, in one process.

    python benchmarks/bench_stream.py [--folder /tmp/stream-bench/jpegs] [--images 5000] [--size 224]
                                      [--batch 256] [--workers 2] [--batches 8] [--repeats 3]
                                      [--out benchmarks/results/stream-cpu-2core.md] [--gpu-decode]

The folder is generated once (``--folder``; reused when it already holds ``--images`` files):
ImageNet-like JPEGs, sides drawn uniformly in 400-500 px, quality 90, smooth colour fields with a
dozen blobs and pixel noise (about 80 KB a file; ImageNet's training JPEGs average ~110 KB at about
400 × 350 px), in 10 class folders.

Pipelines, each a DataLoader with the same number of worker processes, batch size, and persistent
workers, over the same files in the same random order:

* ``torchvision ImageFolder`` + ``RandomResizedCrop(S)`` + ``RandomHorizontalFlip`` + ``ToTensor``:
  the ImageNet recipe of the PyTorch examples and of most SimCLR reimplementations (float32 batches);
* the same with ``PILToTensor`` (uint8 batches, as ablate's);
* ablate (`ablate.data.stream.StreamedBatches`): one random resized crop per image from the
  full-resolution file (the one_branch base crop, or the supervised view), uint8;
* with ``--gpu-decode`` (CUDA): ablate's stream with the JPEGs decoded by nvJPEG on the GPU, the workers only
  reading files and drawing crops; its batches are timed once they are on the GPU (the others stay on the CPU).

Throughput is images per second over ``--batches`` batches after one untimed batch per worker, the pipelines
timed round-robin ``--repeats`` times (a busy minute of a shared machine falls on all of them);
the median is the claim, the best repeat is shown too. Beside it, the CPU time (user + system, from
/proc) that the main process and the pipeline's own workers spent per image in the timed batches:
unlike images per second, it hardly depends on how much of a shared machine the benchmark got.
Memory is the resident set (VmRSS) of the main process and of the pipeline's workers, read from /proc
after every batch: the peak, the median per step, and the change from the first timed batch to the
last (flat memory: near zero). Last, a per-stage breakdown of both pipelines' CPU time per image, in
this process on one thread (`stage_breakdown`): where the time goes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from multiprocessing import Pool
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torchvision.transforms as T  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402
from torch.utils.data import DataLoader, Sampler  # noqa: E402
from torchvision.datasets import ImageFolder  # noqa: E402

from ablate.augment.crop import Crop  # noqa: E402
from ablate.augment.views import WorkerCrop  # noqa: E402
from ablate.bench import machine, say, write_text  # noqa: E402
from ablate.bench_common import load_average  # noqa: E402
from ablate.data.stream import ImageFiles, StreamedBatches  # noqa: E402

HERE = Path(__file__).resolve().parents[1]
CLASSES = 10


# ------------------------------------------------------------------------------ the JPEG folder


def one_jpeg(args: tuple[Path, int]) -> None:
    """An ImageNet-like JPEG: a smooth random colour field, a dozen ellipses, pixel noise; sides in [400, 500]."""
    path, seed = args
    rng = np.random.default_rng(seed)
    width, height = (int(v) for v in rng.integers(400, 501, 2))
    low = (rng.random((height // 32 + 2, width // 32 + 2, 3)) * 255).astype(np.uint8)
    image = Image.fromarray(low).resize((width, height), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        size = rng.integers(10, 200, 2)
        draw.ellipse([x0, y0, x0 + int(size[0]), y0 + int(size[1])], fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
    noisy = np.asarray(image).astype(np.int16) + rng.normal(0, 12, (height, width, 3)).astype(np.int16)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(path, quality=90)


def make_folder(root: Path, images: int) -> list[Path]:
    """root/c<k>/<i>.JPEG for i < images (class k = i mod 10); generated with one process per core, reused after."""
    paths = [root / f"c{i % CLASSES}" / f"{i:06d}.JPEG" for i in range(images)]
    missing = [(path, i) for i, path in enumerate(paths) if not path.exists()]
    if missing:
        say(f"generating {len(missing)} JPEGs in {root}")
        with Pool(os.cpu_count() or 1) as pool:
            pool.map(one_jpeg, missing, chunksize=32)
    return paths


# ------------------------------------------------------------------------------------ pipelines


class OrderBatches(Sampler[list[int]]):
    """Batches of indices of a fixed order, from a moving start (each timed run reads images not read just before)."""

    def __init__(self, order: torch.Tensor, batch_size: int) -> None:
        self.order, self.batch_size, self.first = order, batch_size, 0

    def __len__(self) -> int:
        return len(self.order) // self.batch_size

    def __iter__(self):
        steps = len(self.order) // self.batch_size
        for k in range(steps):
            step = (self.first + k) % steps
            yield self.order[step * self.batch_size : (step + 1) * self.batch_size].tolist()


class TorchvisionPipeline:
    """ImageFolder + RandomResizedCrop + RandomHorizontalFlip + ToTensor (or PILToTensor) in a DataLoader."""

    def __init__(self, root: Path, order: torch.Tensor, size: int, batch: int, workers: int, to_float: bool) -> None:
        transform = T.Compose([T.RandomResizedCrop(size), T.RandomHorizontalFlip(),
                               T.ToTensor() if to_float else T.PILToTensor()])
        self.sampler = OrderBatches(order, batch)
        self.loader = DataLoader(ImageFolder(str(root), transform=transform), batch_sampler=self.sampler,
                                 num_workers=workers, persistent_workers=True, prefetch_factor=2)

    def batches(self, start: int):
        self.sampler.first = start
        for images, _ in self.loader:
            yield images


class AblatePipeline:
    """ablate.data.stream.StreamedBatches with one crop per image (Crop(): SimCLR's scale and ratio, flip p = 0.5);
    with `gpu_decode`, on CUDA: the workers read the files and draw the crops, nvJPEG decodes each batch on the GPU."""

    def __init__(self, root: Path, order: torch.Tensor, size: int, batch: int, workers: int, gpu_decode: bool = False) -> None:
        folder = ImageFolder(str(root))  # the same files and labels, listed the same way
        paths = tuple(os.path.relpath(path, root) for path, _ in folder.samples)
        files = ImageFiles(root, paths, torch.tensor(folder.targets), size)
        device = torch.device("cuda" if gpu_decode else "cpu")
        self.stream = StreamedBatches(files, WorkerCrop(Crop(), 1), batch, seed=0, device=device, workers=workers,
                                      gpu_decode=gpu_decode)
        self.order, self.batch, self.epoch = order, batch, 0

    def batches(self, start: int):
        steps = len(self.order) // self.batch
        rolled = torch.roll(self.order, -start * self.batch)  # the same images as the other pipelines read from `start`
        self.epoch += 1
        for images, _ in self.stream.epoch(self.epoch, rolled[: steps * self.batch], 0):
            yield images


# ------------------------------------------------------------------------------------- measuring


def resident_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/<pid>/stat fields 14 and 15), seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children() -> list[int]:
    path = Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children")
    return [int(pid) for pid in path.read_text().split()] if path.exists() else []


def timed(pipeline, start: int, batches: int, batch: int, untimed: int) -> tuple[float, float, list[float], list[float]]:
    """Images per second over `batches` batches after `untimed` ones, CPU milliseconds per image (main process and
    the pipeline's workers: what a shared machine's load does not change), and the resident MiB (main, main +
    workers) after each batch.

    Untimed: one batch per worker, since the workers make their first batches side by side, so the
    second arrives with the first; timing from the first would count one batch for free."""
    before = set(children())
    iterator = pipeline.batches(start)
    for _ in range(untimed):
        next(iterator)
    started = set(children()) - before  # persistent workers: started by the pipeline's first run only
    pipeline.workers = getattr(pipeline, "workers", set()) | started
    main, total = [], []
    pids = [os.getpid(), *pipeline.workers]
    cpu_before = sum(cpu_seconds(pid) for pid in pids)
    clock = time.perf_counter()
    for _ in range(batches):
        images = next(iterator)
        assert images.shape[0] == batch
        if images.is_cuda:  # decoded on the GPU: the batch counts once it is there
            torch.cuda.synchronize(images.device)
        main.append(resident_mib(os.getpid()))
        total.append(main[-1] + sum(resident_mib(pid) for pid in pipeline.workers))
    seconds = time.perf_counter() - clock
    cpu_ms = 1000 * (sum(cpu_seconds(pid) for pid in pids) - cpu_before) / (batches * batch)
    iterator.close()
    return batches * batch / seconds, cpu_ms, main, total


def stage_breakdown(paths: list[Path], size: int) -> dict[str, dict[str, float]]:
    """CPU milliseconds per image of each stage of both pipelines, one process, one thread, on the same files.

    The torchvision stages are those of the DataLoader pipeline (pil_loader, then the transforms); ablate's
    are those of `ablate.data.stream.decode_crops`, one crop per image, each run over every file in turn.
    """
    from torchvision.datasets.folder import pil_loader

    from ablate.data import stream

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a DataLoader worker
    crop, generator = Crop(), torch.Generator().manual_seed(0)
    rrc, flip, to_tensor = T.RandomResizedCrop(size), T.RandomHorizontalFlip(), T.ToTensor()

    def per_image(stage, inputs: list) -> tuple[float, list]:
        started = time.process_time()
        outputs = [stage(item) for item in inputs]
        return 1000 * (time.process_time() - started) / len(inputs), outputs

    tv: dict[str, float] = {}
    tv["open + decode (pil_loader)"], images = per_image(lambda path: pil_loader(str(path)), paths)
    tv["RandomResizedCrop"], crops = per_image(rrc, images)
    tv["RandomHorizontalFlip"], crops = per_image(flip, crops)
    tv["ToTensor"], _ = per_image(to_tensor, crops)
    ours: dict[str, float] = {}
    ours["read + header + draw the crop"], sampled = per_image(
        lambda path: (path, stream.sample_crops(path, crop, 1, size, generator)), paths)
    reduced = sum(item.factor > 1 for _, item in sampled)
    ours[f"decode (reduced: {reduced} of {len(paths)} files)"], decoded = per_image(lambda item: (item, decode_only(item)), sampled)
    ours["crop + resize + flip"], _ = per_image(lambda pair: crop_only(*pair, size), decoded)
    torch.set_num_threads(threads)
    return {"torchvision": tv, "ablate": ours}


def decode_only(item: tuple[Path, object]):
    """The decode step of `ablate.data.stream.cpu_crops` alone: a tensor (full size) or a PIL image (reduced)."""
    from ablate.data import stream

    path, sampled = item
    if sampled.factor == 1:
        return stream.decode_full(sampled.data, path)
    width, height = sampled.header.size
    sampled.header.draft("RGB", (width // sampled.factor, height // sampled.factor))
    return stream.decoded_rgb(sampled.header, path)


def crop_only(item: tuple[Path, object], image, size: int):
    from ablate.data import stream

    path, sampled = item
    if sampled.factor == 1:
        return stream.crops_of(image, sampled.boxes, sampled.flips, size)
    return stream.reduced_crops_of(image, sampled.factor, sampled.boxes, sampled.flips, size, path)


def benchmark(args: argparse.Namespace) -> dict:
    paths = make_folder(args.folder, args.images)
    order = torch.randperm(len(paths), generator=torch.Generator().manual_seed(0))
    info = machine(torch.device("cuda" if args.gpu_decode else "cpu"))
    info["uptime load (1, 5, 15 min) at start"] = " ".join(f"{v:.2f}" for v in os.getloadavg())
    pipelines = {
        "torchvision ImageFolder + RandomResizedCrop + flip + ToTensor (float32)":
            TorchvisionPipeline(args.folder, order, args.size, args.batch, args.workers, to_float=True),
        "torchvision ImageFolder + RandomResizedCrop + flip + PILToTensor (uint8)":
            TorchvisionPipeline(args.folder, order, args.size, args.batch, args.workers, to_float=False),
        "ablate stream (one crop per image, uint8)": AblatePipeline(args.folder, order, args.size, args.batch, args.workers),
    }
    if args.gpu_decode:
        pipelines["ablate stream, JPEGs decoded by nvJPEG on the GPU (uint8, on the GPU)"] = AblatePipeline(
            args.folder, order, args.size, args.batch, args.workers, gpu_decode=True)
    speed: dict[str, list[float]] = {name: [] for name in pipelines}
    cpu: dict[str, list[float]] = {name: [] for name in pipelines}
    memory: dict[str, dict[str, list[float]]] = {name: {"main": [], "total": []} for name in pipelines}
    start = 0
    for repeat in range(args.repeats):
        for name, pipeline in pipelines.items():
            rate, cpu_ms, main, total = timed(pipeline, start, args.batches, args.batch, untimed=max(1, args.workers))
            speed[name].append(rate)
            cpu[name].append(cpu_ms)
            memory[name]["main"] += main
            memory[name]["total"] += total
        start += args.batches + max(1, args.workers)
        say(f"repeat {repeat + 1}/{args.repeats}: " + ", ".join(f"{speed[n][-1]:.0f}" for n in pipelines) + " images/s")
    info["load average (1 min, at end)"] = load_average()
    breakdown = stage_breakdown(paths[: args.breakdown_images], args.size)
    return {"breakdown": breakdown, "machine": info, "args": {key: str(value) for key, value in vars(args).items()}, "speed": speed, "cpu": cpu,
            "memory": memory}


def markdown(results: dict) -> str:
    args = results["args"]
    names = list(results["speed"])
    reference = statistics.median(results["speed"][names[0]])
    lines = [
        "# Streaming an image folder: ablate against torchvision's ImageFolder pipeline",
        "",
        f"`python benchmarks/bench_stream.py --images {args['images']} --size {args['size']} --batch {args['batch']} "
        f"--workers {args['workers']} --batches {args['batches']} --repeats {args['repeats']}"
        f"{' --gpu-decode' if args.get('gpu_decode') == 'True' else ''}`: {args['images']} generated "
        f"JPEGs (400-500 px sides, quality 90), {args['size']} px output, batch {args['batch']}, {args['workers']} "
        f"DataLoader workers each, {args['batches']} timed batches per repeat after one untimed per worker, {args['repeats']} repeats "
        "round-robin. Resident memory (VmRSS, MiB) read after every batch: the main process, and main + workers.",
        "",
        *[f"- {key}: {value}" for key, value in results["machine"].items()],
        "",
        "| pipeline | images/s, median | best | × ToTensor pipeline | CPU ms per image (main + workers) | × ToTensor in CPU time "
        "| RSS main: median / peak / change | RSS main + workers: median / peak / change |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    reference_cpu = statistics.median(results["cpu"][names[0]])
    for name in names:
        rates = results["speed"][name]
        cells = []
        for part in ("main", "total"):
            values = results["memory"][name][part]
            cells.append(f"{statistics.median(values):.0f} / {max(values):.0f} / {values[-1] - values[0]:+.0f}")
        cpu_ms = statistics.median(results["cpu"][name])
        lines.append(f"| {name} | {statistics.median(rates):.0f} | {max(rates):.0f} | "
                     f"{statistics.median(rates) / reference:.2f} | {cpu_ms:.2f} | {reference_cpu / cpu_ms:.2f} | {cells[0]} | {cells[1]} |")
    lines += ["", f"Where the time goes: CPU ms per image of each stage, in this process on one thread, over the first "
              f"{args['breakdown_images']} files (`stage_breakdown`):", "",
              "| pipeline | stage | CPU ms per image |", "|---|---|---:|"]
    for pipeline, stages in results["breakdown"].items():
        for stage, ms in stages.items():
            lines.append(f"| {pipeline} | {stage} | {ms:.3f} |")
        lines.append(f"| {pipeline} | **all stages** | **{sum(stages.values()):.3f}** |")
    lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=Path("/tmp/stream-bench/jpegs"))
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--breakdown-images", type=int, default=200)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--gpu-decode", action="store_true",
                        help="also ablate's stream with nvJPEG decoding on the CUDA device (ABLATE_STREAM_GPU_DECODE=1)")
    args = parser.parse_args()
    if args.gpu_decode and not torch.cuda.is_available():
        raise SystemExit("--gpu-decode needs a CUDA device")
    if args.images < args.batch * (args.batches + max(1, args.workers)):
        raise SystemExit(f"--images {args.images} is fewer than one repeat reads ({args.batch} x {args.batches + max(1, args.workers)})")
    results = benchmark(args)
    text = markdown(results)
    print(text)
    write_text(args.out or HERE / "benchmarks" / "results" / "stream-cpu-2core.md", text)


if __name__ == "__main__":
    main()
