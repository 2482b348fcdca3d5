"""Kill at any moment: `ablate run` is SIGKILLed at random moments, again and again, then rerun. In the
end every run has exactly one valid result.json, no completed run was written (trained) again, and a
watcher that parsed every result.json it could see during the trials never saw a partial or corrupt
one. A truncated result.json found on disk is reported by `ablate status` and rerun.

Trials fork `ablate.cli.main` from a process with everything imported (see faults_helpers.Zygote),
so that a kill lands in the work (data, training, checkpoints, evaluation, result writes), not in
the imports; one trial kills a real `python -m ablate run` process.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from faults_helpers import ResultWatcher, ablate, child_env, results_of, tiny_grid

from ablate.config import load_grid
from ablate.plan import plan_grid

pytestmark = pytest.mark.slow  # seconds of real processes each; `pytest -m 'not slow'` leaves them out

# 4 runs of 2 epochs: each writes a checkpoint at its first epoch's end, then its result.
GRID = tiny_grid("killme", axes="  pair: [crop, color]\n", train="epochs: 2, batch_size: 32")
KILLS = 24


def planned_ids(folder: Path) -> set[str]:
    return {run.run_id for run in plan_grid(load_grid(folder / "killme.yaml"))}


def assert_finished_cleanly(folder: Path) -> None:
    """Every planned run completed, one result.json each, no temporary file or checkpoint left over."""
    results = results_of(folder / "results", "killme")
    assert set(results) == planned_ids(folder)
    for run_id, result in results.items():
        assert result["status"] == "completed" and result["run_id"] == run_id, result.get("error")
        run_folder = folder / "results" / "killme" / run_id
        names = sorted(p.name for p in run_folder.iterdir())
        assert names.count("result.json") == 1
        assert not [n for n in names if n.startswith((".result.json.", ".checkpoint.pt."))], names
        assert "checkpoint.pt" not in names


def test_sigkill_at_random_moments_loses_nothing_and_trains_nothing_twice(tmp_path, zygote):
    rng = random.Random(20240607)
    reference = tmp_path / "reference"
    reference.mkdir()
    (reference / "killme.yaml").write_text(GRID)
    clock = time.monotonic()
    code, child = zygote.run(["run", "killme.yaml", "--quiet"], reference)
    full = time.monotonic() - clock  # one uninterrupted grid: kills land uniformly inside this span
    assert code == 0, child.stderr

    watcher = ResultWatcher(tmp_path, pattern="round*/results/killme/*/result.json")
    watcher.start()
    rounds, kills, finished_before_kill, resumed = [], 0, 0, 0
    try:
        folder = None
        while kills < KILLS:
            if folder is None:
                folder = tmp_path / f"round{len(rounds)}"
                folder.mkdir()
                (folder / "killme.yaml").write_text(GRID)
                rounds.append(folder)
            child = zygote.start(["run", "killme.yaml", "--quiet"], folder)
            time.sleep(rng.uniform(0, full))
            if child.kill():
                kills += 1
                continue
            assert child.wait() == 0, child.stderr  # it finished the grid before the kill came
            finished_before_kill += 1
            folder = None
        for folder in rounds:  # rerun each round to the end
            code, child = zygote.run(["run", "killme.yaml", "--quiet"], folder)
            assert code == 0, child.stderr
    finally:
        watcher.finish()

    assert kills >= 20
    assert watcher.problems == []
    assert watcher.reads > 100  # the watcher really was reading while results were written
    reference_results = results_of(reference / "results", "killme")
    for folder in rounds:
        assert_finished_cleanly(folder)
        for run_id, result in results_of(folder / "results", "killme").items():
            resumed += result["resumed_from_epoch"] is not None
            # Resumed or not, the numbers are those of the uninterrupted run (bit-identical resume).
            assert result["curves"]["epoch_loss"] == reference_results[run_id]["curves"]["epoch_loss"]
    print(f"{kills} kills in {len(rounds)} rounds ({finished_before_kill} grids finished before their kill), "
          f"{resumed} runs resumed from a checkpoint, {watcher.reads} result reads, full grid {full:.2f} s")


def test_the_watcher_sees_a_result_written_in_place(tmp_path, zygote):
    """The watcher can fail: with results written in place (no temp file + rename) it sees partial files."""
    (tmp_path / "killme.yaml").write_text(GRID)
    watcher = ResultWatcher(tmp_path / "results", interval=0.001)
    watcher.start()
    try:
        code, child = zygote.run(["run", "killme.yaml", "--quiet"], tmp_path, inject="nonatomic_writes")
    finally:
        watcher.finish()
    assert code == 0, child.stderr
    assert any("unreadable result visible" in problem for problem in watcher.problems), watcher.reads


def test_sigkill_of_a_real_ablate_process_then_rerun(tmp_path, zygote):
    (tmp_path / "killme.yaml").write_text(GRID)
    process = subprocess.Popen([sys.executable, "-m", "ablate", "run", "killme.yaml", "--quiet"], cwd=tmp_path,
                               env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    runs = tmp_path / "results" / "killme"
    deadline = time.monotonic() + 120
    while not (list(runs.glob("*/result.json")) or list(runs.glob("*/checkpoint.pt"))):
        assert process.poll() is None and time.monotonic() < deadline, "ablate run ended before it could be killed"
        time.sleep(0.005)
    time.sleep(random.uniform(0, 0.3))
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    code, child = zygote.run(["run", "killme.yaml", "--quiet"], tmp_path)
    assert code == 0, child.stderr
    assert_finished_cleanly(tmp_path)


def test_truncated_result_is_reported_by_status_and_rerun(tmp_path, zygote):
    (tmp_path / "killme.yaml").write_text(GRID)
    code, child = zygote.run(["run", "killme.yaml", "--quiet"], tmp_path)
    assert code == 0, child.stderr
    victim = sorted((tmp_path / "results" / "killme").glob("*/result.json"))[0]
    intact = {p: p.read_bytes() for p in victim.parent.parent.glob("*/result.json") if p != victim}
    victim.write_bytes(victim.read_bytes()[:100])  # as a crashed editor or a broken disk might leave it

    status = ablate("status", "killme.yaml", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    assert "grid killme: 4 runs: 3 completed, 0 failed" in status.stdout and ", 1 corrupt" in status.stdout
    run_id = victim.parent.name
    assert f"corrupt {run_id}: {victim.relative_to(tmp_path)}: not valid JSON" in status.stdout
    assert "(treated as not done; it will be rerun)" in status.stdout

    code, child = zygote.run(["run", "killme.yaml", "--quiet"], tmp_path)
    assert code == 0, child.stderr
    assert "4 runs: 1 completed now, 3 already done, 0 failed" in child.stdout
    assert json.loads(victim.read_text())["status"] == "completed"
    assert {p: p.read_bytes() for p in intact} == intact
