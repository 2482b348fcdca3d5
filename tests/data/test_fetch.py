"""`ablate data fetch` and `dataset.download: true` against a local HTTP server (127.0.0.1) serving tiny
archives in the real layouts: a good archive is extracted and read back with its labels; a truncated or
altered one, a dropped connection, a 404 and no server at all each end in one exact line, exit status 2,
and no partial folder or file left behind.

The md5s of the test archives are computed here and swapped into `ablate.data.fetch.SOURCES` for the test
only (monkeypatch); `test_the_official_sources` checks the real table against torchvision's.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import run_ablate
from fetch_helpers import CIFAR10_NAMES, Served, http_server, md5, tar_gz, write_cifar10, write_stl10

from ablate import cli
from ablate.config import DatasetSpec, RunSpec
from ablate.data import DatasetUnavailable, fetch, load_dataset

pytestmark = pytest.mark.usefixtures("one_torch_thread")
CIFAR_ARCHIVE = "cifar-10-python.tar.gz"
STL_ARCHIVE = "stl10_binary.tar.gz"


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    data = tmp_path / "data"
    monkeypatch.setenv("ABLATE_DATA", str(data))
    monkeypatch.setenv("ABLATE_CACHE", str(tmp_path / "cache"))
    return data


@pytest.fixture
def cifar_archive(tmp_path: Path) -> tuple[bytes, dict[str, np.ndarray]]:
    written = write_cifar10(tmp_path / "made")
    return tar_gz(tmp_path / "made" / "cifar-10-batches-py"), written


def expect_md5(monkeypatch: pytest.MonkeyPatch, name: str, checksum: str | None) -> None:
    """The test archive's md5 in place of the official one, for this test only."""
    monkeypatch.setitem(fetch.SOURCES, name, dataclasses.replace(fetch.SOURCES[name], md5=checksum))


def ablate_main(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    status = cli.main(list(args))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then closed at once)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def everything_under(folder: Path) -> list[str]:
    return sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*"))


# --------------------------------------------------------------------------------------- good archives


def test_a_good_cifar10_archive_is_fetched_extracted_and_read(data_dir, cifar_archive, capsys, monkeypatch):
    archive, written = cifar_archive
    served = Served()
    served.files[CIFAR_ARCHIVE] = archive
    expect_md5(monkeypatch, "cifar10", md5(archive))
    with http_server(served) as base:
        monkeypatch.setenv("ABLATE_DATA_MIRROR", base)
        status, out, err = ablate_main(capsys, "data", "fetch", "cifar10")
    target = data_dir / "cifar10" / "cifar-10-batches-py"
    assert (status, err) == (0, "")
    assert out.splitlines() == [f"CIFAR-10: downloading {base}/{CIFAR_ARCHIVE}", f"CIFAR-10: extracting {CIFAR_ARCHIVE}",
                                f"cifar10: {target} (fetched)"]
    assert served.requests == [CIFAR_ARCHIVE]
    # Only the dataset's folder is left: no staging folder, no archive.
    assert sorted(p.name for p in (data_dir / "cifar10").iterdir()) == ["cifar-10-batches-py"]
    marker = json.loads((target / fetch.MARKER).read_text())
    assert marker["md5"] == md5(archive) and marker["url"] == f"{base}/{CIFAR_ARCHIVE}"

    data = load_dataset(DatasetSpec(name="cifar10"))
    assert torch.equal(data.train.images, torch.from_numpy(written["train_x"]))
    assert data.train.labels.tolist() == written["train_y"].tolist()
    assert torch.equal(data.test.images, torch.from_numpy(written["test_x"]))
    assert data.test.labels.tolist() == [7, 2] and data.classes == CIFAR10_NAMES

    # Fetching again finds it there and asks the server nothing.
    assert ablate_main(capsys, "data", "fetch", "cifar10") == (0, f"cifar10: {target} (fetched)\n", "")
    assert served.requests == [CIFAR_ARCHIVE]


def test_a_good_stl10_archive_into_another_root(tmp_path, data_dir, capsys, monkeypatch):
    written = write_stl10(tmp_path / "made")
    archive = tar_gz(tmp_path / "made" / "stl10_binary")
    served = Served()
    served.files[STL_ARCHIVE] = archive
    expect_md5(monkeypatch, "stl10", md5(archive))
    root = tmp_path / "elsewhere"
    with http_server(served) as base:
        monkeypatch.setenv("ABLATE_DATA_MIRROR", base)
        status, out, err = ablate_main(capsys, "data", "fetch", "stl10", "--root", str(root))
    assert (status, err, out.splitlines()[-1]) == (0, "", f"stl10: {root / 'stl10_binary'} (fetched)")
    data = load_dataset(DatasetSpec(name="stl10", root=str(root), image_size=96))
    assert torch.equal(data.train.images, torch.from_numpy(written["train_x"]))
    assert data.train.labels.tolist() == [2, 9] and data.test.labels.tolist() == [0, 4]
    assert not (data_dir / "stl10").exists()


# ------------------------------------------------------------------------------------------- failures


def fetch_failure(capsys, monkeypatch, served: Served, name: str = "cifar10") -> tuple[int, str, str, str]:
    """Exit status, stdout, stderr and the server's base address of a fetch expected to fail."""
    with http_server(served) as base:
        monkeypatch.setenv("ABLATE_DATA_MIRROR", base)
        status, out, err = ablate_main(capsys, "data", "fetch", name)
    return status, out, err, base


def test_a_truncated_archive_fails_its_checksum_and_is_removed(data_dir, cifar_archive, capsys, monkeypatch):
    archive, _ = cifar_archive
    served = Served()
    served.files[CIFAR_ARCHIVE] = archive[: len(archive) // 2]  # served whole: the transfer itself is fine
    expect_md5(monkeypatch, "cifar10", md5(archive))
    status, _, err, _ = fetch_failure(capsys, monkeypatch, served)
    truncated = md5(archive[: len(archive) // 2])
    assert (status, err) == (2, (
        f"ablate: CIFAR-10: the downloaded {CIFAR_ARCHIVE} has md5 {truncated}, expected {md5(archive)}: damaged or "
        f"not the official archive; removed it. Run the fetch again, or download "
        f"https://www.cs.toronto.edu/~kriz/{CIFAR_ARCHIVE} by hand and extract it into {data_dir / 'cifar10'}\n"))
    assert everything_under(data_dir) == ["cifar10"]


def test_an_altered_archive_fails_its_checksum_and_is_removed(tmp_path, data_dir, cifar_archive, capsys, monkeypatch):
    archive, _ = cifar_archive
    (tmp_path / "made" / "cifar-10-batches-py" / "readme.html").write_text("one more file")
    altered = tar_gz(tmp_path / "made" / "cifar-10-batches-py")
    served = Served()
    served.files[CIFAR_ARCHIVE] = altered
    expect_md5(monkeypatch, "cifar10", md5(archive))
    status, _, err, _ = fetch_failure(capsys, monkeypatch, served)
    assert status == 2
    assert err.startswith(f"ablate: CIFAR-10: the downloaded {CIFAR_ARCHIVE} has md5 {md5(altered)}, expected {md5(archive)}: ")
    assert err.count("\n") == 1 and everything_under(data_dir) == ["cifar10"]


def test_a_damaged_archive_that_matches_its_checksum_is_not_half_extracted(data_dir, cifar_archive, capsys, monkeypatch):
    """Where the md5 cannot tell (the expected md5 is that of the damaged file), extraction fails and nothing is kept."""
    archive, _ = cifar_archive
    damaged = archive[: len(archive) * 3 // 4]
    served = Served()
    served.files[CIFAR_ARCHIVE] = damaged
    expect_md5(monkeypatch, "cifar10", md5(damaged))
    status, _, err, _ = fetch_failure(capsys, monkeypatch, served)
    assert status == 2
    assert err == (f"ablate: CIFAR-10: {CIFAR_ARCHIVE} could not be extracted (Compressed file ended before the "
                   "end-of-stream marker was reached): damaged or truncated; removed it and the partial extraction. "
                   "Run the fetch again\n")
    assert everything_under(data_dir) == ["cifar10"]


def test_an_archive_without_the_expected_folder(tmp_path, data_dir, capsys, monkeypatch):
    (tmp_path / "made" / "batches").mkdir(parents=True)
    (tmp_path / "made" / "batches" / "data_batch_1").write_bytes(b"x")
    archive = tar_gz(tmp_path / "made" / "batches")
    served = Served()
    served.files[CIFAR_ARCHIVE] = archive
    expect_md5(monkeypatch, "cifar10", md5(archive))
    status, _, err, _ = fetch_failure(capsys, monkeypatch, served)
    assert (status, err) == (2, f"ablate: CIFAR-10: {CIFAR_ARCHIVE} holds batches, not the folder cifar-10-batches-py/ "
                                "that the loader reads; nothing was kept\n")
    assert everything_under(data_dir) == ["cifar10"]


def test_a_connection_dropped_midway(data_dir, cifar_archive, capsys, monkeypatch):
    archive, _ = cifar_archive
    served = Served()
    served.files[CIFAR_ARCHIVE] = archive
    served.drop_after[CIFAR_ARCHIVE] = 1000
    expect_md5(monkeypatch, "cifar10", md5(archive))
    status, _, err, base = fetch_failure(capsys, monkeypatch, served)
    assert (status, err) == (2, (
        f"ablate: CIFAR-10: cannot download {base}/{CIFAR_ARCHIVE} (the connection closed after 1000 of "
        f"{len(archive)} bytes); nothing was kept. Expected the dataset in {data_dir / 'cifar10' / 'cifar-10-batches-py'}: "
        f"run `ablate data fetch cifar10` again when online, or download {CIFAR_ARCHIVE} by hand and extract it into "
        f"{data_dir / 'cifar10'}\n"))
    assert everything_under(data_dir) == ["cifar10"]


def test_a_missing_file_on_the_server(data_dir, capsys, monkeypatch):
    status, _, err, base = fetch_failure(capsys, monkeypatch, Served(), name="stl10")
    assert status == 2
    assert err.startswith(f"ablate: STL-10: cannot download {base}/{STL_ARCHIVE} (the server answered HTTP 404 Not Found); ")
    assert everything_under(data_dir) == ["stl10"]


def test_offline_is_one_line_with_the_expected_path(tmp_path):
    """No server at all (a port nothing listens on), through the installed command in its own process."""
    port = free_port()
    env = {**os.environ, "ABLATE_DATA": str(tmp_path / "data"), "ABLATE_DATA_MIRROR": f"http://127.0.0.1:{port}"}
    done = run_ablate("data", "fetch", "tiny-imagenet", cwd=tmp_path, env=env, timeout=120)
    folder = tmp_path / "data" / "tiny-imagenet"
    assert done.returncode == 2
    assert done.stderr == (
        f"ablate: Tiny ImageNet: cannot download http://127.0.0.1:{port}/tiny-imagenet-200.zip (Connection refused); "
        f"nothing was kept. Expected the dataset in {folder / 'tiny-imagenet-200'}: run `ablate data fetch tiny-imagenet` "
        f"again when online, or download tiny-imagenet-200.zip by hand and extract it into {folder}\n")
    assert everything_under(tmp_path / "data") == ["tiny-imagenet"]


def test_leftovers_of_a_crashed_fetch_are_cleared(data_dir, cifar_archive, capsys, monkeypatch):
    archive, _ = cifar_archive
    staging = data_dir / "cifar10" / ".cifar-10-batches-py.fetching"
    (staging / "extracted" / "cifar-10-batches-py").mkdir(parents=True)
    (staging / "extracted" / "cifar-10-batches-py" / "data_batch_1").write_bytes(b"half")
    (staging / f"{CIFAR_ARCHIVE}.part").write_bytes(archive[:100])
    served = Served()
    served.files[CIFAR_ARCHIVE] = archive
    expect_md5(monkeypatch, "cifar10", md5(archive))
    status, _, err, _ = fetch_failure(capsys, monkeypatch, served)
    assert (status, err) == (0, "")
    assert everything_under(data_dir / "cifar10")[:2] == ["cifar-10-batches-py", f"cifar-10-batches-py/{fetch.MARKER}"]
    assert not staging.exists() and len(load_dataset(DatasetSpec(name="cifar10")).train) == 10


def test_two_fetches_at_once_download_once(data_dir, cifar_archive, monkeypatch):
    """The second waits for the first's lock, then finds the folder there."""
    archive, _ = cifar_archive
    served = Served()
    served.files[CIFAR_ARCHIVE] = archive
    served.delay_s = 0.5
    expect_md5(monkeypatch, "cifar10", md5(archive))
    root = data_dir / "cifar10"
    with http_server(served) as base, ThreadPoolExecutor(2) as pool:
        monkeypatch.setenv("ABLATE_DATA_MIRROR", base)
        targets = list(pool.map(lambda _: fetch.fetch("cifar10", root, say=lambda line: None), range(2)))
    assert targets == [root / "cifar-10-batches-py"] * 2 and served.requests == [CIFAR_ARCHIVE]
    assert fetch.is_fetched("cifar10", root)


# ------------------------------------------------------------------------------- dataset.download


def tiny_cifar_run(download: bool) -> RunSpec:
    return RunSpec.model_validate({
        "dataset": {"name": "cifar10", "image_size": 16, "download": download},
        "model": {"arch": "small_cnn"},
        "train": {"epochs": 1, "batch_size": 5, "warmup_epochs": 0},
        "augment": {"protocol": "both_branches", "ops": ["crop", "color"]},
        "eval": {"knn_k": 3, "linear_epochs": 1},
    })


def test_download_true_fetches_on_first_use_through_a_run(data_dir, cifar_archive, monkeypatch):
    from ablate.run import execute_run

    archive, _ = cifar_archive
    served = Served()
    served.files[CIFAR_ARCHIVE] = archive
    expect_md5(monkeypatch, "cifar10", md5(archive))
    with http_server(served) as base:
        monkeypatch.setenv("ABLATE_DATA_MIRROR", base)
        result = execute_run(tiny_cifar_run(download=True), None, device=torch.device("cpu"))
        assert served.requests == [CIFAR_ARCHIVE]
        execute_run(tiny_cifar_run(download=True), None, device=torch.device("cpu"))  # there now: not fetched again
        assert served.requests == [CIFAR_ARCHIVE]
    assert 0 <= result["metrics"]["linear_top1"] <= 100
    assert fetch.is_fetched("cifar10", data_dir / "cifar10")


def test_nothing_is_downloaded_unasked_and_the_message_says_how(data_dir, monkeypatch):
    served = Served()
    with http_server(served) as base:
        monkeypatch.setenv("ABLATE_DATA_MIRROR", base)
        with pytest.raises(DatasetUnavailable) as raised:
            load_dataset(DatasetSpec(name="cifar10"))
    assert served.requests == []
    message = str(raised.value)
    assert message.startswith("CIFAR-10 not found: expected the files data_batch_1, ")
    assert message.endswith(". Or let ablate fetch it: `ablate data fetch cifar10`, or set dataset.download: true.")
    assert "\n" not in message
    with pytest.raises(DatasetUnavailable) as raised:
        load_dataset(DatasetSpec(name="cifar10", root="/tmp/somewhere/cifar"))
    assert str(raised.value).endswith("`ablate data fetch cifar10 --root /tmp/somewhere/cifar`, or set dataset.download: true.")


def test_download_true_never_adds_to_a_folder_that_holds_files(data_dir, monkeypatch):
    """A folder with something in it (an archive downloaded by hand, a half copy) gets the loader's own message."""
    (data_dir / "cifar10").mkdir(parents=True)
    (data_dir / "cifar10" / CIFAR_ARCHIVE).write_bytes(b"downloaded by hand")
    served = Served()
    with http_server(served) as base:
        monkeypatch.setenv("ABLATE_DATA_MIRROR", base)
        with pytest.raises(DatasetUnavailable) as raised:
            load_dataset(DatasetSpec(name="cifar10", download=True))
    assert served.requests == [] and "Or let ablate fetch it" not in str(raised.value)
    assert str(raised.value).startswith("CIFAR-10 not found: ")


def test_download_true_failing_is_one_line_and_exit_2_through_ablate_run(tmp_path, data_dir, capsys, monkeypatch):
    """Through `ablate run`: the preflight fetches, fails (nothing listens), and no run starts."""
    monkeypatch.setenv("ABLATE_DATA_MIRROR", f"http://127.0.0.1:{free_port()}")
    grid = tmp_path / "g.yaml"
    grid.write_text("name: g\ndataset: {name: stl10, download: true}\nmodel: {arch: small_cnn}\n")
    status, _, err = ablate_main(capsys, "run", str(grid), "--results-dir", str(tmp_path / "results"))
    assert status == 2 and err.count("\n") == 1
    assert err.startswith(f"ablate: STL-10: cannot download {fetch.archive_url(fetch.SOURCES['stl10'])} (Connection refused); ")
    assert not (tmp_path / "results").exists() and everything_under(data_dir) == ["stl10"]


# ---------------------------------------------------------------------------------- the real table


def test_the_official_sources():
    """The addresses and md5s are torchvision's (CIFAR, STL-10 from the classes; Imagenette from its table)."""
    from torchvision.datasets import CIFAR10, CIFAR100, STL10, Imagenette

    sources = fetch.SOURCES
    assert tuple(sources) == cli.FETCHABLE
    for name, reader in (("cifar10", CIFAR10), ("cifar100", CIFAR100), ("stl10", STL10)):
        assert (sources[name].url, sources[name].md5, sources[name].folder) == (reader.url, reader.tgz_md5, reader.base_folder)
        assert sources[name].filename == reader.filename
    assert (sources["imagenette"].url, sources["imagenette"].md5) == Imagenette._ARCHIVES["320px"]
    assert sources["tiny-imagenet"].url == "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
    assert sources["cifar10"].md5 == "c58f30108f718f92721af3b95e74349a"  # torchvision's, written out once here
