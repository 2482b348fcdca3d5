"""`ablate run --log tensorboard`: the event files hold result.json's curves, the choice reaches the runs of
every executor (in-process, joblib workers, a pickled SLURM job) without entering the spec, and without
the package the command exits 2 with one line saying what to install."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import numpy as np
import pytest

from ablate import cli
from ablate.config import RunSpec, load_grid
from ablate.log import LOG_KINDS, TENSORBOARD_FOLDER, chosen_logs, logging_to
from ablate.plan import PlannedRun, plan_grid
from ablate.run import run_and_store
from ablate.store import read_result

pytestmark = pytest.mark.usefixtures("one_torch_thread")

GRID = """name: tb
dataset: {name: shapes, train_size: 64, test_size: 20, image_size: 16}
model: {arch: small_cnn}
train: {epochs: 2, batch_size: 16, lr: 0.5, warmup_epochs: 0.5}
augment: {protocol: both_branches, ops: [crop]}
eval: {linear_epochs: 1, knn_k: 5}
grid:
  seed: [0, 1]
"""


def scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar tag of the event files in `folder`: (step, value) in the order written."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"scalars": 0})  # 0: keep every event
    events.Reload()
    return {tag: [(event.step, event.value) for event in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def as_stored(values: list[float]) -> list[float]:
    """TensorBoard keeps a scalar as a 32-bit float."""
    return [float(np.float32(value)) for value in values]


def test_event_files_hold_the_result_curves(tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    monkeypatch.setenv("ABLATE_MONITOR_EVERY", "1")
    spec = RunSpec.model_validate({
        "dataset": {"name": "shapes", "train_size": 128, "test_size": 40, "image_size": 16},
        "model": {"arch": "small_cnn"}, "train": {"epochs": 2, "batch_size": 8, "lr": 0.5, "warmup_epochs": 0.5},
        "augment": {"protocol": "both_branches", "ops": ["crop"]}, "eval": {"linear_epochs": 1, "knn_k": 5}, "seed": 1,
    })
    folder = tmp_path / "run"
    result = run_and_store(spec, "tb", "run", folder, logs=["tensorboard"])
    assert result["status"] == "completed", result["error"]
    curves = read_result(folder)["curves"]
    logged = scalars(folder / TENSORBOARD_FOLDER)
    assert logged["loss/epoch"] == list(zip([1, 2], as_stored(curves["epoch_loss"])))
    assert logged["lr"] == list(zip([1, 2], as_stored(curves["lr"])))
    assert curves["monitor_epochs"] == [1, 2]
    assert logged["monitor/knn_top1"] == list(zip([1, 2], as_stored(curves["monitor_knn_top1"])))
    # 16 steps an epoch; the CPU loop reports its loss every 10 steps and at each epoch's end.
    assert [step for step, _ in logged["loss/step"]] == [10, 16, 26, 32]
    assert all(np.isfinite(value) for _, value in logged["loss/step"])


def test_no_event_files_unless_asked(tmp_path):
    spec = plan_grid(load_grid(grid_file(tmp_path)))[0].spec
    assert chosen_logs() == ()
    run_and_store(spec, "tb", "run", tmp_path / "run")
    assert (tmp_path / "run" / "result.json").exists() and not (tmp_path / "run" / TENSORBOARD_FOLDER).exists()


def grid_file(folder: Path) -> Path:
    path = folder / "tb.yaml"
    path.write_text(GRID)
    return path


@pytest.mark.parametrize("jobs", ["1", "2"], ids=["in-process", "joblib-workers"])
def test_the_choice_reaches_every_local_run(tmp_path, jobs):
    pytest.importorskip("tensorboard")
    results = tmp_path / "results"
    assert cli.main(["run", str(grid_file(tmp_path)), "--log", "tensorboard", "--jobs", jobs, "--executor", "local",
                     "--quiet", "--results-dir", str(results)]) == 0
    assert chosen_logs() == ()  # the choice ends with the command
    folders = sorted(path for path in (results / "tb").iterdir() if path.is_dir())
    assert len(folders) == 2
    for folder in folders:
        curves = read_result(folder)["curves"]
        assert scalars(folder / TENSORBOARD_FOLDER)["loss/epoch"] == list(zip([1, 2], as_stored(curves["epoch_loss"])))


class CapturingExecutor:
    """Stands for submitit.AutoExecutor: keeps what would be pickled into each job."""

    submitted: list = []

    def __init__(self, folder, cluster, slurm_max_num_timeout):
        self.folder = Path(folder)
        CapturingExecutor.submitted = []

    def update_parameters(self, **params):
        pass

    def batch(self):
        from contextlib import nullcontext

        return nullcontext()

    def submit(self, function):
        import submitit

        CapturingExecutor.submitted.append(function)
        job = type("Job", (), {})()
        job.job_id = f"7_{len(CapturingExecutor.submitted) - 1}"
        job.paths = submitit.core.utils.JobPaths(self.folder, job.job_id)
        return job


def test_a_slurm_job_carries_the_choice(tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    import cloudpickle

    from ablate.config import SlurmSpec
    from ablate.execute.slurm import submit

    monkeypatch.setattr(submit.submitit, "AutoExecutor", CapturingExecutor)
    monkeypatch.setattr(submit, "resolve_gpus", lambda spec: 0)
    planned: list[PlannedRun] = plan_grid(load_grid(grid_file(tmp_path)))[:1]
    results = tmp_path / "results"
    with logging_to(["tensorboard"]):
        submit.submit_runs(planned, "tb", results, SlurmSpec(), array_size=10)
    job = pickle.loads(cloudpickle.dumps(CapturingExecutor.submitted[0]))  # what the node unpickles (submitit uses cloudpickle)
    assert job.logs == ("tensorboard",)
    assert job()["status"] == "completed"  # outside SLURM, the job's callable trains here
    folder = results / "tb" / planned[0].run_id
    assert scalars(folder / TENSORBOARD_FOLDER)["loss/epoch"] == list(zip([1, 2], as_stored(read_result(folder)["curves"]["epoch_loss"])))


def test_without_the_package_run_exits_2_with_the_install_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import tensorboard now fails, as where it is not installed
    results = tmp_path / "results"
    assert cli.main(["run", str(grid_file(tmp_path)), "--log", "tensorboard", "--quiet", "--results-dir", str(results)]) == 2
    err = capsys.readouterr().err
    assert err == "ablate: --log tensorboard needs the tensorboard package: pip install -e '.[tensorboard]'\n"
    assert not results.exists()  # nothing trained


def test_an_unknown_log_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(["run", str(grid_file(tmp_path)), "--log", "wandb"])
    assert exited.value.code == 2 and "invalid choice: 'wandb'" in capsys.readouterr().err


def test_the_cli_names_the_same_logs_as_ablate_log():
    assert cli.LOG_KINDS == LOG_KINDS
