"""Benchmark: ablate's SimCLR training step — on a GPU against the issue's targets, on a CPU against a
torchvision DataLoader pipeline. The same as `ablate bench train`; see ablate/bench.py for what is timed.

    python benchmarks/bench_train.py                    # CUDA if present (device mode), else CPU mode
    python benchmarks/bench_train.py --device cuda --out benchmarks/results/train-h200.md
    python benchmarks/bench_train.py --device cpu --batch 256 --steps 12

Device mode: ResNet-18 (CIFAR stem), batch 512, two views (crop, colour, blur) made on the device,
bf16, channels_last, torch.compile, LARS, 50,000 random uint8 CIFAR-shaped images preloaded on the
device; reports ms/step, images/s, TFLOP/s, MFU, the CIFAR-10 epoch time and the augmentation share
(targets: MFU >= 35 %, epoch <= 1.5 s on an H100/H200, views <= 10 % of a step); most of its time
is compiling. CPU mode: small CNN, 32 px, ablate vs torchvision
transforms.v2 in a DataLoader (one worker per core), images/s and ratio.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import torch  # noqa: E402

from ablate.bench import default_out, markdown, run_train_benchmark  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda when present)")
    parser.add_argument("--mode", choices=("auto", "device", "cpu"), default="auto")
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None, help="cpu mode: timed steps")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--ahead", action="store_true", help="device mode: make each step's views during the previous step, on a side stream")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    mode = args.mode if args.mode != "auto" else ("device" if device.type == "cuda" else "cpu")
    options: dict = {}
    if args.batch:
        options["batch_size"] = args.batch
    if mode == "device":
        if args.no_compile:
            options["compile_model"] = False
        if args.ahead:
            options["ahead"] = True
    elif args.steps:
        options["steps"] = args.steps
    out = args.out or default_out(device)
    print(markdown(run_train_benchmark(device, mode, out, **options)))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
