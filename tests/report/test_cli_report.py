"""`ablate report` end to end in-process: the plan from grids/<name>.yaml, defaults, flags and exit status 2."""

import pandas as pd
import pytest
from report_helpers import make_result, make_spec, ordered_pairs, pair_value, write_results

from ablate.cli import main
from ablate.config import load_grid
from ablate.plan import plan_grid

GRID = """\
name: g
method: simclr
augment: {protocol: one_branch}
grid:
  pair: [crop, color]
  seed: [0, 1]
"""


@pytest.fixture
def project(tmp_path, monkeypatch):
    """grids/g.yaml planned (8 runs), results for 7 of them: crop→color seed 1 never ran."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "grids").mkdir()
    (tmp_path / "grids" / "g.yaml").write_text(GRID)
    results = []
    for run in plan_grid(load_grid(tmp_path / "grids" / "g.yaml")):
        spec = run.spec.model_dump(mode="json")
        ops = spec["augment"]["ops"]
        if ops == ["crop", "color"] and spec["seed"] == 1:
            continue
        result = make_result(spec, "g", pair_value(ops[0], ops[-1], spec["seed"]))
        result["run_id"] = run.run_id
        results.append(result)
    write_results(tmp_path / "results", "g", results)
    return tmp_path


def test_report_without_flags_writes_everything_with_the_plan(project, capsys):
    assert main(["report", "--grid", "g"]) == 0
    printed = capsys.readouterr().out.split()
    assert "reports/g/index.html" in printed and "reports/g/heatmap.png" in printed
    markdown = (project / "reports" / "g" / "heatmap.md").read_text()
    assert "grid g: 7 completed, 0 failed, 1 missing runs" in markdown
    assert "| crop | " in markdown and "(n=1, 1 missing)" in markdown
    assert "1 missing" in (project / "reports" / "g" / "index.html").read_text()


def test_heatmap_without_grid_uses_the_newest(project, capsys):
    write_results(project / "results", "older", [make_result(make_spec(["crop"], 0), "older", 1.0)])
    import os
    import time

    stamp = time.time() - 3600
    for path in (project / "results" / "older").glob("*/result.json"):
        os.utime(path, (stamp, stamp))
    assert main(["report", "--heatmap"]) == 0
    assert (project / "reports" / "g" / "heatmap.png").exists()
    assert not (project / "reports" / "g" / "index.html").exists()  # --heatmap alone writes no page
    table = pd.read_csv(project / "reports" / "g" / "heatmap.csv")
    assert table.set_index(["first", "second"]).loc[("crop", "color"), "n"] == 1


def test_table_pivot_and_compare_from_the_cli(project, capsys):
    assert main(["report", "--grid", "g", "--rows", "first_op", "--cols", "second_op", "--metric", "knn_top1"]) == 0
    table = pd.read_csv(project / "reports" / "g" / "pivot-first_op-by-second_op-knn_top1.csv")
    assert len(table) == 4 and table["n"].sum() == 7
    write_results(project / "results", "h", [make_result(make_spec(o, 0), "h", 70.0) for o in ordered_pairs(["crop", "color"])])
    assert main(["report", "--compare", "g", "h"]) == 0
    diff = pd.read_csv(project / "reports" / "compare-g-vs-h" / "difference.csv")
    assert len(diff) == 4 and (diff["state"] == "both").all()


@pytest.mark.parametrize("argv, message", [
    (["report", "--grid", "nope"], "ablate: no results for grid 'nope' under results; grids with results: g"),
    (["report", "--grid", "g", "--metric", "acc"], "ablate: unknown metric 'acc' for grid g; available: "),
    (["report", "--grid", "g", "--table", "--rows", "methd", "--cols", "seed"], "ablate: --rows 'methd': no such axis"),
    (["report", "--grid", "g", "--table"], "ablate: grid 'g' varies neither the colour strength"),
    (["report", "--compare", "g", "nope"], "ablate: no results for grid 'nope'"),
    # --cols alone lays out the methods report; on a grid of one method it is still half a pivot
    (["report", "--grid", "g", "--cols", "seed"], "ablate: a pivot needs both --rows AXIS and --cols AXIS"),
    (["report", "--grid", "g", "--baseline", "crop"], "ablate: --baseline 'crop': no report of grid 'g' has columns"),
])
def test_bad_input_is_one_line_and_exit_2(project, capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(message), err
