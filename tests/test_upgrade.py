"""Results of an earlier ablate (schema version 1, older run ids) are adopted under the current run ids,
so an upgrade neither trains them again nor counts them twice."""

import json
from pathlib import Path

from cli_helpers import run_ablate

from ablate import store
from ablate.config import load_grid
from ablate.execute import run_states
from ablate.plan import plan_grid
from ablate.upgrade import adopt, earlier_results

GRID = "name: g\ndataset: {name: shapes}\nmodel: {arch: small_cnn}\nmethod: {name: simclr, temperature: 0.2}\ngrid:\n  seed: [0, 1]\n"


def v1_result(spec_v2: dict, folder_name: str = "0123456789ab") -> dict:
    """What ablate wrote before schema version 2 for this run: the method a bare name, SimCLR's
    temperature under train, the folder's (older) id inside."""
    spec = json.loads(json.dumps(spec_v2))
    method = spec.pop("method")
    spec["method"] = method["name"]
    spec["train"]["temperature"] = method["temperature"]
    return {"run_id": folder_name, "grid": "g", "status": "completed", "spec": spec, "axes": {"seed": spec["seed"]},
            "metrics": {"linear_top1": 77.5}, "timings": {"total": 3.0}, "error": None}


def setup(tmp_path: Path):
    (tmp_path / "g.yaml").write_text(GRID)
    planned = plan_grid(load_grid(tmp_path / "g.yaml"))
    old = store.run_dir(tmp_path / "results", "g", "0123456789ab")
    old.mkdir(parents=True)
    (old / store.RESULT_FILE).write_text(json.dumps(v1_result(planned[1].spec.model_dump(mode="json"))))
    return planned, old


def test_an_earlier_result_moves_to_its_runs_new_id_and_counts_as_done(tmp_path):
    planned, old = setup(tmp_path)
    (found,) = earlier_results(planned, tmp_path / "results", "g")
    assert found.folder == old and found.run_id == planned[1].run_id
    adopt(found)
    assert not old.exists()
    moved = json.loads((store.run_dir(tmp_path / "results", "g", planned[1].run_id) / store.RESULT_FILE).read_text())
    assert moved["schema_version"] == 2 and moved["run_id"] == planned[1].run_id
    assert moved["spec"]["method"] == {"name": "simclr", "temperature": 0.2} and "temperature" not in moved["spec"]["train"]
    assert moved["metrics"] == {"linear_top1": 77.5}
    assert run_states(planned, tmp_path / "results", "g") == {planned[0].run_id: "pending", planned[1].run_id: "completed"}
    assert earlier_results(planned, tmp_path / "results", "g") == []


def test_nothing_is_adopted_over_an_existing_folder_or_from_another_setting(tmp_path):
    planned, old = setup(tmp_path)
    store.run_dir(tmp_path / "results", "g", planned[1].run_id).mkdir()
    assert earlier_results(planned, tmp_path / "results", "g") == []
    other = json.loads((old / store.RESULT_FILE).read_text())
    other["spec"]["train"]["temperature"] = 0.5  # a run this grid does not plan
    (old / store.RESULT_FILE).write_text(json.dumps(other))
    (store.run_dir(tmp_path / "results", "g", planned[1].run_id)).rmdir()
    assert earlier_results(planned, tmp_path / "results", "g") == []


def test_an_adoption_cut_between_its_two_steps_is_finished_next_time(tmp_path, monkeypatch):
    planned, old = setup(tmp_path)
    (found,) = earlier_results(planned, tmp_path / "results", "g")
    monkeypatch.setattr("ablate.upgrade.os.rename", lambda *args: (_ for _ in ()).throw(OSError("cut")))
    try:
        adopt(found)  # the rewrite happens, the rename does not
    except OSError:
        pass
    assert json.loads((old / store.RESULT_FILE).read_text())["run_id"] == planned[1].run_id
    monkeypatch.undo()
    (again,) = earlier_results(planned, tmp_path / "results", "g")
    assert again.folder == old and again.run_id == planned[1].run_id
    adopt(again)
    moved = store.run_dir(tmp_path / "results", "g", planned[1].run_id) / store.RESULT_FILE
    assert not old.exists() and json.loads(moved.read_text())["schema_version"] == 2


def test_dry_run_only_says_and_run_adopts_without_training(tmp_path):
    planned, old = setup(tmp_path)
    before = (old / store.RESULT_FILE).read_bytes()
    dry = run_ablate("run", "g.yaml", "--dry-run", cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert ("grid g: 1 results written by an earlier ablate will be adopted under their new run ids by `ablate run`"
            in dry.stdout)
    assert (old / store.RESULT_FILE).read_bytes() == before
    status = run_ablate("run", "g.yaml", "--dry-run", "--set", "grid.seed=[1]", cwd=tmp_path)
    assert "1 to run" in status.stdout  # listed as pending until `ablate run` adopts it
    run = run_ablate("run", "g.yaml", "--quiet", "--set", "grid.seed=[1]", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "adopted 1 results written by an earlier ablate" in run.stdout
    assert "all 1 runs are already done; nothing to train" in run.stdout
