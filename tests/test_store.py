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


# ------------------------------------------------------------------- reading fast, reading the same


def read_the_json_modules_way(folder):
    """What reading a result.json gave before pydantic-core parsed it: Path.read_text, json.loads, then
    the schema; the result as a dict, or the CorruptResult message (the reference of the tests below)."""
    from ablate.schema import ResultProblem, parse_result

    path = folder / store.RESULT_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        return f"{path}: cannot be read ({err})"
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        return f"{path}: not valid JSON ({err.msg} at line {err.lineno})"
    try:
        return parse_result(data).to_json_dict()
    except ResultProblem as problem:
        return f"{path}: {problem}"


def read_now(folder):
    try:
        return store.read_result(folder)
    except store.CorruptResult as err:
        return str(err)


FULL_RESULT = {  # every part ablate writes for a completed run, with values of every JSON type
    "run_id": "0123456789ab", "grid": "g", "status": "completed",
    "spec": {"dataset": {"name": "cifar10", "root": None, "image_size": 32}, "seed": 3,
             "method": {"name": "simclr", "temperature": 0.5}, "augment": {"ops": ["crop", "color"], "crop_scale": [0.08, 1.0],
                                                                           "base_crop": True}},
    "axes": {"pair": ["crop", "color"], "seed": 3},
    "metrics": {"linear_top1": 62.300002574920654, "labelled_examples": 3072, "mfu": None, "my_metric": 7},
    "curves": {"epoch_loss": [6.599202434221904, 6, 1e-7, 5e-324, 1.7976931348623157e308]},
    "timings": {"data": 8.350799998879666e-05, "total": 11.215776489999826},
    "collapse": {"embedding_std": 0.0285, "embedding_dim": 1024, "std_ratio": 0.912, "threshold": 0.1, "collapsed": False},
    "fast_path": {"bf16": False, "channels_last": True, "compile": False}, "resumed_from_epoch": None,
    "provenance": {"device": "cpu (x86_64, 2 cores, 2 threads)", "host": "vm", "note": "é ✓ 😀"}, "error": None,
}
FULL_TEXT = json.dumps(FULL_RESULT)
V2 = '{"schema_version": 2, "run_id": "r", "status": "completed", '


@pytest.mark.parametrize("content", [
    (json.dumps(FULL_RESULT, indent=2, sort_keys=True) + "\n").encode(),  # as ablate writes it
    FULL_TEXT.encode(),  # no schema_version: version 1, read upgraded
    json.dumps({**FULL_RESULT, "schema_version": 2, "spec": {**FULL_RESULT["spec"], "method": "simclr",
                                                             "train": {"temperature": 0.2}}}).encode(),
    json.dumps({**FULL_RESULT, "spec": {**FULL_RESULT["spec"], "method": "simclr", "train": {"temperature": 0.2}}}).encode(),
    json.dumps(FULL_RESULT, indent=2).replace("\n", "\r\n").encode(),  # CRLF line ends (json.dumps escapes those in strings)
    json.dumps(FULL_RESULT, indent=2).replace("\n", "\r").encode(),  # old Mac line ends
    FULL_TEXT.replace("cpu (x86_64, 2 cores", "cpu (x86_64,\n 2 cores").encode(),  # a raw line end inside a string
    json.dumps(FULL_RESULT, ensure_ascii=False).encode(),  # UTF-8 rather than \u escapes
    (V2 + '"run_id": "second", "metrics": {"x": 1, "x": 2.5}}').encode(),  # duplicate keys: the last one counts
    (V2 + '"metrics": {"linear_top1": NaN, "knn_top1": Infinity, "x": -Infinity}, "spec": {"a": NaN}}').encode(),
    (V2 + '"metrics": {"linear_top1": 1e400, "x": -0.0, "y": 123456789012345678901234567890}}').encode(),
    (V2 + '"spec": {"n": 123456789012345678901234567890, "z": -0, "e": 1E2, "f": 0.1}}').encode(),
    (V2 + '"note": "\\ud800 alone", "error": null}').encode(),  # a lone surrogate escape: the json module takes it
    (V2 + '"spec": {"deep": ' + "[" * 250 + "]" * 250 + "}}").encode(),  # deeper than pydantic-core's parser goes
    (V2 + '"note": "\\u00e9\\ud83d\\ude00\\/\\b\\u0000"}').encode(),
    (V2 + '"curves": {"epoch_loss": [1, 2.5, true]}}').encode(),  # a bool is no number
    (V2 + '"metrics": {"labelled_examples": 5.0}}').encode(),
    b'{"schema_version": 2.0, "run_id": "r", "status": "completed"}',
    b'{"schema_version": 3, "run_id": "r", "status": "completed"}',
    b'{"schema_version": "2", "run_id": "r", "status": "completed"}',
    b'{"run_id": "r", "status": "compl',  # truncated
    b'{"run_id": "r", "status": "completed"} x',  # trailing text
    b'{"run_id": "r", "status": "completed",}',  # trailing comma
    b'\xef\xbb\xbf{"run_id": "r", "status": "completed"}',  # a byte-order mark
    b'{"run_id": "r\xff", "status": "completed"}',  # not UTF-8
    b'{"run_id": "r\xed\xa0\x80", "status": "completed"}',  # an encoded surrogate: not UTF-8 either
    b'{"run_id": "r\tx", "status": "completed"}',  # a raw tab inside a string
    b'{"run_id": "r", "status": "completed", "x": nan}',
    b"[1, 2]", b"null", b"", b"   \n", b'"text"',
], ids=lambda content: content[:40].decode("utf-8", "replace"))
def test_a_file_reads_as_the_json_module_read_it(tmp_path, content):
    (tmp_path / store.RESULT_FILE).write_bytes(content)
    expected, got = read_the_json_modules_way(tmp_path), read_now(tmp_path)
    assert repr(got) == repr(expected)  # repr: the same keys in the same order, 1 and 1.0 told apart, NaN equal to NaN
    if isinstance(expected, str) and "newer ablate" in expected:
        with pytest.raises(store.ResultTooNew):
            store.run_state(tmp_path)
    else:
        assert store.run_state(tmp_path) == ("corrupt" if isinstance(expected, str) else expected["status"])


def test_a_generated_set_reads_as_the_json_module_read_it(tmp_path):
    """Many files with numbers of every size and precision: the faster parser reads every one the same."""
    import random

    rng = random.Random(7)
    for index in range(60):
        numbers = [rng.uniform(-1e3, 1e3) for _ in range(20)] + [rng.random() * 10.0 ** rng.randint(-300, 300) for _ in range(20)]
        numbers += [rng.randint(-10**20, 10**20), round(rng.random(), rng.randint(0, 17))]
        result = {**FULL_RESULT, "run_id": f"r{index:03d}", "curves": {"epoch_loss": numbers},
                  "metrics": {"linear_top1": numbers[0], "x": numbers[-2]}, "spec": {"values": numbers, "seed": index}}
        store.write_result(tmp_path / f"r{index:03d}", result)
    results = store.iter_results(tmp_path.parent, tmp_path.name)
    assert [r["run_id"] for r in results] == [f"r{index:03d}" for index in range(60)]
    assert repr(results) == repr([read_the_json_modules_way(tmp_path / f"r{index:03d}") for index in range(60)])


def test_iter_results_reads_run_folders_in_name_order_skipping_the_rest(tmp_path):
    grid = tmp_path / "g"
    for run_id in ("b2", "a1", "B0", "c3"):
        store.write_result(grid / run_id, sample_result(run_id))
    (grid / "c3" / store.RESULT_FILE).write_text('{"run_id": "c3", "status": "compl')  # corrupt: skipped here
    (grid / "d4").mkdir()  # a run without a result yet
    (grid / "notes.txt").write_text("not a run")
    (grid / "e5").symlink_to(grid / "a1")  # a link to a run folder reads as a folder, as Path.is_dir has it
    assert [r["run_id"] for r in store.iter_results(tmp_path, "g")] == ["B0", "a1", "b2", "a1"]
    assert store.run_dir(tmp_path, "g", "a1") == tmp_path / "g" / "a1"


# ----------------------------------------------------------------------------- flattening a spec


@pytest.mark.parametrize("spec", [
    {"dataset": {"name": "shapes", "root": None}, "seed": 3, "augment": {"ops": ["crop", "color"], "crop_scale": [0.2, 1.0]}},
    {"method": {"name": "simclr", "temperature": 0.5}, "train": {"lr": 1, "flag": True, "nested": {"deeper": {"x": 1.5}}},
     "seed": 0, "empty": {}, "label": "a"},
    {"a": {"b": 1}, "a.b": 2},  # a top-level key that looks like a path: json_normalize lets the nested one win
    {"": {"x": 1}, "y": {"": 2}},
    {"only": {}},
    {"values": [1, 2.5, None], "big": 2**70, "nan": float("nan"), "text": "é"},
])
def test_a_flattened_spec_is_what_json_normalize_gives(spec):
    """flat_spec replaced pandas.json_normalize(spec, sep=".") row by row: the same keys, in the same order
    (a report's columns follow it), with the same values and types."""
    import pandas as pd

    reference = pd.json_normalize(spec, sep=".").to_dict(orient="records")[0]
    flat = store.flat_spec(spec)
    assert repr([(key, type(value)) for key, value in flat.items()]) == repr([(key, type(value)) for key, value in reference.items()])
    assert repr(flat) == repr(reference)


def test_a_row_holds_every_spec_field_by_its_dotted_path():
    row = store.result_row({"run_id": "r", "status": "completed", "spec": {"seed": 2, "augment": {"ops": ["crop", "blur"]},
                                                                          "method": {"name": "byol", "tau": 0.99}}})
    written = {key: value for key, value in row.items() if key not in dict(store.added_field_defaults("byol"))}
    assert written == {"run_id": "r", "grid": None, "status": "completed", "ops": "crop+blur", "first_op": "crop",
                       "second_op": "blur", "error": None, "seed": 2, "augment.ops": "crop+blur", "method": "byol",
                       "method.tau": 0.99, "device": None, "color": None, "processes": None}
    assert store.result_row({"run_id": "r", "status": "completed", "processes": 4})["processes"] == 4  # --devices 4
    assert list(row)[7:10] == ["seed", "augment.ops", "method"]  # top-level values first, then each section's


def test_a_result_older_than_a_spec_field_shows_that_fields_default(tmp_path):
    # Written before model.head, eval.finetune and SimCLR's loss settings existed (result schema 2, a7a7da2):
    # those runs ran with what is now the default, so a grid mixing them with newer results does not vary there.
    from ablate.config import RunSpec
    from ablate.report.data import varying_axes

    older = sample_result("older")
    older["spec"] = RunSpec(seed=0).model_dump(mode="json")
    del older["spec"]["model"]["head"], older["spec"]["eval"]["finetune"], older["spec"]["method"]["loss"]
    newer = sample_result("newer")
    newer["spec"] = RunSpec(seed=1).model_dump(mode="json")
    for result in (older, newer):
        store.write_result(tmp_path / "g" / result["run_id"], result)
    frame = store.load_results(tmp_path, "g").set_index("run_id")
    assert frame.loc["older", "model.head"] == "mlp" and frame.loc["older", "method.loss"] == "nt_xent"
    assert frame.loc["older", "eval.finetune.fractions"] == [] and frame.loc["older", "eval.finetune.lr"] == 0.05
    assert varying_axes(frame.reset_index(), ()) == []  # only the seed differs, and it is never an axis here
    assert "model.head" not in store.result_row({"run_id": "r", "status": "missing", "spec": {}})  # no spec: nothing filled
