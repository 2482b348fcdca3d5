"""The SLURM executor without a cluster: parameter mapping, array splitting, sacct parsing, lost jobs, the job's callable."""

import json
import os
import pickle
import socket
import time
from pathlib import Path

import pytest
import submitit
from submitit.helpers import DelayedSubmission
from submitit.slurm import slurm as submitit_slurm

from ablate.config import SlurmSpec, load_grid
from ablate import execute
from ablate.execute import ExecutorError, base
from ablate.execute.slurm import follow, queries, submit
from ablate.execute.slurm import job as slurm_job
from ablate.execute.claim import LOCK_FILE
from ablate.plan import plan_grid
from ablate.store import read_result, run_dir, write_result

GRID = """\
name: units
dataset: {name: shapes, train_size: 64, test_size: 32, image_size: 16}
slurm: {partition: gpu, gpus_per_node: 2, time_min: 30}
grid:
  seed: [0, 1, 2, 3, 4, 5, 6]
"""


@pytest.fixture
def grid_file(tmp_path):
    path = tmp_path / "units.yaml"
    path.write_text(GRID)
    return path


@pytest.fixture
def planned(grid_file):
    return plan_grid(load_grid(grid_file))


# ------------------------------------------------------------------------------ parameter mapping


def test_every_field_maps_to_its_submitit_parameter():
    spec = SlurmSpec(partition="gpu", account="lab", qos="high", gpus_per_node=4, cpus_per_task=10, mem_gb=64,
                     time_min=240, array_parallelism=16, constraint="a100", additional_parameters={"exclude": "n7"})
    assert submit.executor_parameters(spec) == {
        "slurm_partition": "gpu", "slurm_account": "lab", "slurm_qos": "high", "gpus_per_node": 4,
        "cpus_per_task": 10, "mem_gb": 64, "timeout_min": 240, "slurm_array_parallelism": 16,
        "slurm_constraint": "a100", "slurm_additional_parameters": {"exclude": "n7"}, "slurm_signal_delay_s": 90,
        "tasks_per_node": 4, "slurm_srun_args": ["--kill-on-bad-exit=1"],  # one task (rank) per GPU
    }


@pytest.mark.parametrize("fields, gpus, processes, task_params", [
    ({}, 0, 1, {}),
    ({}, 1, 1, {}),  # one GPU (resolved from the partition): one task
    ({"gpus_per_node": 8}, 8, 8, {"tasks_per_node": 8}),
    ({"gpus_per_node": 4, "nodes": 2}, 4, 8, {"nodes": 2, "tasks_per_node": 4}),
    ({"gpus_per_node": 0, "tasks_per_node": 2}, 0, 2, {"tasks_per_node": 2}),  # ranks on the CPU
    ({"gpus_per_node": 4, "tasks_per_node": 1}, 4, 1, {}),  # asked for: one process beside four GPUs
])
def test_a_run_has_one_task_per_gpu_on_every_node(fields, gpus, processes, task_params):
    """`gpus`: the GPUs per node once resolved (as given, else from the partition)."""
    spec = SlurmSpec(**fields)
    params = submit.executor_parameters(spec, gpus=gpus)
    assert submit.processes_per_run(spec, gpus) == processes
    assert {key: params[key] for key in ("nodes", "tasks_per_node") if key in params} == task_params
    assert params.get("slurm_srun_args") == (["--kill-on-bad-exit=1"] if processes > 1 else None)


def test_a_batch_the_tasks_cannot_share_is_refused_before_submission(planned, tmp_path, monkeypatch):
    monkeypatch.setattr(submit, "max_array_size", lambda: 1000)
    sbatch_calls = []
    monkeypatch.setattr(submit.submitit, "AutoExecutor", lambda **kwargs: sbatch_calls.append(kwargs))
    batch = planned[0].spec.train.batch_size
    with pytest.raises(ExecutorError, match=f"train.batch_size {batch} is not divisible by the 3 processes of each SLURM job"):
        submit.submit_runs(planned, "g", tmp_path, SlurmSpec(gpus_per_node=0, tasks_per_node=3))
    assert sbatch_calls == [] and not (tmp_path / "g").exists()


def test_unset_fields_are_omitted():
    params = submit.executor_parameters(SlurmSpec(), gpus=0)
    assert params == {"timeout_min": 120, "slurm_array_parallelism": 64, "slurm_signal_delay_s": 90}
    assert submit.executor_parameters(SlurmSpec(), gpus=1)["gpus_per_node"] == 1  # resolved from the partition
    assert "gpus_per_node" not in submit.executor_parameters(SlurmSpec(gpus_per_node=0), gpus=1)  # explicit 0 wins
    extra = submit.executor_parameters(SlurmSpec(additional_parameters={"exclusive": True, "requeue": False}))
    assert extra["slurm_additional_parameters"] == {"exclusive": True}  # false: the flag is left out


@pytest.mark.parametrize("time_min, delay", [(1, 12), (2, 24), (7, 84), (10, 90), (120, 90)])
def test_time_out_signal_comes_before_the_limit(time_min, delay):
    assert submit.signal_delay_s(time_min) == delay
    assert submit.signal_delay_s(time_min) < time_min * 60


def test_parameters_become_the_sbatch_lines(tmp_path, monkeypatch):
    """submitit itself accepts the mapped names and writes them as #SBATCH options."""
    monkeypatch.setattr(submitit_slurm.SlurmExecutor, "affinity", classmethod(lambda cls: 2))  # no srun needed
    spec = SlurmSpec(partition="gpu", account="lab", qos="high", gpus_per_node=2, cpus_per_task=6, mem_gb=12.5,
                     time_min=30, array_parallelism=3, constraint="v100", additional_parameters={"exclude": "n7"})
    executor = submitit.AutoExecutor(folder=tmp_path, cluster="slurm", slurm_max_num_timeout=5)
    executor.update_parameters(**submit.executor_parameters(spec))
    inner = executor._executor
    assert inner.max_num_timeout == 5
    script = submitit_slurm._make_sbatch_string(command="true", folder=tmp_path, map_count=10, **inner.parameters)
    for line in ["--partition=gpu", "--account=lab", "--qos=high", "--gpus-per-node=2", "--cpus-per-task=6",
                 "--mem=12800MB", "--time=30", "--array=0-9%3", "--constraint=v100", "--exclude=n7", "--signal=USR2@90"]:
        assert f"#SBATCH {line}" in script


def test_set_overrides_the_grid_slurm_section(grid_file):
    grid = load_grid(grid_file, ["slurm.partition=debug", "slurm.array_parallelism=2", "slurm.gpus_per_node=0"])
    assert (grid.slurm.partition, grid.slurm.array_parallelism, grid.slurm.gpus_per_node, grid.slurm.time_min) == ("debug", 2, 0, 30)


# --------------------------------------------------------------------------------------- arrays


def test_split_arrays_respects_the_largest_array():
    chunks = submit.split_arrays(list(range(2500)), 1001)
    assert [len(c) for c in chunks] == [1001, 1001, 498]
    assert sum(chunks, []) == list(range(2500))
    assert submit.split_arrays([], 10) == []
    with pytest.raises(ValueError):
        submit.split_arrays([1], 0)


def test_max_array_size_is_read_from_scontrol(monkeypatch):
    class Done:
        stdout = "MaxArraySize            = 40\nMaxJobCount             = 20000\n"

    monkeypatch.setattr(queries, "_answers", lambda command, timeout=10.0: Done())
    assert queries.max_array_size() == 40
    monkeypatch.setattr(queries, "_answers", lambda command, timeout=10.0: None)
    assert queries.max_array_size() == queries.DEFAULT_MAX_ARRAY_SIZE


class FakeJob:
    def __init__(self, job_id, folder):
        self.job_id = job_id
        self.paths = submitit.core.utils.JobPaths(folder, job_id)


class FakeExecutor:
    """Stands for submitit.AutoExecutor: records each batch (one job array each)."""

    arrays: list = []

    def __init__(self, folder, cluster, slurm_max_num_timeout):
        self.folder, self.params, self.pending = Path(folder), {}, None
        FakeExecutor.arrays = []

    def update_parameters(self, **params):
        self.params.update(params)

    def batch(self):
        executor = self

        class Batch:
            def __enter__(self):
                executor.pending = []

            def __exit__(self, *exc):
                array = 100 + len(FakeExecutor.arrays)
                FakeExecutor.arrays.append([fn for fn, _ in executor.pending])
                for index, (_, job) in enumerate(executor.pending):
                    job.job_id = f"{array}_{index}"
                    job.paths = submitit.core.utils.JobPaths(executor.folder, job.job_id)
                return False

        return Batch()

    def submit(self, fn):
        job = FakeJob("?", self.folder)
        self.pending.append((fn, job))
        return job


def test_submission_splits_into_arrays_and_records_each_job(planned, tmp_path, monkeypatch):
    monkeypatch.setattr(submit.submitit, "AutoExecutor", FakeExecutor)
    monkeypatch.setattr(submit, "resolve_gpus", lambda spec: 0)
    submitted, folder = submit.submit_runs(planned, "units", tmp_path / "results", SlurmSpec(), array_size=3)
    assert [len(a) for a in FakeExecutor.arrays] == [3, 3, 1]
    assert [fn.run_id for a in FakeExecutor.arrays for fn in a] == [r.run_id for r in planned]
    assert [s.job_id for s in submitted] == ["100_0", "100_1", "100_2", "101_0", "101_1", "101_2", "102_0"]
    assert folder.parent == tmp_path / "results" / "units" / ".slurm"
    assert submit.describe_arrays(submitted) == "100 (tasks 0-2), 101 (tasks 0-2), 102 (tasks 0-0)"
    for record, run in zip(submitted, planned):
        run_folder = run_dir(tmp_path / "results", "units", run.run_id)
        saved = json.loads((run_folder / follow.JOB_FILE).read_text())
        assert saved["job_id"] == record.job_id and saved["log"] == str(folder / f"{record.job_id}_0_log.out")
        assert os.readlink(run_folder / follow.LOG_LINK) == os.path.relpath(saved["log"], run_folder)


def test_retried_failed_result_is_set_aside_before_submission(planned, tmp_path, monkeypatch):
    monkeypatch.setattr(submit.submitit, "AutoExecutor", FakeExecutor)
    monkeypatch.setattr(submit, "resolve_gpus", lambda spec: 0)
    folder = run_dir(tmp_path, "units", planned[0].run_id)
    write_result(folder, {"run_id": planned[0].run_id, "status": "failed", "error": {"type": "RuntimeError", "message": "boom"}})
    submit.submit_runs(planned[:1], "units", tmp_path, SlurmSpec())
    assert read_result(folder) is None  # the follower now waits for the new attempt's result
    assert json.loads(next(folder.glob("result.failed-*.json")).read_text())["error"]["message"] == "boom"


# ---------------------------------------------------------------------------- scheduler states


def test_array_ids_expand():
    assert queries.expand_job_ids("25_[1-3,7%2]") == ["25_1", "25_2", "25_3", "25_7"]
    assert queries.expand_job_ids("25_4") == ["25_4"] and queries.expand_job_ids("31") == ["31"]


def test_sacct_output_gives_the_newest_record_and_counts_requeues():
    text = ("31|REQUEUED|0:0|2026-11-28T21:18:47\n"
            "25_1|COMPLETED|0:0|2026-11-28T21:12:44\n"
            "25_0|CANCELLED by 0|0:15|2026-11-28T21:12:50\n"
            "31|RUNNING|0:0|Unknown\n"
            "25_[2-3%2]|PENDING|0:0|Unknown\n")
    states = queries.parse_sacct(text)
    assert states["31"].state == "RUNNING" and states["31"].requeues == 1 and not states["31"].final
    assert states["25_0"].state == "CANCELLED" and states["25_0"].final and states["25_0"].exit_code == "0:15"
    assert states["25_0"].end == time.mktime(time.strptime("2026-11-28T21:12:50", "%Y-%m-%dT%H:%M:%S"))
    assert states["25_2"].state == states["25_3"].state == "PENDING" and states["25_2"].end is None


# ----------------------------------------------------------------------------------- lost jobs


def _submitted(tmp_path, run, job_id, log_text):
    folder = run_dir(tmp_path, "units", run.run_id)
    log = tmp_path / f"{job_id}.log"
    log.write_text(log_text)
    submit._record_job(folder, submit.Submitted(run.run_id, job_id, log, time.time() - 100), tmp_path)
    return folder


def test_a_job_that_died_without_result_is_recorded_failed_with_its_log_tail(planned, tmp_path, monkeypatch):
    dead, alive, done = planned[:3]
    dead_folder = _submitted(tmp_path, dead, "40_0", "".join(f"line {i}\n" for i in range(50)) + "Killed\n")
    _submitted(tmp_path, alive, "40_1", "training\n")
    done_folder = _submitted(tmp_path, done, "40_2", "")
    write_result(done_folder, {"run_id": done.run_id, "status": "completed"})
    states = {"40_0": queries.JobState("OUT_OF_MEMORY", "0:125", end=time.time() - 60),
              "40_1": queries.JobState("RUNNING"), "40_2": queries.JobState("COMPLETED", end=time.time())}
    monkeypatch.setattr(follow, "scheduler_states", lambda ids: {i: states[i] for i in ids})
    views = {v.run.run_id: v for v in follow.Follower("units", tmp_path, grace=5).look([dead, alive, done])}
    assert [views[r.run_id].state for r in (dead, alive, done)] == ["failed", "running", "completed"]
    result = read_result(dead_folder)
    assert result["status"] == "failed" and result["error"]["type"] == "SlurmJobLost"
    assert "40_0 ended OUT_OF_MEMORY, exit code 0:125" in result["error"]["message"]
    assert result["log_tail"].splitlines()[-1] == "Killed" and len(result["log_tail"].splitlines()) == base.LOG_TAIL_LINES
    assert result["spec"] == dead.spec.model_dump(mode="json")
    lines = base.describe_failure(views[dead.run_id])
    assert lines[0].startswith(f"failed {dead.run_id}: SlurmJobLost: SLURM job 40_0") and lines[-1] == "  | Killed"


def test_a_job_is_lost_only_after_the_grace_period(planned, tmp_path, monkeypatch):
    run = planned[0]
    folder = _submitted(tmp_path, run, "41_0", "x\n")
    ended = {"at": time.time()}
    monkeypatch.setattr(follow, "scheduler_states", lambda ids: {"41_0": queries.JobState("CANCELLED", end=ended["at"])})
    follower = follow.Follower("units", tmp_path, grace=30)
    assert follower.look([run])[0].state == "queued" and read_result(folder) is None
    ended["at"] -= 31
    assert follower.look([run])[0].state == "failed"


def test_a_job_unknown_to_the_scheduler_is_lost_after_the_grace_period(planned, tmp_path, monkeypatch):
    run = planned[0]
    _submitted(tmp_path, run, "42_0", "")  # submitted 100 s ago, never seen by sacct
    monkeypatch.setattr(follow, "scheduler_states", lambda ids: {})
    view = follow.Follower("units", tmp_path, grace=5).look([run])[0]
    assert view.state == "failed" and "unknown to the scheduler" in view.result["error"]["message"]


def test_failed_result_never_overwrites_a_result(tmp_path):
    path = tmp_path / "result.json"
    assert follow.write_if_absent(path, {"status": "failed"})
    assert not follow.write_if_absent(path, {"status": "other"})
    assert json.loads(path.read_text()) == {"status": "failed"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]  # no temporary file left


# ---------------------------------------------------------------------------- the job's callable


def test_callable_pickles_small_and_checkpoints_as_itself(planned, tmp_path):
    job = slurm_job.SlurmRun(planned[0], "units", tmp_path)
    assert set(vars(job)) == {"spec_json", "axes_json", "grid", "run_id", "results_root", "logs"}  # logs: ablate run --log
    assert len(pickle.dumps(job)) < 4000  # spec JSON and names only: never a model
    again = pickle.loads(pickle.dumps(job))
    assert again.planned() == planned[0]
    delayed = job.checkpoint()
    assert isinstance(delayed, DelayedSubmission) and delayed.function is job and delayed.args == ()


def test_callable_does_not_train_a_completed_run(planned, tmp_path):
    run = planned[0]
    write_result(run_dir(tmp_path, "units", run.run_id), {"run_id": run.run_id, "status": "completed"})
    assert slurm_job.SlurmRun(run, "units", tmp_path)() == {"run_id": run.run_id, "status": "completed"}


def test_lock_of_this_jobs_earlier_attempt_is_broken(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    lock, attempt = tmp_path / LOCK_FILE, tmp_path / slurm_job.ATTEMPT_FILE
    lock.write_text(json.dumps({"host": "node9", "pid": 4242, "since": 0}))
    attempt.write_text(json.dumps({"job_id": "76", "host": "node9", "pid": 4242}))
    slurm_job._break_lock_of_earlier_attempt(tmp_path, "77")
    assert lock.exists()  # another job's lock: claim's own rules decide
    attempt.write_text(json.dumps({"job_id": "77", "host": "node9", "pid": 4242}))
    slurm_job._break_lock_of_earlier_attempt(tmp_path, "77")
    assert not lock.exists() and list(tmp_path.iterdir()) == [attempt]
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid()}))  # our own pid: a leftover
    slurm_job._break_lock_of_earlier_attempt(tmp_path, "")
    assert not lock.exists()


def test_auto_picks_slurm_only_where_it_answers(monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.setattr(queries, "slurm_available", lambda: (False, "sbatch is not on the PATH"))
    assert execute.choose_executor("auto") == ("local", "sbatch is not on the PATH")
    monkeypatch.setattr(queries, "slurm_available", lambda: (True, "ok"))
    assert execute.choose_executor("auto") == ("slurm", "ok")
    assert execute.choose_executor("local")[0] == "local"
    monkeypatch.setenv("SLURM_JOB_ID", "5")
    assert execute.choose_executor("auto")[0] == "local"  # inside an allocation: use it
    assert execute.choose_executor("slurm")[0] == "slurm"


def test_a_preempted_job_that_squeue_lists_pending_is_not_finished(monkeypatch):
    """sacct shows PREEMPTED for seconds before the requeued record appears; squeue already says PENDING."""
    class Done:
        def __init__(self, stdout):
            self.stdout = stdout

    answers = {"sacct": Done("47|PREEMPTED|0:0|2026-11-28T21:28:03\n48_0|CANCELLED|0:0|2026-11-28T21:28:03\n"),
               "squeue": Done("47|PENDING\n49|RUNNING\n")}
    monkeypatch.setattr(queries, "_answers", lambda command, timeout=10.0: answers[command[0]])
    states = queries.scheduler_states(job for job in ["47", "48_0"])
    assert states["47"].state == "PENDING" and not states["47"].final and states["47"].requeues == 1
    assert states["48_0"].state == "CANCELLED" and states["48_0"].final
    answers["sacct"] = None  # no accounting: squeue alone, and a job it does not list is gone
    states = queries.scheduler_states(["47", "48_0"])
    assert states["47"].state == "PENDING" and states["48_0"].state == "GONE" and states["48_0"].final


def test_an_array_task_missing_from_sacct_but_listed_by_squeue_is_alive(monkeypatch):
    """Seen on SLURM 22.05: the moment task 28_2 starts, sacct lists 28_0, 28_1 and 28_3 but not 28_2; squeue has it RUNNING."""
    class Done:
        def __init__(self, stdout):
            self.stdout = stdout

    answers = {"sacct": Done("28_0|COMPLETED|0:0|2026-12-02T10:29:36\n28_1|COMPLETED|0:0|2026-12-02T10:29:36\n"
                             "28_3|RUNNING|0:0|Unknown\n"),
               "squeue": Done("28_3|RUNNING\n28_2|RUNNING\n")}
    monkeypatch.setattr(queries, "_answers", lambda command, timeout=10.0: answers[command[0]])
    states = queries.scheduler_states(["28_0", "28_2", "28_3"])
    assert states["28_2"].state == "RUNNING" and not states["28_2"].final and states["28_2"].requeues == 0
    assert states["28_0"].state == "COMPLETED" and states["28_3"].state == "RUNNING"
    answers["squeue"] = Done("28_3|RUNNING\n")  # unknown to both: left out (the follower decides after its grace)
    assert "28_2" not in queries.scheduler_states(["28_0", "28_2", "28_3"])


def test_follow_reads_a_finished_run_once_and_waits_for_the_others(planned, tmp_path, monkeypatch):
    # Run 0 has its result at the first poll, run 1 at the third: run 0 is looked at once, run 1 three times.
    first, second = planned[0], planned[1]
    asked: list[list[str]] = []

    class FakeFollower:
        def __init__(self, grid, results_root):
            pass

        def look(self, runs):
            asked.append([run.run_id for run in runs])
            polls = len(asked)
            return [base.RunView(run, "completed" if run is first or polls >= 3 else "running") for run in runs]

    monkeypatch.setattr(follow, "Follower", FakeFollower)
    summary = follow.follow([first, second], "units", tmp_path, total=2, say=lambda line: None, poll_seconds=lambda e: 0.0)
    assert asked == [[first.run_id, second.run_id], [second.run_id], [second.run_id]]
    assert summary.completed == 2 and summary.failed == []


# ------------------------------------------------------------------------- the executor seam (CLI)


def test_explicit_slurm_without_a_controller_is_one_line_and_exit_2(grid_file, tmp_path, monkeypatch, capsys):
    from ablate.cli import main

    monkeypatch.setattr(queries, "slurm_available", lambda: (False, "sbatch is not on the PATH"))
    assert main(["run", str(grid_file), "--executor", "slurm", "--results-dir", str(tmp_path / "results")]) == 2
    assert capsys.readouterr().err == ("ablate: --executor slurm: sbatch is not on the PATH; use --executor local, "
                                       "or run this on the cluster's login node\n")


def test_runs_whose_jobs_were_all_lost_are_reported_failed_and_nothing_is_submitted(planned, grid_file, tmp_path,
                                                                                    monkeypatch, capsys):
    from ablate.cli import main

    (tmp_path / "results").mkdir()
    for index, run in enumerate(planned):
        _submitted(tmp_path / "results", run, f"60_{index}", f"training {run.run_id}\nKilled\n")
    monkeypatch.setattr(queries, "slurm_available", lambda: (True, "ok"))
    monkeypatch.setattr(follow, "scheduler_states", lambda ids: {})  # every job long gone from the scheduler
    monkeypatch.setattr(submit, "submit_runs", lambda *args, **kwargs: pytest.fail("nothing may be submitted"))
    monkeypatch.setenv("ABLATE_SLURM_GRACE_S", "5")
    assert main(["run", str(grid_file), "--executor", "slurm", "--results-dir", str(tmp_path / "results")]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == f"grid units: {len(planned)} runs lost their SLURM job; rerun them with --retry-failed"
    failures = [line for line in out if line.startswith("failed ")]
    assert [line.split(":")[0] for line in failures] == [f"failed {run.run_id}" for run in planned]
    assert all("SlurmJobLost: SLURM job 60_" in line and "is unknown to the scheduler" in line for line in failures)
    for run in planned:
        result = read_result(run_dir(tmp_path / "results", "units", run.run_id))
        assert result["status"] == "failed" and result["log_tail"].splitlines() == [f"training {run.run_id}", "Killed"]


def test_a_job_pickled_under_the_old_module_name_still_unpickles(planned, tmp_path):
    """Jobs queued before slurm.py became a package hold `ablate.execute.slurm.SlurmRun`; a requeue unpickles it."""
    old = pickle.dumps(slurm_job.SlurmRun(planned[0], "units", tmp_path), protocol=0)
    assert b"cablate.execute.slurm.job\nSlurmRun\n" in old
    again = pickle.loads(old.replace(b"cablate.execute.slurm.job\nSlurmRun\n", b"cablate.execute.slurm\nSlurmRun\n"))
    assert type(again) is slurm_job.SlurmRun and again.planned() == planned[0]
