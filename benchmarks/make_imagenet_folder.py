"""Write a small folder in ImageNet's prepared layout (train/<wnid>/*.JPEG, val/<wnid>/*.JPEG) for reduced runs of
the ImageNet grids on a machine without ImageNet: JPEGs of 400-500 px sides at quality 90 (ImageNet-like sizes),
each class a hue of noise and one filled shape (rectangle or ellipse), so that a short run has something to learn.

    python benchmarks/make_imagenet_folder.py DIR [--classes 10] [--train 64] [--val 16]

Used for benchmarks/results/imagenet-reduced-cpu-2core.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def write_class(root: Path, index: int, train: int, val: int, rng: np.random.Generator) -> None:
    wnid = f"n{1440764 + index:08d}"  # shaped like a WordNet id; the loader takes any folder name
    for split, count in (("train", train), ("val", val)):
        folder = root / split / wnid
        folder.mkdir(parents=True, exist_ok=True)
        for number in range(count):
            width, height = (int(side) for side in rng.integers(400, 501, size=2))
            noise = rng.integers(0, 60, size=(height, width, 3), dtype=np.uint8)
            hue = np.array([25 * index, 255 - 25 * index, 128], dtype=np.uint8) // 2
            image = Image.fromarray(noise + hue)
            x, y, radius = (int(value) for value in (rng.integers(100, 300), rng.integers(100, 300), rng.integers(40, 100)))
            shape = ImageDraw.Draw(image).ellipse if index % 2 else ImageDraw.Draw(image).rectangle
            shape([x - radius, y - radius, x + radius, y + radius], fill=(255 - 20 * index, 20 * index, 200))
            image.save(folder / f"{wnid}_{number}.JPEG", quality=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--train", type=int, default=64, help="training images per class")
    parser.add_argument("--val", type=int, default=16, help="validation images per class")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    for index in range(args.classes):
        write_class(args.root, index, args.train, args.val, rng)
    print(f"{args.classes} classes x ({args.train} train + {args.val} val) JPEGs in {args.root}")


if __name__ == "__main__":
    main()
