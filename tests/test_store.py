"""Atomic result files: a crash mid-write leaves no result.json; what was written reads back."""

import json
import os

import pytest

from ablate import store


def sample_result(run_id="abc", status="completed"):
    return {"run_id": run_id, "grid": "g", "status": status, "spec": {"augment": {"ops": ["crop", "color"]}, "seed": 1},
            "metrics": {"linear_top1": 42.5}, "timings": {"total": 1.5}, "provenance": {"device": "cpu"}, "error": None}


def test_written_result_reads_back_exactly(tmp_path):
    store.write_result(tmp_path, sample_result())
    assert store.read_result(tmp_path) == {**sample_result(), "schema_version": 2}
    assert json.loads((tmp_path / "result.json").read_text())["metrics"]["linear_top1"] == 42.5
    assert store.run_state(tmp_path) == "completed"


def test_crash_before_rename_leaves_no_result_and_no_temp(tmp_path, monkeypatch):
    def crash(*_):
        raise OSError("disk vanished")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        store.write_result(tmp_path, sample_result())
    assert list(tmp_path.iterdir()) == []
    assert store.run_state(tmp_path) == "pending"


def test_crash_mid_write_keeps_the_previous_result(tmp_path, monkeypatch):
    store.write_result(tmp_path, sample_result(status="failed"))
    real_fsync = os.fsync

    def crash(fd):
        real_fsync(fd)
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(KeyboardInterrupt):
        store.write_result(tmp_path, sample_result(status="completed"))
    assert store.read_result(tmp_path)["status"] == "failed"
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_truncated_result_is_corrupt_not_done(tmp_path):
    (tmp_path / "result.json").write_text('{"run_id": "abc", "status": "compl')
    assert store.run_state(tmp_path) == "corrupt"


def test_load_results_flattens_spec_and_metrics(tmp_path):
    store.write_result(tmp_path / "g" / "r1", sample_result("r1"))
    store.write_result(tmp_path / "g" / "r2", sample_result("r2", status="failed"))
    frame = store.load_results(tmp_path, "g")
    assert sorted(frame["run_id"]) == ["r1", "r2"]
    row = frame.set_index("run_id").loc["r1"]
    assert row["first_op"] == "crop" and row["second_op"] == "color" and row["augment.ops"] == "crop+color"
    assert row["linear_top1"] == 42.5 and row["seed"] == 1 and row["time.total"] == 1.5


def test_status_is_read_from_the_validated_result(tmp_path):
    store.write_result(tmp_path / "ok", sample_result(status="failed"))
    assert store.run_state(tmp_path / "ok") == "failed"
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "result.json").write_text(json.dumps({**sample_result(), "status": "done"}))
    assert store.run_state(tmp_path / "bad") == "corrupt"
    with pytest.raises(store.CorruptResult) as caught:
        store.read_result(tmp_path / "bad")
    path = tmp_path / "bad" / "result.json"
    assert str(caught.value) == f"{path}: status: got 'done'; input should be 'completed' or 'failed'"


def test_method_column_is_the_name_for_old_and_new_specs(tmp_path):
    old = sample_result("old")
    old["spec"] = {**old["spec"], "method": "simclr", "train": {"temperature": 0.2, "epochs": 10}}
    new = sample_result("new")
    new["spec"] = {**new["spec"], "method": {"name": "simclr", "temperature": 0.2}, "train": {"epochs": 10}}
    planned = {"run_id": "planned", "status": "missing", "spec": {"method": {"name": "supervised"}}}
    (tmp_path / "g" / "old").mkdir(parents=True)
    (tmp_path / "g" / "old" / "result.json").write_text(json.dumps(old))  # version 1: written before the schema
    store.write_result(tmp_path / "g" / "new", new)
    frame = store.load_results(tmp_path, "g").set_index("run_id")
    for run in ("old", "new"):
        assert frame.loc[run, "method"] == "simclr" and frame.loc[run, "method.temperature"] == 0.2
        assert frame.loc[run, "train.epochs"] == 10
    assert "method.name" not in frame and "train.temperature" not in frame
    assert store.result_row(planned)["method"] == "supervised" and "method.name" not in store.result_row(planned)
    assert store.result_row(store.read_result_model(tmp_path / "g" / "new")) == frame.loc["new"].to_dict() | {"run_id": "new"}
