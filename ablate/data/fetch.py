"""Datasets fetched on request: `ablate data fetch NAME`, or `dataset.download: true` on first use.

Nothing is downloaded unasked: a loader that finds no files raises `DatasetUnavailable`, and only
when the spec says ``download: true`` does `fetch_when_asked` fetch the archive and load again.

Where each archive comes from (`SOURCES`; never edited to make a download pass):

* CIFAR-10, CIFAR-100 (Krizhevsky, 2009) and STL-10 (Coates, Ng, Lee, AISTATS 2011): address,
  archive name, md5 and top folder are read from torchvision's own dataset classes (``url``,
  ``filename``, ``tgz_md5``, ``base_folder``), so they are the ones torchvision checks.
* Imagenette (fast.ai, https://github.com/fastai/imagenette): the ``imagenette2-320.tgz`` archive,
  images whose shorter side is 320 px, enough for the paper's 224 px crops at a fifth of the full
  archive's size. fast.ai publishes no checksum; the md5 is the one torchvision's ``Imagenette``
  class records for the same address (a private table there, so it is written out here and a test
  compares the two).
* Tiny ImageNet (Stanford CS231n): ``http://cs231n.stanford.edu/tiny-imagenet-200.zip``. Stanford
  publishes no checksum; the md5 is the one that independent public loaders of this archive check
  it against (the same value in many of them), not one computed here.

``ABLATE_DATA_MIRROR`` (ablate.settings) replaces the official base address: the archive is then
fetched from ``<mirror>/<archive name>`` (a lab's copy, or the tests' local server), and checked
against the same md5.

What a fetch does, and why it cannot leave a half-done folder:

1. The archive is downloaded into a staging folder beside the dataset (``root/.<folder>.fetching``)
   as ``<archive>.part`` and renamed to its name only once whole: a connection that closes early
   (fewer bytes than the server announced) or stalls is reported, and the partial file removed.
2. Its md5 is compared with the expected one; a mismatch removes the archive and says so.
3. It is extracted into ``staging/extracted``; the archive's one top folder gets a completion
   marker (`MARKER`), then moves to ``root/<folder>`` with one ``os.rename`` (same file system:
   atomic). A crash before that leaves only the staging folder, which the next fetch clears.

Why the download and extraction are written here rather than torchvision's ``download_url`` /
``extract_archive``: torchvision's download loop ends silently when the connection closes early
(http.client returns no more bytes instead of raising), sets no timeout (a stalled server waits
forever) and writes straight to the final name; its tar extraction applies no member filter. Here
the transfer is checked against the announced length, every socket read times out after
`TIMEOUT_S`, and tar members go through Python's ``data`` filter (no absolute paths, no links out
of the folder, no device files). The md5 is torchvision's ``calculate_md5`` / ``check_integrity``,
and the progress bar is tqdm, as in torchvision.
"""

from __future__ import annotations

import datetime as dt
import errno
import fcntl
import http.client
import json
import os
import shutil
import tarfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from torchvision.datasets import CIFAR10, CIFAR100, STL10
from torchvision.datasets.utils import calculate_md5, check_integrity
from tqdm import tqdm

from ablate.config import DatasetSpec
from ablate.data import DatasetUnavailable, data_root
from ablate.settings import load_settings

MARKER = ".ablate-fetched.json"  # written into the dataset's folder when it is complete
TIMEOUT_S = 60.0  # seconds without a byte before a download is given up (a stalled server)
CHUNK_BYTES = 1 << 20
USER_AGENT = "ablate (python urllib)"
LOCAL_WRITE_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES)  # our disk, not the network


class FetchError(DatasetUnavailable):
    """A fetch failed (offline, server error, dropped connection, bad checksum, damaged archive); one line."""


@dataclass(frozen=True)
class Source:
    title: str  # for messages
    url: str  # the official address
    md5: str | None  # of the archive; None: nothing to compare with (no source here lacks one)
    folder: str  # the archive's one top-level folder, which the loader reads as root/<folder>

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


def _torchvision_source(title: str, reader: type[CIFAR10] | type[STL10]) -> Source:
    assert reader.url.endswith("/" + reader.filename)  # `Source.filename` derives it from the address
    return Source(title, reader.url, reader.tgz_md5, reader.base_folder)


SOURCES: dict[str, Source] = {
    "cifar10": _torchvision_source("CIFAR-10", CIFAR10),
    "cifar100": _torchvision_source("CIFAR-100", CIFAR100),
    "stl10": _torchvision_source("STL-10", STL10),
    "imagenette": Source("Imagenette (320 px)", "https://s3.amazonaws.com/fast-ai-imageclas/imagenette2-320.tgz",
                         "3df6f0d01a2c9592104656642f5e78a3", "imagenette2-320"),
    "tiny-imagenet": Source("Tiny ImageNet", "http://cs231n.stanford.edu/tiny-imagenet-200.zip",
                            "90528d7ca1a48142e341f4ef8d21d0de", "tiny-imagenet-200"),
}

Say = Callable[[str], None]


# ------------------------------------------------------------------------------------ entry points


def fetch_when_asked(spec: DatasetSpec, missing: DatasetUnavailable) -> None:
    """A loader found no files: fetch them if ``spec.download`` asks, else raise `missing`, saying how to fetch.

    Fetches only into a missing or empty folder: files put there by hand are never replaced nor added to.
    """
    if spec.name not in SOURCES:
        raise missing
    root = data_root(spec)
    if _holds_files(root):  # something is there, unreadable or incomplete: a fetch is not what it needs
        raise missing
    if not spec.download:
        command = f"ablate data fetch {spec.name}" + (f" --root {root}" if spec.root else "")
        raise DatasetUnavailable(f"{missing} Or let ablate fetch it: `{command}`, or set dataset.download: true.")
    fetch(spec.name, root)


def fetch(name: str, root: Path, say: Say = print) -> Path:
    """Download, check and extract dataset `name` into ``root/<its folder>``; returns that folder.

    A folder already there (fetched earlier, or put there by hand) is left as it is.
    """
    source = SOURCES[name]
    target = root / source.folder
    if target.exists():
        return target
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise FetchError(f"{source.title}: cannot create {root} ({err.strerror or err})") from None
    with _locked(root):  # a second process fetching the same dataset waits, then finds it there
        if target.exists():
            return target
        staging = root / f".{source.folder}.fetching"
        _clear_leftovers(staging, source)
        try:
            archive = _whole_archive(name, source, root, staging, say)
            _extract(source, archive, staging, target, say)
        except BaseException:
            shutil.rmtree(staging / "extracted", ignore_errors=True)
            (staging / (source.filename + ".part")).unlink(missing_ok=True)
            with suppress(OSError):
                staging.rmdir()  # only when empty: a whole archive is kept for the next try
            raise
        shutil.rmtree(staging, ignore_errors=True)  # the archive too: the extracted folder is what is read
    return target


def _holds_files(root: Path) -> bool:
    """True when root is a folder with anything in it but a crashed fetch's hidden staging folder."""
    return root.is_dir() and any(not entry.name.startswith(".") for entry in root.iterdir())


def is_fetched(name: str, root: Path) -> bool:
    """True when ablate fetched the dataset into root completely (its marker is there)."""
    return (root / SOURCES[name].folder / MARKER).is_file()


def archive_url(source: Source) -> str:
    """The official address, or ``<ABLATE_DATA_MIRROR>/<archive name>`` when a mirror is set."""
    mirror = load_settings().data_mirror
    return f"{mirror.rstrip('/')}/{source.filename}" if mirror else source.url


# -------------------------------------------------------------------------------------- download


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """An exclusive flock on the folder itself (released when the process ends, however it ends).

    Where the file system cannot lock a folder (NFS emulates flock with locks that need a file open
    for writing), the fetch goes on unlocked: the lock only keeps two simultaneous fetches apart.
    """
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        with suppress(OSError):
            fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


def _clear_leftovers(staging: Path, source: Source) -> None:
    """What a crashed fetch left: a partial download, a half extraction. A whole archive is kept."""
    (staging / (source.filename + ".part")).unlink(missing_ok=True)
    shutil.rmtree(staging / "extracted", ignore_errors=True)


def _whole_archive(name: str, source: Source, root: Path, staging: Path, say: Say) -> Path:
    """The archive in staging, downloaded unless an earlier fetch left it whole; its md5 checked."""
    archive = staging / source.filename
    if source.md5 is not None and check_integrity(archive, source.md5):
        say(f"{source.title}: using {archive}, downloaded earlier (md5 matches)")
        return archive
    archive.unlink(missing_ok=True)
    staging.mkdir(exist_ok=True)
    url = archive_url(source)
    part = staging / (source.filename + ".part")
    say(f"{source.title}: downloading {url}")
    _download(url, part, _offline_help(name, source, root, url))
    if source.md5 is not None:
        actual = calculate_md5(part)
        if actual != source.md5:
            part.unlink()
            raise FetchError(f"{source.title}: the downloaded {source.filename} has md5 {actual}, expected "
                             f"{source.md5}: damaged or not the official archive; removed it. Run the fetch again, "
                             f"or download {source.url} by hand and extract it into {root}")
    part.rename(archive)
    return archive


def _offline_help(name: str, source: Source, root: Path, url: str) -> Callable[[str], str]:
    """The one-line message of a failed transfer, given why it failed."""
    def message(reason: str) -> str:
        return (f"{source.title}: cannot download {url} ({reason}); nothing was kept. Expected the dataset in "
                f"{root / source.folder}: run `ablate data fetch {name}` again when online, or download "
                f"{source.filename} by hand and extract it into {root}")
    return message


def _download(url: str, part: Path, failed: Callable[[str], str]) -> None:
    """Stream url into `part` with a progress bar; any failure removes `part` and raises FetchError."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    written, announced = 0, None
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response, open(part, "wb") as out:
            announced = response.length  # Content-Length; None when the server does not say
            # disable=None: a bar on a terminal, nothing in a log file or a test's captured output
            with tqdm(total=announced, unit="B", unit_scale=True, desc=part.name[:-5],
                      disable=None) as bar:
                while chunk := response.read(CHUNK_BYTES):
                    out.write(chunk)
                    written += len(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as err:
        part.unlink(missing_ok=True)
        raise FetchError(failed(f"the server answered HTTP {err.code} {err.reason}")) from None
    except urllib.error.URLError as err:
        part.unlink(missing_ok=True)
        raise FetchError(failed(_reason(err.reason))) from None
    except (OSError, http.client.HTTPException) as err:  # reset, timed out, a broken response; or our disk
        part.unlink(missing_ok=True)
        if isinstance(err, OSError) and err.errno in LOCAL_WRITE_ERRORS:
            raise FetchError(f"cannot write {part} ({err.strerror}); nothing was kept") from None
        raise FetchError(failed(f"the transfer broke off after {written} bytes: {_reason(err)}")) from None
    if announced is not None and written != announced:
        part.unlink(missing_ok=True)
        raise FetchError(failed(f"the connection closed after {written} of {announced} bytes"))


def _reason(err: object) -> str:
    if isinstance(err, TimeoutError):
        return f"no data for {TIMEOUT_S:g} s"
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    return str(err) or type(err).__name__


# --------------------------------------------------------------------------------------- extract


def _extract(source: Source, archive: Path, staging: Path, target: Path, say: Say) -> None:
    """Unpack into staging/extracted, mark the top folder complete, move it to target in one rename."""
    extracted = staging / "extracted"
    say(f"{source.title}: extracting {archive.name}")
    try:
        _unpack(archive, extracted)
    except (OSError, EOFError, tarfile.TarError, zipfile.BadZipFile, ValueError) as err:
        shutil.rmtree(extracted, ignore_errors=True)
        archive.unlink(missing_ok=True)
        raise FetchError(f"{source.title}: {archive.name} could not be extracted ({_reason(err)}): damaged or "
                         f"truncated; removed it and the partial extraction. Run the fetch again") from None
    folder = extracted / source.folder
    if not folder.is_dir():
        found = ", ".join(sorted(p.name for p in extracted.iterdir())) or "nothing"
        shutil.rmtree(extracted, ignore_errors=True)
        archive.unlink()
        raise FetchError(f"{source.title}: {archive.name} holds {found}, not the folder {source.folder}/ "
                         f"that the loader reads; nothing was kept")
    marker = {"dataset": source.title, "url": archive_url(source), "md5": source.md5,
              "fetched": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    (folder / MARKER).write_text(json.dumps(marker, indent=1) + "\n", encoding="utf-8")
    os.rename(folder, target)


def _unpack(archive: Path, into: Path) -> None:
    into.mkdir(parents=True)
    if archive.suffix == ".zip":
        with zipfile.ZipFile(archive) as bundle:  # zipfile drops absolute paths and '..' from member names
            bundle.extractall(into)
    else:
        with tarfile.open(archive, "r:*") as bundle:  # compression detected from the content
            bundle.extractall(into, filter="data")
