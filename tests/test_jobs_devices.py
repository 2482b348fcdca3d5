"""`ablate run --jobs N` on a machine with several GPUs: each worker's run on a GPU of its own, named in a line.

No GPU is needed: `ablate.execute.local.visible_gpus` is replaced by a stand-in list ("cuda:0", "cuda:1"),
and the runs, run in joblib's threading backend so that the stand-ins reach them, record the device they
were given and then train on the CPU.
"""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path

import joblib
import pytest
import torch

import ablate.run
from ablate import cli
from ablate.execute import local
from ablate.execute.local import GpuPool, sharing_note

pytestmark = pytest.mark.usefixtures("one_torch_thread")

GRID = """name: gpus
dataset: {name: shapes, train_size: 64, test_size: 20, image_size: 16}
model: {arch: small_cnn}
train: {epochs: 1, batch_size: 16, lr: 0.5, warmup_epochs: 0.5}
augment: {protocol: both_branches, ops: [crop]}
eval: {linear_epochs: 1, knn_k: 5}
grid:
  seed: [0, 1, 2, 3]
"""
STAND_IN_GPUS = ["cuda:0", "cuda:1"]


class Placements:
    """What each run was given: (device name, start, end) from ablate.run.execute_run, the run trained on the CPU."""

    def __init__(self):
        self.spans: list[tuple[str, float, float]] = []
        self._lock = threading.Lock()

    def most_at_once(self, device: str) -> int:
        """The largest number of runs on `device` at one moment (a sweep over start and end times)."""
        events = sorted((moment, step) for name, start, end in self.spans if name == device
                        for moment, step in ((start, 1), (end, -1)))  # at a tie the end (-1) comes first
        running = most = 0
        for _, step in events:
            running += step
            most = max(most, running)
        return most


@pytest.fixture
def placements(monkeypatch, tmp_path):
    """Stand-in GPUs; a run given one records it and trains on the CPU; workers are threads (see the module)."""
    monkeypatch.setenv("ABLATE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("ABLATE_DEVICE", raising=False)
    monkeypatch.setattr(local, "visible_gpus", lambda: list(STAND_IN_GPUS))
    real_parse, real_execute = ablate.run.parse_device, ablate.run.execute_run
    monkeypatch.setattr(ablate.run, "parse_device",
                        lambda text: torch.device(text) if text in STAND_IN_GPUS else real_parse(text))
    seen = Placements()

    def execute_on_cpu(spec, run_folder=None, progress=None, device=None, **options):
        start = time.monotonic()
        try:
            return real_execute(spec, run_folder, progress, device=torch.device("cpu"), **options)
        finally:
            with seen._lock:
                seen.spans.append((str(device), start, time.monotonic()))

    monkeypatch.setattr(ablate.run, "execute_run", execute_on_cpu)
    with joblib.parallel_config(backend="threading"):
        yield seen


def run_grid(tmp_path: Path, jobs: int) -> tuple[int, list[dict]]:
    (tmp_path / "gpus.yaml").write_text(GRID)
    results = tmp_path / "results"
    status = cli.main(["run", str(tmp_path / "gpus.yaml"), "--jobs", str(jobs), "--executor", "local", "--quiet",
                       "--results-dir", str(results)])
    return status, [json.loads(path.read_text()) for path in sorted((results / "gpus").glob("*/result.json"))]


def device_lines(out: str) -> dict[str, str]:
    """run id → the device its progress line names ("<run id> seed=1 on cuda:1")."""
    return {match[1]: match[2] for match in re.finditer(r"^(\w+) seed=\d on (cuda:\d)$", out, re.MULTILINE)}


def test_two_jobs_on_two_gpus_never_share_one(placements, tmp_path, capsys):
    status, results = run_grid(tmp_path, jobs=2)
    out = capsys.readouterr().out
    assert status == 0 and [r["status"] for r in results] == ["completed"] * 4
    assert len(placements.spans) == 4
    assert {name for name, _, _ in placements.spans} == set(STAND_IN_GPUS)  # both GPUs used
    assert placements.most_at_once("cuda:0") == 1 and placements.most_at_once("cuda:1") == 1
    # the two workers did run at once (else "never two on one GPU" would prove nothing)
    first_end = min(end for _, _, end in placements.spans)
    assert sum(start < first_end for _, start, _ in placements.spans) == 2
    lines = device_lines(out)
    assert sorted(lines) == sorted(r["run_id"] for r in results)  # one line per run, naming its device
    assert sorted(lines.values()) == sorted(name for name, _, _ in placements.spans)
    if not torch.cuda.is_available():  # a stand-in has no product name: provenance keeps the device's own
        assert {r["run_id"]: r["provenance"]["device"] for r in results} == lines
    assert "share" not in out


def test_three_jobs_on_two_gpus_say_they_share(placements, tmp_path, capsys):
    status, results = run_grid(tmp_path, jobs=3)
    out = capsys.readouterr().out
    assert status == 0 and len(results) == 4
    assert out.count("ablate: 3 workers share 2 GPUs (cuda:0, cuda:1): up to 2 runs at once on one GPU") == 1
    assert {name for name, _, _ in placements.spans} == set(STAND_IN_GPUS)
    assert max(placements.most_at_once(name) for name in STAND_IN_GPUS) <= 2
    assert len(device_lines(out)) == 4


def test_ablate_device_keeps_every_run_there(placements, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ABLATE_DEVICE", "cpu")
    status, results = run_grid(tmp_path, jobs=2)
    out = capsys.readouterr().out
    assert status == 0 and len(results) == 4
    assert [name for name, _, _ in placements.spans] == ["cpu"] * 4
    assert all(r["provenance"]["device"].startswith("cpu (") for r in results)
    assert device_lines(out) == {} and "share" not in out


def test_the_pool_gives_the_least_used_gpu():
    pool = GpuPool(["cuda:0", "cuda:1"])
    assert [pool.take() for _ in range(3)] == [["cuda:0"], ["cuda:1"], ["cuda:0"]]
    pool.give_back(["cuda:0"])
    pool.give_back(["cuda:0"])  # cuda:0 now idle, cuda:1 holds one run: the next run goes to the idle GPU
    assert pool.take() == ["cuda:0"]
    assert [pool.take(), pool.take()] == [["cuda:0"], ["cuda:1"]]  # 1/1: a tie, the lower index; then 2/1


def test_a_run_on_several_processes_takes_the_least_used_gpus_in_index_order():
    pool = GpuPool(["cuda:0", "cuda:1", "cuda:2", "cuda:3"])
    assert pool.take(2) == ["cuda:0", "cuda:1"]
    assert pool.take(3) == ["cuda:0", "cuda:2", "cuda:3"]  # the two idle ones, then the least used of the rest, lowest first
    pool.give_back(["cuda:0", "cuda:1"])
    assert pool.take(2) == ["cuda:0", "cuda:1"]  # idle cuda:1, then cuda:0, the lowest of those holding one run


def test_sharing_note_only_with_more_workers_than_gpus():
    assert sharing_note(2, ["cuda:0", "cuda:1"]) is None
    assert sharing_note(5, ["cuda:0", "cuda:1"]) == "ablate: 5 workers share 2 GPUs (cuda:0, cuda:1): up to 3 runs at once on one GPU"
    assert sharing_note(2, ["cuda:0"]) == "ablate: 2 workers share 1 GPU (cuda:0): up to 2 runs at once on one GPU"
    four = ["cuda:0", "cuda:1", "cuda:2", "cuda:3"]
    assert sharing_note(2, four, processes=2) is None  # --jobs 2 --devices 2: a GPU for each of the 4 processes
    assert sharing_note(3, four, processes=2) == ("ablate: 3 workers of 2 processes each share 4 GPUs "
                                                  "(cuda:0, cuda:1, cuda:2, cuda:3): up to 2 processes at once on one GPU")


def test_one_job_or_no_gpu_places_nothing(monkeypatch):
    monkeypatch.delenv("ABLATE_DEVICE", raising=False)
    monkeypatch.setattr(local, "visible_gpus", lambda: list(STAND_IN_GPUS))
    assert local.worker_devices(1) == [] and local.worker_devices(2) == STAND_IN_GPUS
    monkeypatch.setenv("ABLATE_DEVICE", "cuda:1")
    assert local.worker_devices(2) == []
    monkeypatch.delenv("ABLATE_DEVICE")
    monkeypatch.setattr(local, "visible_gpus", lambda: [])
    assert local.worker_devices(4) == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="the stand-in GPUs must be missing for real here")
def test_worker_processes_get_their_gpu_through_the_shared_pool(monkeypatch, tmp_path):
    """Joblib's own process workers: the pool reaches them; each run asks for its stand-in GPU, which this
    machine lacks, so each fails naming it (the failure is the proof of where it was sent). Failing at once,
    the runs seldom overlap, so which GPUs they got is left to the tests above."""
    monkeypatch.setenv("ABLATE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("ABLATE_DEVICE", raising=False)
    monkeypatch.setattr(local, "visible_gpus", lambda: list(STAND_IN_GPUS))
    status, results = run_grid(tmp_path, jobs=2)
    assert status == 1 and len(results) == 4
    asked = [re.fullmatch(r"'(cuda:\d)': this machine has no CUDA device", r["error"]["message"]) for r in results]
    assert all(asked) and {match[1] for match in asked} <= set(STAND_IN_GPUS)
