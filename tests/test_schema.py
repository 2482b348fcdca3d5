"""result.json's schema: what is written is validated and reads back the same; older files are upgraded
in memory; a bad or newer file is named with its field in one line; docs/result.schema.json is current."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import run_ablate

from ablate import store
from ablate.schema import SCHEMA_VERSION, ResultProblem, json_schema_text, parse_result

REPO = Path(__file__).resolve().parent.parent

# What ablate.run wrote before the schema existed (version 1): no schema_version, the method a bare
# name, SimCLR's temperature under train.
V1_COMPLETED = {
    "run_id": "3f2a9c0d1e7b", "grid": "quickstart", "status": "completed", "axes": {"seed": 1},
    "spec": {"dataset": {"name": "shapes", "image_size": 32}, "method": "simclr", "seed": 1,
             "train": {"epochs": 10, "batch_size": 256, "temperature": 0.2}, "augment": {"ops": ["crop", "color"]}},
    "metrics": {"linear_top1": 86.8, "linear_top5": 99.5, "knn_top1": 80.25, "labelled_examples": 3072, "mfu": None},
    "curves": {"epoch_loss": [5.1, 4.7, 4.5]},
    "timings": {"data": 0.5, "train": 7.25, "eval": 1.0, "total": 8.875},
    "resumed_from_epoch": None,
    "fast_path": {"bf16": False, "channels_last": True, "compile": False},
    "provenance": {"device": "cpu (x86_64, 2 cores, 2 threads)", "color": "eager", "torch_version": "2.5.1",
                   "start_time": "2026-11-30T10:00:00+00:00", "slurm_job_id": None},
    "error": None,
}


def write_raw(folder: Path, data) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / store.RESULT_FILE
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


def test_a_version_1_file_is_read_upgraded_and_left_as_it_was(tmp_path):
    path = write_raw(tmp_path, V1_COMPLETED)
    before = path.read_bytes()
    result = store.read_result(tmp_path)
    assert result["schema_version"] == SCHEMA_VERSION == 2
    assert result["spec"]["method"] == {"name": "simclr", "temperature": 0.2}
    assert result["spec"]["train"] == {"epochs": 10, "batch_size": 256}
    unchanged = {k: v for k, v in V1_COMPLETED.items() if k != "spec"}
    assert {k: v for k, v in result.items() if k not in ("spec", "schema_version")} == unchanged
    assert path.read_bytes() == before  # reading never rewrites a user's file
    model = store.read_result_model(tmp_path)
    assert model.metrics.labelled_examples == 3072 and model.curves.epoch_loss == [5.1, 4.7, 4.5]
    assert model.provenance.device.startswith("cpu") and model.fast_path.channels_last is True


def test_a_version_1_supervised_run_loses_the_temperature_it_never_used():
    spec = {**V1_COMPLETED["spec"], "method": "supervised"}
    result = parse_result({**V1_COMPLETED, "spec": spec, "error": "CUDA out of memory", "status": "failed"})
    assert result.spec["method"] == {"name": "supervised"} and "temperature" not in result.spec["train"]
    assert (result.error.type, result.error.message) == ("Error", "CUDA out of memory")  # a bare string in old files


def test_a_lost_run_recorded_by_the_slurm_follower_reads_with_its_own_fields():
    lost = {"run_id": "r", "grid": "g", "spec": {"method": {"name": "simclr", "temperature": 0.5}}, "axes": {},
            "status": "failed", "metrics": {}, "timings": {},
            "error": {"type": "SlurmJobLost", "message": "SLURM job 12 ended CANCELLED", "traceback": "tail"},
            "log_tail": "tail", "slurm": {"job_id": "12", "state": "CANCELLED", "exit_code": "0:15", "log": "/x.out"},
            "provenance": {"slurm_job_id": "12", "recorded_by": "ablate follower", "host": "n1",
                           "end_time": "2026-12-01T00:00:00+00:00"}}
    result = parse_result(lost)
    assert result.spec["method"] == {"name": "simclr", "temperature": 0.5}  # already in the new shape: kept
    assert result.slurm.state == "CANCELLED" and result.provenance.recorded_by == "ablate follower"
    assert result.to_json_dict() == {**lost, "schema_version": 2}


def test_written_file_is_versioned_and_holds_only_what_was_given(tmp_path):
    given = {"run_id": "r", "grid": "g", "status": "completed", "spec": {"method": {"name": "supervised"}},
             "metrics": {"linear_top1": 50, "supervised_top1": 71.5, "negatives_per_view": 510}, "timings": {"total": 2.5},
             "error": None, "note_from_a_tool": {"kept": True}}
    store.write_result(tmp_path, given)
    on_disk = json.loads((tmp_path / store.RESULT_FILE).read_text())
    assert on_disk == {**given, "schema_version": 2, "metrics": {**given["metrics"], "linear_top1": 50.0}}
    assert isinstance(on_disk["metrics"]["negatives_per_view"], int)  # a method's own integer metric stays one
    assert store.read_result(tmp_path) == on_disk


def test_writing_an_invalid_result_names_the_field_and_writes_nothing(tmp_path):
    with pytest.raises(ResultProblem, match=r"result.json: not written, not a valid result: metrics.linear_top1: "
                                            r"got '42'; input should be a valid number$"):
        store.write_result(tmp_path, {"run_id": "r", "status": "completed", "metrics": {"linear_top1": "42"}})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("change, message", [
    ({"metrics": {"linear_top1": "x"}}, "metrics.linear_top1: got 'x'; input should be a valid number"),
    ({"metrics": {"my_metric": [1]}}, "metrics.my_metric: got [1]; input should be a valid number"),
    ({"metrics": {"labelled_examples": 3.5}}, "metrics.labelled_examples: got 3.5; input should be a valid integer"),
    ({"curves": {"epoch_loss": [5.1, None]}}, "curves.epoch_loss[1]: got None; input should be a valid number"),
    ({"status": "done"}, "status: got 'done'; input should be 'completed' or 'failed'"),
    ({"run_id": 7}, "run_id: got 7; input should be a valid string"),
    ({"error": {"type": "E"}}, "error.message: missing"),
    ({"fast_path": {"bf16": 1, "channels_last": True, "compile": False}},
     "fast_path.bf16: got 1; input should be a valid boolean"),
    ({"metrics": {"linear_top1": "x", "knn_top1": "y"}},
     "metrics.linear_top1: got 'x'; input should be a valid number (and 1 more problem)"),
    ({"schema_version": 0}, "schema_version: got 0; expected a whole number from 1 to 2"),
    ({"schema_version": "2"}, "schema_version: got '2'; expected a whole number from 1 to 2"),
])
def test_a_bad_file_is_corrupt_with_its_path_and_field_in_one_line(tmp_path, change, message):
    path = write_raw(tmp_path / "g" / "bad", {**V1_COMPLETED, **change})
    with pytest.raises(store.CorruptResult) as caught:
        store.read_result(path.parent)
    assert str(caught.value) == f"{path}: {message}"
    assert store.run_state(path.parent) == "corrupt"
    store.write_result(tmp_path / "g" / "good", V1_COMPLETED | {"schema_version": 2, "spec": {}})
    assert [r["run_id"] for r in store.iter_results(tmp_path, "g")] == [V1_COMPLETED["run_id"]]  # the good one only


@pytest.mark.parametrize("content, message", [
    ('{"run_id": "r", "status": "compl', "not valid JSON (Unterminated string starting at at line 1)"),
    ("[1, 2]", "not an ablate result (a JSON object was expected, got list)"),
    ('{"status": "completed"}', "run_id: missing"),
])
def test_foreign_and_broken_files_are_named(tmp_path, content, message):
    path = write_raw(tmp_path, content)
    with pytest.raises(store.CorruptResult) as caught:
        store.read_result(tmp_path)
    assert str(caught.value) == f"{path}: {message}"


def test_a_newer_file_says_to_upgrade_ablate(tmp_path):
    path = write_raw(tmp_path, {**V1_COMPLETED, "schema_version": 3, "metrics": {"something": "new"}})
    with pytest.raises(store.ResultTooNew) as caught:
        store.read_result(tmp_path)
    assert str(caught.value) == (f"{path}: written by a newer ablate (schema_version 3; this ablate reads up to 2): "
                                 "upgrade ablate")
    assert isinstance(caught.value, store.CorruptResult)
    with pytest.raises(store.ResultTooNew):  # never "corrupt": that would train the run again over the file
        store.run_state(tmp_path)


def test_run_refuses_a_grid_holding_a_newer_result_and_leaves_the_file_alone(tmp_path):
    from ablate.config import load_grid
    from ablate.plan import plan_grid

    (tmp_path / "g.yaml").write_text("name: g\ndataset: {name: shapes}\nmodel: {arch: small_cnn}\ngrid:\n  seed: [0]\n")
    (run,) = plan_grid(load_grid(tmp_path / "g.yaml"))
    path = write_raw(store.run_dir(tmp_path / "results", "g", run.run_id), {**V1_COMPLETED, "schema_version": 3})
    before = path.read_bytes()
    process = run_ablate("run", "g.yaml", "--quiet", cwd=tmp_path)
    assert process.returncode == 2
    assert process.stderr.strip() == (f"ablate: {path.relative_to(tmp_path)}: written by a newer ablate (schema_version 3; "
                                      "this ablate reads up to 2): upgrade ablate")
    assert path.read_bytes() == before


def test_status_names_the_bad_field_of_a_result(tmp_path):
    from ablate.config import load_grid
    from ablate.plan import plan_grid

    (tmp_path / "g.yaml").write_text("name: g\ndataset: {name: shapes}\nmodel: {arch: small_cnn}\ngrid:\n  seed: [0, 1]\n")
    good, bad = plan_grid(load_grid(tmp_path / "g.yaml"))
    store.write_result(store.run_dir(tmp_path / "results", "g", good.run_id), {"run_id": good.run_id, "status": "completed"})
    path = write_raw(store.run_dir(tmp_path / "results", "g", bad.run_id),
                     {"run_id": bad.run_id, "status": "completed", "metrics": {"linear_top1": "x"}})
    status = run_ablate("status", "g.yaml", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    assert "2 runs: 1 completed, 0 failed" in status.stdout and ", 1 corrupt" in status.stdout
    assert (f"corrupt {bad.run_id}: {path.relative_to(tmp_path)}: metrics.linear_top1: got 'x'; "
            "input should be a valid number (treated as not done; it will be rerun)") in status.stdout


def test_committed_json_schema_is_the_models():
    committed = (REPO / "docs" / "result.schema.json").read_text(encoding="utf-8")
    assert committed == json_schema_text(), "the Result model changed: run `python -m ablate.schema > docs/result.schema.json`"
    printed = subprocess.run([sys.executable, "-m", "ablate.schema"], capture_output=True, text=True, cwd=REPO, check=True)
    assert printed.stdout == committed


def test_json_schema_describes_the_version_and_the_open_parts():
    schema = json.loads(json_schema_text())
    assert set(schema["required"]) == {"run_id", "status"}
    assert schema["properties"]["schema_version"]["const"] == 2
    assert schema["properties"]["status"]["enum"] == ["completed", "failed"]
    metrics = schema["$defs"]["Metrics"]
    assert metrics["additionalProperties"] == {"anyOf": [{"type": "number"}, {"type": "null"}]}
    assert schema["$defs"]["ErrorRecord"]["additionalProperties"] is False


def test_numbers_are_kept_as_written_and_bools_and_strings_are_no_numbers():
    """Number (metrics a method adds, extra timings, curves) is checked inside pydantic-core: an int stays an
    int, a float a float, whatever their size; True, "1.5" and null are refused with the same message."""
    numbers = [1, 2.5, 2**70, -0.0, 1e-300]
    result = parse_result({"schema_version": 2, "run_id": "r", "status": "completed", "metrics": {"mine": 7, "other": 7.0},
                           "timings": {"upload": 3}, "curves": {"epoch_loss": numbers, "my_curve": [4]}}).to_json_dict()
    assert repr(result["curves"]) == repr({"epoch_loss": numbers, "my_curve": [4]})
    assert repr(result["metrics"]) == repr({"mine": 7, "other": 7.0}) and repr(result["timings"]) == repr({"upload": 3})
    for change, where, shown in [({"curves": {"epoch_loss": [1.0, True]}}, "curves.epoch_loss[1]", "True"),
                                 ({"curves": {"my_curve": ["1.5"]}}, "curves.my_curve[0]", "'1.5'"),
                                 ({"metrics": {"mine": False}}, "metrics.mine", "False"),
                                 ({"timings": {"upload": "3"}}, "timings.upload", "'3'")]:
        with pytest.raises(ResultProblem) as caught:
            parse_result({"schema_version": 2, "run_id": "r", "status": "completed", **change})
        assert str(caught.value) == f"{where}: got {shown}; input should be a valid number"
