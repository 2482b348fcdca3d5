"""Tiny datasets in their real on-disk layouts, their archives, and a local HTTP server that serves
them (or breaks off midway): shared by tests/data/test_fetch.py, test_imagenette.py and test_tiny_imagenet.py.

Every image is one solid colour chosen from its class and index (`colour`), so a test can tell from
a decoded image's mean which file it came from and check its label.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile
import threading
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
from PIL import Image

# ------------------------------------------------------------------------------------------ images


def colour(label: int, index: int) -> tuple[int, int, int]:
    """The solid colour of image `index` of class `label`: far apart (≥ 40 levels) for labels < 5 and index < 5."""
    return (20 + 40 * label, 200 - 40 * index, 60 + 20 * ((label + index) % 5))


def write_jpeg(path: Path, rgb: tuple[int, int, int], size: tuple[int, int] = (30, 24)) -> None:
    """A solid-colour JPEG (width × height, not square: the loaders resize and centre-crop)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, rgb).save(path, format="JPEG", quality=95)


def md5(payload: bytes) -> str:
    return hashlib.md5(payload).hexdigest()


# ---------------------------------------------------------------------------------------- layouts

IMAGENETTE_WNIDS = ["n03888257", "n01440764", "n03000684"]  # parachute, tench, chain saw: not in sorted order
TINY_WNIDS = ["n02124075", "n01443537", "n04067472"]  # Egyptian cat, goldfish, reel (wnids.txt is not sorted either)


def write_imagenette(root: Path, folder: str = "imagenette2-320", train_per_class: int = 3, val_per_class: int = 2) -> Path:
    """root/folder/{train,val}/<wnid>/*.JPEG; image i of the class with sorted place L has colour(L, i) (val: i + 3)."""
    base = root / folder
    for label, wnid in enumerate(sorted(IMAGENETTE_WNIDS)):
        for i in range(train_per_class):
            write_jpeg(base / "train" / wnid / f"{wnid}_{i}.JPEG", colour(label, i))
        for i in range(val_per_class):
            write_jpeg(base / "val" / wnid / f"ILSVRC2012_val_{label}{i}.JPEG", colour(label, i + 3))
    (base / "noisy_imagenette.csv").write_text("path,noisy_labels_0\n")  # in the real archive; not read
    return base


def write_tiny_imagenet(root: Path, train_per_class: int = 3, val_per_class: int = 2) -> Path:
    """root/tiny-imagenet-200 in the real layout; train image i of sorted class L has colour(L, i), val colour(L, i + 3)."""
    base = root / "tiny-imagenet-200"
    base.mkdir(parents=True)
    (base / "wnids.txt").write_text("\n".join(TINY_WNIDS) + "\n")
    (base / "words.txt").write_text("n01443537\tgoldfish, Carassius auratus\nn02124075\tEgyptian cat\n"
                                    "n04067472\treel\nn09999999\tnot a class here\n")
    annotations = []
    for label, wnid in enumerate(sorted(TINY_WNIDS)):
        for i in range(train_per_class):
            write_jpeg(base / "train" / wnid / "images" / f"{wnid}_{i}.JPEG", colour(label, i), size=(64, 64))
        (base / "train" / wnid / f"{wnid}_boxes.txt").write_text("")
        for i in range(val_per_class):
            name = f"val_{label * val_per_class + i}.JPEG"
            write_jpeg(base / "val" / "images" / name, colour(label, i + 3), size=(64, 64))
            annotations.append(f"{name}\t{wnid}\t0\t0\t63\t63")
    annotations.reverse()  # the file's order is not the images' order
    (base / "val" / "val_annotations.txt").write_text("\n".join(annotations) + "\n")
    write_jpeg(base / "test" / "images" / "test_0.JPEG", (0, 0, 0), size=(64, 64))
    return base


CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_cifar10(root: Path) -> dict[str, np.ndarray]:
    """root/cifar-10-batches-py: five 2-image training batches and a 2-image test batch, in the pickle format."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    train_x, train_y = [], []

    def dump(name: str, images: np.ndarray, labels: list[int]) -> None:
        with open(folder / name, "wb") as handle:  # per image 1024 red, 1024 green, 1024 blue values
            pickle.dump({"data": images.reshape(len(images), 3072), "labels": labels}, handle, protocol=2)

    for batch in range(1, 6):
        images = rng.integers(0, 256, (2, 3, 32, 32), dtype=np.uint8)
        labels = [batch, (batch * 3) % 10]
        dump(f"data_batch_{batch}", images, labels)
        train_x.append(images)
        train_y += labels
    test_x = rng.integers(0, 256, (2, 3, 32, 32), dtype=np.uint8)
    dump("test_batch", test_x, [7, 2])
    with open(folder / "batches.meta", "wb") as handle:
        pickle.dump({"label_names": CIFAR10_NAMES}, handle, protocol=2)
    return {"train_x": np.concatenate(train_x), "train_y": np.array(train_y), "test_x": test_x, "test_y": np.array([7, 2])}


def write_stl10(root: Path) -> dict[str, np.ndarray]:
    """root/stl10_binary: 2 training and 2 test images in the binary format (column-major channels, labels 1..10)."""
    folder = root / "stl10_binary"
    folder.mkdir(parents=True)
    images = np.zeros((4, 3, 96, 96), dtype=np.uint8)  # [c][y][x]: a gradient along x tells a transpose apart
    for i in range(4):
        images[i] = ((np.arange(96)[None, None, :] + 50 * i) % 256).astype(np.uint8)
    labels = np.array([3, 10, 1, 5], dtype=np.uint8)
    for part, rows in (("train", slice(0, 2)), ("test", slice(2, 4))):
        images[rows].transpose(0, 1, 3, 2).tofile(folder / f"{part}_X.bin")  # on disk x-major
        labels[rows].tofile(folder / f"{part}_y.bin")
    return {"train_x": images[:2], "train_y": labels[:2].astype(np.int64) - 1,
            "test_x": images[2:], "test_y": labels[2:].astype(np.int64) - 1}


# --------------------------------------------------------------------------------------- archives


def tar_gz(folder: Path) -> bytes:
    """folder as a .tar.gz whose one top-level entry is the folder itself (as the real archives are)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        archive.add(folder, arcname=folder.name)
    return buffer.getvalue()


def zip_of(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            archive.write(path, path.relative_to(folder.parent).as_posix())
    return buffer.getvalue()


# ----------------------------------------------------------------------------------------- server


class Served:
    """What the server holds: file name -> bytes, and names whose transfer breaks off after N bytes."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.drop_after: dict[str, int] = {}
        self.requests: list[str] = []
        self.delay_s = 0.0  # before each answer: keeps a transfer in flight while a test does something else


@contextmanager
def http_server(served: Served) -> Iterator[str]:
    """A server on 127.0.0.1 (a free port) in a thread; yields its base address. A dropped file announces its
    full Content-Length, sends `drop_after` bytes and closes the connection."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            name = self.path.removeprefix("/mirror/")
            served.requests.append(name)
            time.sleep(served.delay_s)
            if name not in served.files:
                self.send_error(404, "Not Found")
                return
            body = served.files[name]
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                self.wfile.write(body[: served.drop_after.get(name, len(body))])
            except (BrokenPipeError, ConnectionResetError):
                pass
            self.close_connection = True

        def log_message(self, *args: object) -> None:  # keep the test output clean
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/mirror"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
