"""`ablate run --executor slurm` against a real SLURM controller (CI starts one with .ci/slurm-up.sh).

Every test runs the CLI as a subprocess (`python -m ablate`) in a fresh folder, so submitit's job
folders and job ids never meet results of an earlier cluster. Each job trains a tiny shapes grid for
a few seconds; the node has 2 CPUs, so arrays run at most 2 tasks at once. The tests print what they
saw (submitted, requeued, failed-and-reported, resubmission skipped) past pytest's capture, for CI logs.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from cli_helpers import run_ablate

from ablate.config import load_grid
from ablate.plan import plan_grid


def _why_no_slurm() -> str | None:
    conf = os.environ.get("SLURM_CONF", "unset")
    if shutil.which("sbatch") is None:
        return f"no SLURM here: sbatch is not on the PATH (SLURM_CONF={conf}); start one: env_sh=$(bash .ci/slurm-up.sh) && eval \"$env_sh\""
    try:
        subprocess.run(["sinfo", "-h"], capture_output=True, timeout=15, check=True)
    except (OSError, subprocess.SubprocessError) as err:
        return f"no SLURM controller answers `sinfo` (SLURM_CONF={conf}): {err}; start one: env_sh=$(bash .ci/slurm-up.sh) && eval \"$env_sh\""
    return None


WHY_NO_SLURM = _why_no_slurm()
pytestmark = [pytest.mark.slow, pytest.mark.slurm, pytest.mark.skipif(WHY_NO_SLURM is not None, reason=WHY_NO_SLURM or "")]

PARTITION = os.environ.get("ABLATE_SLURM_PARTITION", "debug")
GRACE_S = 5  # a job that ended without result.json is reported failed this long after its end

GRID = """\
name: {name}
dataset: {{name: shapes, train_size: 256, test_size: 128, image_size: 16}}
model: {{arch: small_cnn}}
train: {{epochs: 1, batch_size: 64, lr: 0.5, warmup_epochs: 0.5, checkpoint_minutes: 0.001}}
augment: {{protocol: one_branch}}
eval: {{linear_epochs: 5, knn_k: 10}}
slurm: {{partition: {partition}, gpus_per_node: 0, cpus_per_task: 1, time_min: 10, array_parallelism: 2}}
grid:
{axes}
"""


@pytest.fixture
def say(capsys):
    """Print a line to the real terminal, whatever pytest captures (CI logs show it)."""

    def emit(message: str) -> None:
        with capsys.disabled():
            print(f"\nSLURM: {message}", flush=True)

    return emit


def write_grid(folder: Path, name: str, axes: str) -> tuple[Path, list]:
    path = folder / f"{name}.yaml"
    path.write_text(GRID.format(name=name, partition=PARTITION, axes=axes))
    return path, plan_grid(load_grid(path))


def env() -> dict[str, str]:
    return {**os.environ, "ABLATE_SLURM_GRACE_S": str(GRACE_S), "PYTHONUNBUFFERED": "1"}


def ablate(folder: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return run_ablate(*args, cwd=folder, env=env(), timeout=timeout)


class Background:
    """`ablate ...` running while the test acts on its jobs; its stdout lines are kept with their times."""

    def __init__(self, folder: Path, *args: str):
        self.process = subprocess.Popen([sys.executable, "-m", "ablate", *args], cwd=folder, env=env(), text=True,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.lines: list[tuple[float, str]] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append((time.monotonic(), line.rstrip("\n")))

    def wait(self, timeout: float) -> tuple[int, str, str]:
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise
        self.reader.join(timeout=5)
        return code, "\n".join(line for _, line in self.lines), self.process.stderr.read()

    def first(self, text: str) -> float | None:
        return next((at for at, line in self.lines if text in line), None)


def results_of(folder: Path, grid: str) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in (folder / "results" / grid).glob("*/result.json")}


def job_of(folder: Path, grid: str, run_id: str) -> dict:
    return json.loads((folder / "results" / grid / run_id / "slurm_job.json").read_text())


def wait_for(condition, timeout: float, what: str, poll: float = 0.1):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def sacct_records(job_id: str) -> list[tuple[str, str]]:
    out = subprocess.run(["sacct", "-n", "-P", "-X", "-D", "-j", job_id.split("_")[0], "-o", "JobID,State"],
                         capture_output=True, text=True, timeout=30).stdout
    return [tuple(line.split("|")[:2]) for line in out.splitlines() if line.startswith(job_id + "|")]


def submissions(folder: Path, grid: str) -> list[Path]:
    root = folder / "results" / grid / ".slurm"
    return sorted(root.iterdir()) if root.is_dir() else []


# ------------------------------------------------------------------------------------------ tests


def test_grid_runs_as_job_array_and_a_second_submission_submits_nothing(tmp_path, say):
    grid, planned = write_grid(tmp_path, "e2e", "  pair: [crop, color]")
    started = time.monotonic()
    first = ablate(tmp_path, "run", grid.name, "--executor", "slurm")
    assert first.returncode == 0, first.stdout + first.stderr
    submitted = [line for line in first.stdout.splitlines() if "submitted" in line][0]
    say(f"{submitted} -> finished in {time.monotonic() - started:.0f}s")
    assert "submitted 4 runs to SLURM" in submitted and "job array" in submitted
    assert "4 runs: 4 completed now, 0 already done, 0 failed" in first.stdout
    assert "4 completed, 0 failed, 0 running, 0 pending" in first.stderr  # the live count's last line

    results = results_of(tmp_path, "e2e")
    assert sorted(results) == sorted(r.run_id for r in planned)
    arrays = set()
    for run_id, result in results.items():
        assert result["status"] == "completed" and result["error"] is None
        assert 0.0 <= result["metrics"]["linear_top1"] <= 100.0 and result["metrics"]["knn_top1"] >= 0.0
        assert result["provenance"]["slurm_job_id"], "the job's SLURM_JOB_ID is recorded"
        job = job_of(tmp_path, "e2e", run_id)
        arrays.add(job["job_id"].split("_")[0])
        log = tmp_path / "results" / "e2e" / run_id / "slurm.log"
        assert log.resolve() == Path(job["log"]) and f"run {run_id} of grid e2e" in log.read_text()
        assert f"run {run_id}: completed" in log.read_text()
    assert len(arrays) == 1, "one job array for the grid"

    status = ablate(tmp_path, "status", grid.name)
    assert "grid e2e: 4 runs: 4 completed, 0 failed, 0 pending" in status.stdout

    jobs_before = subprocess.run(["sacct", "-n", "-X", "-a", "-o", "JobID"], capture_output=True, text=True).stdout
    again = ablate(tmp_path, "run", grid.name, "--executor", "slurm")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "all 4 runs are already done; nothing to train; nothing submitted to SLURM" in again.stdout
    assert len(submissions(tmp_path, "e2e")) == 1
    assert subprocess.run(["sacct", "-n", "-X", "-a", "-o", "JobID"], capture_output=True, text=True).stdout == jobs_before
    say(f"resubmission skipped: {again.stdout.strip()}")


def test_time_out_signal_requeues_the_job_and_it_resumes_from_its_checkpoint(tmp_path, say):
    # MoCo v2: a method whose checkpoint holds more than weights (key encoder, queue and its pointer).
    moco = "{name: moco_v2, queue_size: 256, proj_hidden_dim: 64, proj_output_dim: 32}"
    grid, planned = write_grid(tmp_path, "requeue", f"  train.epochs: [60, 1]\n  method: [{moco}]")
    long_run = next(r for r in planned if r.spec.train.epochs == 60)
    submit = ablate(tmp_path, "run", grid.name, "--executor", "slurm", "--no-wait")
    assert submit.returncode == 0 and "submitted 2 runs" in submit.stdout and "not waiting" in submit.stdout, submit.stdout + submit.stderr

    folder = tmp_path / "results" / "requeue" / long_run.run_id
    job_id = job_of(tmp_path, "requeue", long_run.run_id)["job_id"]
    log = folder / "slurm.log"
    wait_for(lambda: (folder / "checkpoint.pt").exists() and log.exists() and "epoch 1 done" in log.read_text(), 120,
             f"job {job_id} to train an epoch and write a checkpoint")
    subprocess.run(["scancel", "--signal=USR2", job_id], check=True, timeout=30)  # what SLURM sends before the time limit
    signalled = time.monotonic()

    status = ablate(tmp_path, "status", grid.name)
    assert f"SLURM job {job_id}" in status.stdout, status.stdout

    follow = ablate(tmp_path, "run", grid.name, "--executor", "slurm", timeout=240)
    assert follow.returncode == 0, follow.stdout + follow.stderr
    assert "nothing to submit" in follow.stdout and "already queued or running" in follow.stdout
    assert len(submissions(tmp_path, "requeue")) == 1, "runs in flight are followed, not submitted again"

    result = results_of(tmp_path, "requeue")[long_run.run_id]
    assert result["status"] == "completed" and len(result["curves"]["epoch_loss"]) == 60
    assert result["spec"]["method"]["name"] == "moco_v2"
    assert result["resumed_from_epoch"] is not None and 0 < result["resumed_from_epoch"] < 60
    records = sacct_records(job_id)
    log = log.read_text()
    assert ("REQUEUED" in {state for _, state in records}) or "Requeued job" in log, (records, log[-2000:])
    assert "requeueing, the next attempt resumes from" in log and "(restart 1)" in log
    say(f"requeued job {job_id} (sacct: {' -> '.join(state for _, state in records)}); MoCo v2 run {long_run.run_id} finished "
        f"from its checkpoint at epoch {result['resumed_from_epoch']:.2f} of 60, {time.monotonic() - signalled:.0f}s after the signal")


def test_a_killed_job_is_reported_failed_with_its_log_while_the_others_complete(tmp_path, say):
    grid, planned = write_grid(tmp_path, "kill", "  train.epochs: [400, 1, 2]")
    doomed = next(r for r in planned if r.spec.train.epochs == 400)
    run = Background(tmp_path, "run", grid.name, "--executor", "slurm")
    folder = tmp_path / "results" / "kill" / doomed.run_id
    wait_for(lambda: (folder / "checkpoint.pt").exists(), 120, "the long run to train")
    job_id = job_of(tmp_path, "kill", doomed.run_id)["job_id"]
    subprocess.run(["scancel", job_id], check=True, timeout=30)
    killed = time.monotonic()
    code, out, err = run.wait(timeout=240)

    assert code == 1, out + err
    reported = run.first(f"failed {doomed.run_id}: SlurmJobLost")
    assert reported is not None, out
    delay = reported - killed
    assert delay < GRACE_S + 30, f"reported {delay:.0f}s after the kill"
    assert f"SLURM job {job_id} ended CANCELLED" in out and "  | " in out  # the state and the log's tail
    assert "3 runs: 2 completed now, 0 already done, 1 failed" in out

    results = results_of(tmp_path, "kill")
    assert {r.run_id: results[r.run_id]["status"] for r in planned} == {
        r.run_id: "failed" if r is doomed else "completed" for r in planned}
    lost = results[doomed.run_id]
    assert lost["error"]["type"] == "SlurmJobLost" and "epoch" in lost["log_tail"]
    assert lost["slurm"]["job_id"] == job_id and lost["slurm"]["state"] == "CANCELLED"

    status = ablate(tmp_path, "status", grid.name)
    assert "3 runs: 2 completed, 1 failed, 0 pending" in status.stdout
    assert f"log: {job_of(tmp_path, 'kill', doomed.run_id)['log']}" in status.stdout
    tail = [line for line in out.splitlines() if line.startswith("  | ")]
    say(f"failed-and-reported: job {job_id} (run {doomed.run_id}) cancelled -> reported {delay:.1f}s later as "
        f"'{run.first and next(line for line in out.splitlines() if line.startswith('failed '))[:140]}'; "
        f"log tail ends '{tail[-1].strip() if tail else ''}'; the 2 other runs completed")


def test_a_preempted_job_is_requeued_by_slurm_and_resumes_from_its_checkpoint(tmp_path, say):
    """Preemption (a `high` partition job takes the node): SIGTERM, which submitit ignores, SIGKILL after
    KillWait, SLURM requeues the job; the new attempt finds the dead attempt's lock and the run's checkpoint."""
    high = os.environ.get("ABLATE_SLURM_HIGH_PARTITION")
    if not high:
        pytest.skip("no preempting partition (ABLATE_SLURM_HIGH_PARTITION unset; .ci/slurm-up.sh sets it)")
    grid, planned = write_grid(tmp_path, "preempt", "  train.epochs: [150]")
    (run,) = planned
    follow = Background(tmp_path, "run", grid.name, "--executor", "slurm")
    folder = tmp_path / "results" / "preempt" / run.run_id
    log = folder / "slurm.log"
    wait_for(lambda: log.exists() and "epoch 1 done" in log.read_text(), 120, "the run to train an epoch")
    job_id = job_of(tmp_path, "preempt", run.run_id)["job_id"]
    preemptor = subprocess.run(["sbatch", "--parsable", "-p", high, "--exclusive", "-o", str(tmp_path / "high.out"),
                                "--wrap", "sleep 1"], capture_output=True, text=True, timeout=30, check=True).stdout.strip()
    preempted = time.monotonic()
    code, out, err = follow.wait(timeout=240)
    assert code == 0, out + err

    result = results_of(tmp_path, "preempt")[run.run_id]
    assert result["status"] == "completed" and len(result["curves"]["epoch_loss"]) == 150
    assert result["resumed_from_epoch"] is not None and result["resumed_from_epoch"] >= 1
    states = [state for _, state in sacct_records(job_id)]
    assert "PREEMPTED" in states or "REQUEUED" in states, states
    assert f"requeued {run.run_id}" in out and "SlurmJobLost" not in out
    say(f"preempted job {job_id} by job {preemptor} in partition {high} (sacct: {' -> '.join(states)}); run {run.run_id} "
        f"finished from its checkpoint at epoch {result['resumed_from_epoch']:.2f} of 150, {time.monotonic() - preempted:.0f}s later")


# ------------------------------------------------------------------------- one run across several tasks


def task_processes(job_name: str, rank: int) -> list[int]:
    """Pids of the job's Python processes that run task (rank) `rank`, found through their environment."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = dict(item.split("=", 1) for item in (proc / "environ").read_bytes().decode(errors="replace").split("\0") if "=" in item)
            command = (proc / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if environ.get("SLURM_JOB_NAME") == job_name and environ.get("SLURM_PROCID") == str(rank) and "submitit" in command:
            found.append(int(proc.name))
    return found


def test_a_run_on_two_tasks_completes_with_one_result(tmp_path, say):
    grid, planned = write_grid(tmp_path, "tasks", "  seed: [0]")
    (run,) = planned
    started = time.monotonic()
    done = ablate(tmp_path, "run", grid.name, "--executor", "slurm", "--set", "slurm.tasks_per_node=2")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 runs: 1 completed now" in done.stdout

    folder = tmp_path / "results" / "tasks" / run.run_id
    result = results_of(tmp_path, "tasks")[run.run_id]
    assert result["status"] == "completed" and result["processes"] == 2
    assert len(result["curves"]["epoch_loss"]) == 1 and 0.0 <= result["metrics"]["linear_top1"] <= 100.0
    assert sorted(path.name for path in folder.iterdir() if not path.name.startswith(".")) == [
        "result.json", "slurm.log", "slurm_job.json"]  # one result, no checkpoint, no rank records
    job = job_of(tmp_path, "tasks", run.run_id)
    logs = {rank: Path(job["log"].replace("_0_log.out", f"_{rank}_log.out")).read_text() for rank in (0, 1)}
    assert "rank 0 of 2 on cpu" in logs[0] and f"run {run.run_id}: completed on 2 processes" in logs[0]
    assert "rank 1 of 2 on cpu" in logs[1] and "completed on 2 processes" not in logs[1]  # rank 0 alone stores it
    say(f"run {run.run_id} trained on 2 SLURM tasks of job {job['job_id']} (gloo) and stored one result in "
        f"{time.monotonic() - started:.0f}s; linear top-1 {result['metrics']['linear_top1']:.1f}")


def signal_rank_one_mid_run(tmp_path: Path, name: str, signal_number: int) -> tuple[Background, object, float]:
    """Start a long run on 2 tasks, wait until it trains, send rank 1's process `signal_number`; return the
    following `ablate run`, the run and when the signal was sent."""
    grid, planned = write_grid(tmp_path, name, "  train.epochs: [400]")
    (run,) = planned
    follow = Background(tmp_path, "run", grid.name, "--executor", "slurm", "--set", "slurm.tasks_per_node=2")
    folder = tmp_path / "results" / name / run.run_id
    wait_for(lambda: (folder / "checkpoint.pt").exists(), 120, "the two tasks to train and rank 0 to checkpoint")
    (victim,) = wait_for(lambda: task_processes(f"ablate-{name}", 1), 30, "rank 1's process")
    os.kill(victim, signal_number)
    return follow, run, time.monotonic()


def test_a_task_killed_mid_run_ends_the_run_failed_naming_it(tmp_path, say):
    follow, run, killed = signal_rank_one_mid_run(tmp_path, "taskkill", signal.SIGKILL)
    code, out, err = follow.wait(timeout=180)
    ended = time.monotonic() - killed

    assert code == 1, out + err
    result = results_of(tmp_path, "taskkill")[run.run_id]
    assert result["status"] == "failed" and result["error"]["type"] == "RanksFailed", result["error"]
    message = result["error"]["message"]
    assert message.startswith("training on 2 processes failed: rank 1 reported no error (killed, crashed or hung); "
                              "rank 0 raised RuntimeError: "), message
    assert f"failed {run.run_id}: RanksFailed: training on 2 processes failed: rank 1" in out
    assert ended < 60, f"the run ended {ended:.0f}s after the kill"
    job_id = job_of(tmp_path, "taskkill", run.run_id)["job_id"]
    wait_for(lambda: not task_processes("ablate-taskkill", 0), 60, "rank 0's task to end too: nothing left hanging")
    say(f"killed rank 1 of job {job_id}: the run ended failed {ended:.0f}s later: '{message[:160]}'; "
        f"sacct: {' -> '.join(state for _, state in sacct_records(job_id))}")


def test_a_two_task_job_signalled_to_time_out_is_requeued_and_resumes_from_the_shared_checkpoint(tmp_path, say):
    grid, planned = write_grid(tmp_path, "taskrequeue", "  train.epochs: [40]")
    (run,) = planned
    submit = ablate(tmp_path, "run", grid.name, "--executor", "slurm", "--no-wait", "--set", "slurm.tasks_per_node=2")
    assert submit.returncode == 0, submit.stdout + submit.stderr
    folder = tmp_path / "results" / "taskrequeue" / run.run_id
    job_id = job_of(tmp_path, "taskrequeue", run.run_id)["job_id"]
    log = folder / "slurm.log"
    wait_for(lambda: (folder / "checkpoint.pt").exists() and log.exists() and "epoch 2 done" in log.read_text(), 120,
             f"job {job_id} to train two epochs on its two tasks")
    subprocess.run(["scancel", "--signal=USR2", job_id], check=True, timeout=30)  # every task gets it; rank 0 requeues
    signalled = time.monotonic()
    follow = ablate(tmp_path, "run", grid.name, "--executor", "slurm", "--set", "slurm.tasks_per_node=2", timeout=240)
    assert follow.returncode == 0, follow.stdout + follow.stderr

    result = results_of(tmp_path, "taskrequeue")[run.run_id]
    assert result["status"] == "completed" and result["processes"] == 2 and len(result["curves"]["epoch_loss"]) == 40
    assert result["resumed_from_epoch"] is not None and 2 <= result["resumed_from_epoch"] < 40
    text = log.read_text()
    assert "requeueing, the next attempt resumes from" in text and "(restart 1)" in text
    say(f"2-task job {job_id} signalled (USR2), requeued by rank 0, resumed by both tasks from the checkpoint at epoch "
        f"{result['resumed_from_epoch']:.2f} of 40 and completed {time.monotonic() - signalled:.0f}s after the signal "
        f"(sacct: {' -> '.join(state for _, state in sacct_records(job_id))})")


def test_a_hung_task_ends_the_run_failed_within_the_collective_timeout(tmp_path, say, monkeypatch):
    """Rank 1 stopped (SIGSTOP: alive, silent, as a rank stuck in a driver call): rank 0 waits in its collective
    for ABLATE_DIST_TIMEOUT_S (the job inherits the submitter's environment), writes the failed result and exits
    non-zero, and srun ends the stopped task with the job."""
    monkeypatch.setenv("ABLATE_DIST_TIMEOUT_S", "5")
    follow, run, stopped = signal_rank_one_mid_run(tmp_path, "taskhang", signal.SIGSTOP)
    code, out, err = follow.wait(timeout=180)
    ended = time.monotonic() - stopped

    assert code == 1, out + err
    result = results_of(tmp_path, "taskhang")[run.run_id]
    message = result["error"]["message"]
    assert message.startswith("training on 2 processes failed: rank 1 reported no error (killed, crashed or hung); "
                              "rank 0 raised RuntimeError: "), message
    assert "timed out" in message.lower(), message
    assert 5 <= ended < 60, f"the run ended {ended:.0f}s after rank 1 stopped"
    # srun ends the stopped task once rank 0 exits non-zero (SIGTERM, then SIGKILL after the node's KillWait)
    wait_for(lambda: not task_processes("ablate-taskhang", 1), 60, "the stopped task to be ended with its job")
    say(f"stopped rank 1 (SIGSTOP): the run ended failed {ended:.0f}s later (timeout 5 s): '{message[:170]}'")


def test_a_preempted_two_task_job_resumes_from_the_shared_checkpoint(tmp_path, say):
    """Preemption of a run on 2 tasks: SLURM kills both tasks (SIGTERM, ignored by submitit, then SIGKILL) and
    requeues the job; rank 0 of the new attempt breaks its predecessor's lock and both ranks resume from the one
    checkpoint."""
    high = os.environ.get("ABLATE_SLURM_HIGH_PARTITION")
    if not high:
        pytest.skip("no preempting partition (ABLATE_SLURM_HIGH_PARTITION unset; .ci/slurm-up.sh sets it)")
    grid, planned = write_grid(tmp_path, "taskpreempt", "  train.epochs: [80]")
    (run,) = planned
    follow = Background(tmp_path, "run", grid.name, "--executor", "slurm", "--set", "slurm.tasks_per_node=2")
    folder = tmp_path / "results" / "taskpreempt" / run.run_id
    log = folder / "slurm.log"
    wait_for(lambda: log.exists() and "epoch 1 done" in log.read_text(), 120, "the run to train an epoch on 2 tasks")
    job_id = job_of(tmp_path, "taskpreempt", run.run_id)["job_id"]
    subprocess.run(["sbatch", "--parsable", "-p", high, "--exclusive", "-o", str(tmp_path / "high.out"), "--wrap", "sleep 1"],
                   capture_output=True, text=True, timeout=30, check=True)
    preempted = time.monotonic()
    code, out, err = follow.wait(timeout=240)
    assert code == 0, out + err

    result = results_of(tmp_path, "taskpreempt")[run.run_id]
    assert result["status"] == "completed" and result["processes"] == 2 and len(result["curves"]["epoch_loss"]) == 80
    assert result["resumed_from_epoch"] is not None and result["resumed_from_epoch"] >= 1
    states = [state for _, state in sacct_records(job_id)]
    assert "PREEMPTED" in states or "REQUEUED" in states, states
    assert "(restart 1)" in log.read_text()
    say(f"preempted 2-task job {job_id} (sacct: {' -> '.join(states)}): both ranks resumed from the checkpoint at epoch "
        f"{result['resumed_from_epoch']:.2f} of 80 and completed {time.monotonic() - preempted:.0f}s later")
