"""The committed reports (reports/<grid>/) come out byte for byte from the runs they were computed from.

Every report writes runs.csv beside its files: one row per completed or failed run with its spec, seed,
status, metrics, collapse flag and device. Here the result files are rebuilt from a committed runs.csv
exactly (as schema version 1 or 2 files: the method a bare name with SimCLR's temperature under train,
or a mapping of its settings), `ablate report --grid NAME` (every report type that applies, default
options) is run on them, and every text file it writes (.md, .tex, .csv; index.html with its embedded
PNGs left out, as those depend on the matplotlib build) must equal the committed one. The runs of
runs.csv are the plan: a committed report that counted missing runs, or results not in the plan,
cannot be rebuilt and fails here.

A report folder without runs.csv (committed before reports wrote it) is skipped with the reason; the
same check runs on a report written here from synthetic results, so the round trip itself is tested.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from report_helpers import make_result, make_spec, ordered_pairs, pair_value, run_id, with_collapse, write_results

from ablate import store
from ablate.report.build import write_report
from ablate.report.files import RUNS_FILE

REPORTS = Path(__file__).resolve().parents[2] / "reports"
COMMITTED = sorted(folder.name for folder in REPORTS.iterdir() if folder.is_dir()) if REPORTS.is_dir() else []
TEXT_SUFFIXES = (".md", ".tex", ".csv", ".html")
DATA_URI = re.compile(r'src="data:image/png;base64,[^"]*"')
META = {"run_id", "seed", "status", "collapsed", "device", "color", "processes", "curves"}
COLLAPSE_RATIO = 0.1  # ablate.evaluate.collapse's default threshold (that module loads torch; a report never reads it)


def read_runs(path: Path) -> pd.DataFrame:
    # every number back exactly as written: pandas 3 parses floats so by default (and deprecates the option);
    # before, only float_precision="round_trip" is sure to (the default parser may be off in the last bit)
    exact = {} if int(pd.__version__.split(".")[0]) >= 3 else {"float_precision": "round_trip"}
    return pd.read_csv(path, keep_default_na=False, na_values=[""], **exact)


def present(value: Any) -> bool:
    return not (value is None or (isinstance(value, float) and math.isnan(value)))


def plain(value: Any) -> Any:
    """A cell of runs.csv as JSON writes it: numpy numbers as Python's, a list ("[0.25, 1.0]") as a list."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, str) and value.startswith("["):
        return json.loads(value)
    return value


def nest(flat: dict[str, Any]) -> dict[str, Any]:
    """{"augment.ops": "crop+color", "method": "simclr", "method.temperature": 0.2, ...} as a nested spec."""
    spec: dict[str, Any] = {}
    for key, value in flat.items():
        if key == "augment.ops":
            value = [op for op in str(value).split("+") if op]
        if key == "method":
            spec.setdefault("method", {})["name"] = value
            continue
        *parents, leaf = key.split(".")
        node = spec
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    return spec


def result_of(run: dict[str, Any], grid: str, version: int) -> dict[str, Any]:
    """The result file a run of runs.csv came from (as far as a report reads it)."""
    values = {key: plain(value) for key, value in run.items() if present(value)}
    spec = nest({key: value for key, value in values.items() if key.startswith(("dataset.", "model.", "method", "train.",
                                                                               "augment.", "eval."))
                 and not key.startswith(("time.", "collapse."))})
    if "seed" in values:
        spec["seed"] = values["seed"]
    metrics = {k: v for k, v in values.items() if k not in META and not k.startswith(("time.", "collapse.")) and "." not in k
               and k != "method"}
    result = {"run_id": values["run_id"], "grid": grid, "status": values["status"], "spec": spec, "axes": {},
              "metrics": metrics if values["status"] == "completed" else {},
              "timings": {k.removeprefix("time."): v for k, v in values.items() if k.startswith("time.")},
              "provenance": {k: values[k] for k in ("device", "color") if k in values},
              "error": None if values["status"] == "completed" else {"type": "Error", "message": "", "traceback": ""}}
    if "curves" in values:
        result["curves"] = json.loads(values["curves"])
    if "processes" in values:
        result["processes"] = int(values["processes"])
    if "collapsed" in values:  # the record's numbers a report does not read are derived (dim) or the default (threshold)
        record = {k.removeprefix("collapse."): v for k, v in values.items() if k.startswith("collapse.")}
        dim = round((record["std_ratio"] / record["embedding_std"]) ** 2)  # std_ratio = embedding_std · √d
        result["collapse"] = record | {"embedding_dim": dim, "threshold": COLLAPSE_RATIO, "collapsed": bool(values["collapsed"])}
    if version == 1:
        method = spec.get("method", {})
        # Settings added to a method since (at their defaults: ablate.config.base.added_field) were not in a v1 file.
        added = dict(store.added_field_defaults(method.get("name")))
        method = {key: value for key, value in method.items() if added.get(f"method.{key}", object()) != value}
        if set(method) - {"name", "temperature"}:
            pytest.skip("schema version 1 had no method settings besides SimCLR's temperature")
        spec["method"] = method.get("name")
        if "temperature" in method:
            spec.setdefault("train", {})["temperature"] = method["temperature"]
    return result


def rebuild(runs_csv: Path, results: Path, grid: str, version: int) -> list[dict[str, Any]]:
    """Result files under results/<grid>/ from runs.csv; returns the plan (the runs, in their order)."""
    runs = read_runs(runs_csv)
    plan = []
    for run in runs.to_dict(orient="records"):
        result = result_of(run, grid, version)
        folder = store.run_dir(results, grid, result["run_id"])
        if version == 1:
            folder.mkdir(parents=True)
            (folder / store.RESULT_FILE).write_text(json.dumps(result, indent=2, sort_keys=True))
        else:
            store.write_result(folder, result)
        plan.append({"run_id": result["run_id"], "spec": result["spec"]})
    return plan


def text_files(folder: Path) -> dict[str, str]:
    """The folder's text files by name; index.html with its embedded images replaced by a mark."""
    found = {}
    for path in sorted(folder.iterdir()):
        if path.suffix in TEXT_SUFFIXES:
            text = path.read_text()
            found[path.name] = DATA_URI.sub('src="(png)"', text) if path.suffix == ".html" else text
    return found


def check_reproduced(committed: Path, tmp_path: Path, version: int) -> None:
    grid = committed.name
    plan = rebuild(committed / RUNS_FILE, tmp_path / "results", grid, version)
    write_report(tmp_path / "results", grid, tmp_path / "reports", "all", planned=plan)
    written, expected = text_files(tmp_path / "reports" / grid), text_files(committed)
    assert sorted(written) == sorted(expected), "the report writes other text files than the committed ones"
    for name, text in expected.items():
        assert written[name] == text, f"{grid}/{name} differs from the report of its runs.csv"


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("name", COMMITTED)
def test_committed_report_is_reproduced_from_its_runs(tmp_path, name, version):
    folder = REPORTS / name
    if not (folder / RUNS_FILE).is_file():
        pytest.skip(f"reports/{name} has no {RUNS_FILE} yet (committed before reports wrote it); regenerate it with "
                    f"`ablate report --grid {name}` from its results to check it here")
    check_reproduced(folder, tmp_path, version)


# ---------------------------------------------------------------------- the round trip, on synthetic runs


def synthetic_report(root: Path) -> Path:
    """A pair grid of SimCLR (temperature 0.2) and the supervised baseline × 2 seeds, with a failed and a collapsed
    run: the report `ablate report` writes for it."""
    results, plan = [], []
    for method in ("simclr", "supervised"):
        for ops in ordered_pairs(["crop", "color", "blur"]):
            for seed in (0, 1):
                spec = make_spec(ops, seed, method) | {"method": {"name": method} | ({"temperature": 0.2} if method == "simclr" else {})}
                plan.append({"run_id": run_id(spec), "spec": spec})
                if (method, ops, seed) == ("supervised", ["blur", "crop"], 1):
                    results.append(make_result(spec, "syn", None, status="failed"))
                    continue
                collapsed = (method, ops, seed) == ("supervised", ["color", "blur"], 0)
                value = 9.25 if collapsed else pair_value(ops[0], ops[-1], seed) + 0.1 * seed ** 2 * len(ops) + 1 / 3
                results.append(with_collapse(make_result(spec, "syn", value, seconds=12.5 + seed), collapsed))
                results[-1]["processes"] = 1 + seed  # seed 1's runs trained on 2 processes (ablate run --devices 2)
    write_results(root / "results", "syn", results)
    write_report(root / "results", "syn", root / "reports", "all", planned=plan)
    return root / "reports" / "syn"


@pytest.mark.parametrize("version", [1, 2])
def test_a_report_is_reproduced_from_its_runs_csv(tmp_path, version):
    folder = synthetic_report(tmp_path / "original")
    runs = read_runs(folder / RUNS_FILE)
    assert len(runs) == 36 and (runs["status"] == "failed").sum() == 1
    assert list(runs.columns[:2]) == ["run_id", "method"] and runs["collapsed"].sum() == 1
    assert {"seed", "status", "linear_top1", "knn_top1", "time.total", "collapsed", "device", "method.temperature",
            "processes"} <= set(runs.columns)
    assert (runs["processes"] == 2).sum() == 17  # seed 1's 18 runs less the failed one (which records none)
    check_reproduced(folder, tmp_path / "again", version)


def test_the_round_trip_check_fails_on_a_changed_number(tmp_path):
    folder = synthetic_report(tmp_path / "original")
    runs = read_runs(folder / RUNS_FILE)
    runs.loc[0, "linear_top1"] += 0.5  # one run's number changed after the report was written
    (folder / RUNS_FILE).write_text(runs.to_csv(index=False))
    with pytest.raises(AssertionError, match="differs from the report of its runs.csv"):
        check_reproduced(folder, tmp_path / "again", 2)


def test_the_check_also_fails_on_a_missing_file(tmp_path):
    folder = synthetic_report(tmp_path / "original")
    (folder / "heatmap.tex").unlink()
    with pytest.raises(AssertionError, match="other text files"):
        check_reproduced(folder, tmp_path / "again", 2)
