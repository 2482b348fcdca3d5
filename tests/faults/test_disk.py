"""Disk problems: an unwritable or full results folder is refused before any training (exit 2, one
line); a disk that fills up mid-run stops the grid with a clear message (exit 1), damages no
completed result, leaves no temporary file, and a rerun finishes exactly what is missing.

How "unwritable" is made honestly: these tests run as root, which ignores permission bits, so
`chmod 555` proves nothing here (that variant runs only for other users). Instead: a results path
below a regular file (mkdir fails for everyone), a results path that is a file, and a folder of
sysfs, where even root cannot create files. A full disk is simulated (no quota or small filesystem
can be mounted here): fsync raising ENOSPC, and a monkeypatched free-space figure.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import pytest
from faults_helpers import ablate, results_of, tiny_grid

from ablate import cli, store

GRID = tiny_grid("disk", axes="  seed: [0, 1, 2]\n")


def sysfs_folder() -> Path | None:
    """A folder where creating a file fails even for root (sysfs), when this machine has one."""
    folder = Path("/sys/kernel")
    if not folder.is_dir():
        return None
    try:
        store.write_bytes_atomic(folder / "ablate-probe", b"x")
    except OSError:
        return folder
    (folder / "ablate-probe").unlink()
    return None


def a_file(path: Path) -> Path:
    path.write_text("x")
    return path


UNWRITABLE = {
    "below-a-file": lambda tmp: a_file(tmp / "a-file") / "results",
    "is-a-file": lambda tmp: a_file(tmp / "results-file"),
    "sysfs": lambda tmp: sysfs_folder() / "ablate-results" if sysfs_folder() else pytest.skip("no sysfs here"),
}
EXPECTED = {
    "below-a-file": "cannot be created: {tmp}/a-file is a file, not a folder",
    "is-a-file": "cannot be created: {tmp}/results-file is a file, not a folder",
    "sysfs": "is not writable: cannot write /sys/kernel/.ablate-write-probe",
}


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(UNWRITABLE))
def test_unwritable_results_folder_is_refused_before_training(tmp_path, kind):
    results = UNWRITABLE[kind](tmp_path)
    (tmp_path / "disk.yaml").write_text(GRID)
    process = ablate("run", "disk.yaml", "--quiet", "--results-dir", str(results), cwd=tmp_path)
    assert process.returncode == 2, process.stderr
    assert "Traceback" not in process.stderr and process.stdout == ""
    (line,) = process.stderr.strip().splitlines()
    assert line.startswith(f"ablate: results folder {results}") and EXPECTED[kind].format(tmp=tmp_path) in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["disk.yaml"] + (["a-file"] if kind == "below-a-file" else [])
                                                                + (["results-file"] if kind == "is-a-file" else []))


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a mode 555 folder anyway; see the module docstring")
def test_read_only_results_folder_is_refused(tmp_path):
    results = tmp_path / "results"
    results.mkdir(mode=0o555)
    (tmp_path / "disk.yaml").write_text(GRID)
    process = ablate("run", "disk.yaml", "--results-dir", str(results), cwd=tmp_path)
    assert process.returncode == 2 and "Permission denied" in process.stderr


def test_nearly_full_disk_is_refused_before_training(tmp_path, monkeypatch, capsys):
    (tmp_path / "disk.yaml").write_text(GRID)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(store.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9 - 2**20, 2**20))
    assert cli.main(["run", "disk.yaml", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err == ("ablate: results folder results has only 1.0 MiB free; runs need at least 64 MiB for checkpoints "
                   "and results. Free some space or choose another folder with --results-dir\n")
    assert not (tmp_path / "results").exists()


def test_dry_run_and_status_do_not_need_a_writable_results_folder(tmp_path):
    (tmp_path / "disk.yaml").write_text(GRID)
    (tmp_path / "a-file").write_text("x")
    process = ablate("run", "disk.yaml", "--dry-run", "--results-dir", str(tmp_path / "a-file" / "results"), cwd=tmp_path)
    assert process.returncode == 0 and "3 to run" in process.stdout


def test_disk_full_mid_run_stops_clearly_and_damages_nothing(tmp_path, zygote):
    (tmp_path / "disk.yaml").write_text(GRID)
    code, child = zygote.run(["run", "disk.yaml", "--quiet"], tmp_path, inject="disk_fills")
    assert code == 1, child.stderr
    assert "Traceback" not in child.stderr
    (line,) = child.stderr.strip().splitlines()
    assert line.startswith("ablate: cannot write results/disk/") and "No space left on device (disk full: free some space" in line
    assert line.endswith("Completed results are untouched; rerun the same command to finish the rest")
    first = results_of(tmp_path / "results", "disk")
    assert len(first) == 1 and next(iter(first.values()))["status"] == "completed"
    assert not list((tmp_path / "results").rglob("*.tmp")), "a temporary file was left behind"
    kept = {p: p.read_bytes() for p in (tmp_path / "results").rglob("result.json")}

    code, child = zygote.run(["run", "disk.yaml", "--quiet"], tmp_path)  # space freed: the rest is finished
    assert code == 0, child.stderr
    assert "3 runs: 2 completed now, 1 already done, 0 failed" in child.stdout
    assert {p: p.read_bytes() for p in kept} == kept
    assert all(r["status"] == "completed" for r in results_of(tmp_path / "results", "disk").values())


def test_write_failure_keeps_the_previous_file_and_names_the_cause(tmp_path, monkeypatch):
    store.write_result(tmp_path, {"run_id": "r", "status": "completed", "metrics": {"linear_top1": 1.0}})
    before = (tmp_path / store.RESULT_FILE).read_bytes()

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(store.os, "fsync", full)
    with pytest.raises(store.StoreWriteError) as caught:
        store.write_result(tmp_path, {"run_id": "r", "status": "failed"})
    assert isinstance(caught.value, OSError) and caught.value.errno == errno.ENOSPC
    assert str(tmp_path / store.RESULT_FILE) in caught.value.strerror and "disk full" in caught.value.strerror
    assert (tmp_path / store.RESULT_FILE).read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [store.RESULT_FILE]
    assert json.loads(before)["status"] == "completed"
