"""Figure 8 (ablate.report.head): head × output size × h / z, read back from the written CSV / Markdown and from the
figure's lines; the expected numbers are computed here, in float64, from the values written into the results."""

import statistics

import pandas as pd
import pytest
from matplotlib.colors import to_hex
from report_helpers import cell_text, make_result, make_spec, markdown_table, ordered_pairs, pair_value, with_collapse, write_results

from ablate.cli import main
from ablate.config import load_grid
from ablate.plan import plan_grid
from ablate.report.data import load_grid_frame
from ablate.report.head import HEAD_COLOURS, HeadReport, draw_figure8, head_tables

GRID = """\
name: fig8
method: simclr
grid:
  model.head: [mlp, none, linear]
  model.proj_dim: [128, 32]
  eval.representation: [z, h]
  seed: [0, 1, 2]
"""
MISSING_RUN = ("linear", 32, "z", 2)  # planned, never ran
FAILED = ("linear", 128, "z")  # every seed failed
COLLAPSED_RUN = ("mlp", 32, "z", 1)


def value_of(head, size, representation, seed):
    """h: mlp > linear > none; z ten points under h except for none (z = h); a seed-dependent wobble."""
    base = {"mlp": 70.0, "linear": 66.0, "none": 55.0}[head] + size / 64
    drop = 10.0 if representation == "z" and head != "none" else 0.0
    return base - drop + [0.0, 0.9, -0.4][seed] + (0.3 if size == 32 and seed == 2 else 0.0)


@pytest.fixture
def project(tmp_path, monkeypatch):
    """grids/fig8.yaml planned (36 runs) and its results; returns {(head, size, representation): {seed: value}}."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "grids").mkdir()
    (tmp_path / "grids" / "fig8.yaml").write_text(GRID)
    written, results = {}, []
    for run in plan_grid(load_grid(tmp_path / "grids" / "fig8.yaml")):
        spec = run.spec.model_dump(mode="json")
        key = (spec["model"]["head"], spec["model"]["proj_dim"], spec["eval"]["representation"])
        seed = spec["seed"]
        if (*key, seed) == MISSING_RUN:
            continue
        if key == FAILED:
            results.append(make_result(spec, "fig8", None, status="failed") | {"run_id": run.run_id})
            continue
        value = value_of(*key, seed)
        written.setdefault(key, {})[seed] = value
        result = with_collapse(make_result(spec, "fig8", value), (*key, seed) == COLLAPSED_RUN)
        results.append(result | {"run_id": run.run_id})
    write_results(tmp_path / "results", "fig8", results)
    return tmp_path, written


def test_csv_and_markdown_hold_each_cells_mean_std_and_n_in_the_papers_order(project, capsys):
    folder, written = project
    assert main(["report", "--grid", "fig8"]) == 0  # --all: Figure 8 applies to this grid
    csv = pd.read_csv(folder / "reports" / "fig8" / "figure8.csv")
    # h before z, heads in the paper's legend order (linear, non-linear, none), sizes ascending
    assert csv["eval.representation"].tolist() == ["h"] * 6 + ["z"] * 6
    assert csv["head"].tolist()[:6] == ["linear", "linear", "non-linear (mlp)", "non-linear (mlp)", "none (z = h)", "none (z = h)"]
    assert csv["output size"].tolist()[:2] == [32, 128]
    for line in csv.to_dict(orient="records"):
        head = {"linear": "linear", "non-linear (mlp)": "mlp", "none (z = h)": "none"}[line["head"]]
        values = list(written.get((head, line["output size"], line["eval.representation"]), {}).values())
        assert line["n"] == len(values)
        if values:
            assert line["mean"] == pytest.approx(statistics.fmean(values), abs=1e-9)
        if len(values) > 1:
            assert line["std"] == pytest.approx(statistics.stdev(values), abs=1e-9)
    failed = csv[(csv["head"] == "linear") & (csv["output size"] == 128) & (csv["eval.representation"] == "z")].iloc[0]
    assert (failed["n"], failed["failed"]) == (0, 3)  # kept as a line of its own, never dropped
    missing = csv[(csv["head"] == "linear") & (csv["output size"] == 32) & (csv["eval.representation"] == "z")].iloc[0]
    assert (missing["n"], missing["missing"]) == (2, 1)
    markdown = (folder / "reports" / "fig8" / "figure8.md").read_text()
    rows, head = markdown_table(markdown, "### linear top-1 (%) by head × output size, evaluated on h")
    assert head == "| head \\ output size | 32 | 128 |"
    assert list(rows) == ["linear", "non-linear (mlp)", "none (z = h)"]
    assert rows["non-linear (mlp)"][1].startswith(cell_text(list(written[("mlp", 128, "h")].values())))
    z_rows, _ = markdown_table(markdown, "### linear top-1 (%) by head × output size, evaluated on z")
    assert z_rows["linear"][1] == "— (3 failed)"
    assert "collapsed 1/3" in z_rows["non-linear (mlp)"][0]


def test_h_against_z_is_the_paired_difference_of_each_head_and_size(project, capsys):
    folder, written = project
    assert main(["report", "--grid", "fig8", "--kind", "figure8"]) == 0
    versus = pd.read_csv(folder / "reports" / "fig8" / "figure8-h-vs-z.csv")
    z = versus[versus["eval.representation"] == "z"].set_index("head, output size")
    for head, label in (("mlp", "non-linear (mlp)"), ("none", "none (z = h)")):
        for size in (32, 128):
            h_values, z_values = written[(head, size, "h")], written[(head, size, "z")]
            expected = statistics.fmean(z_values.values()) - statistics.fmean(h_values.values())
            assert z.loc[f"{label}, {size}", "delta"] == pytest.approx(expected, abs=1e-9)
            assert z.loc[f"{label}, {size}", "pairs"] == 3
    assert z.loc["non-linear (mlp), 128", "delta"] == pytest.approx(-10.0)
    assert z.loc["none (z = h), 32", "delta"] == pytest.approx(0.0)
    assert z.loc["linear, 32", "pairs"] == 2  # seed 2 of z never ran
    findings = (folder / "reports" / "fig8" / "figure8.md").read_text()
    assert "Rows (head) by mean: non-linear (mlp)" in findings


def test_the_lines_go_through_the_cell_means_and_empty_cells_are_marked(project):
    folder, written = project
    grid = load_grid_frame(folder / "results", "fig8", [{"run_id": r.run_id, "spec": r.spec}
                                                         for r in plan_grid(load_grid(folder / "grids" / "fig8.yaml"))])
    tables = head_tables(grid, "linear_top1")
    figure = draw_figure8(tables, "Figure 8", "header")
    h_panel, z_panel = figure.axes[:2]
    assert (h_panel.get_title(), z_panel.get_title()) == ("evaluated on h = f(x)", "evaluated on z = g(h)")
    for panel, representation in ((h_panel, "h"), (z_panel, "z")):
        drawn = {to_hex(line.get_color()): (line.get_xdata().tolist(), line.get_ydata().tolist()) for line in panel.lines
                 if line.get_linestyle() == "-" and len(line.get_xdata()) and not line.get_label().startswith("_nolegend")}
        for head in ("linear", "mlp", "none"):
            sizes = [size for size in (32, 128) if written.get((head, size, representation))]
            means = [statistics.fmean(written[(head, size, representation)].values()) for size in sizes]
            xs, ys = drawn[HEAD_COLOURS[head]]
            assert xs == sizes and ys == pytest.approx(means, abs=1e-9)
    assert "failed" in [text.get_text() for text in z_panel.texts]  # linear at 128 on z: every run failed


def test_none_at_one_size_is_drawn_as_a_level_across_the_panel(tmp_path):
    results = []
    for head, size in (("mlp", 32), ("mlp", 128), ("none", 128)):
        for seed in (0, 1):
            spec = make_spec(["crop", "color"], seed) | {"model": {"arch": "small_cnn", "head": head, "proj_dim": size}}
            results.append(make_result(spec, "g", 50.0 + seed + (10 if head == "mlp" else 0)))
    write_results(tmp_path / "results", "g", results)
    tables = head_tables(load_grid_frame(tmp_path / "results", "g"), "linear_top1")
    figure = draw_figure8(tables, "Figure 8", "header")
    dashed = [line for line in figure.axes[0].lines if line.get_linestyle() == "--"]
    assert len(dashed) == 1 and list(dashed[0].get_ydata()) == [50.5, 50.5]


def test_applies_only_where_head_size_or_representation_varies(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    results = [make_result(make_spec(list(pair), seed), "pairs", pair_value(pair[0], pair[-1], seed))
               for pair in ordered_pairs(["crop", "color"]) for seed in (0, 1)]
    write_results(tmp_path / "results", "pairs", results)
    assert not HeadReport().applies(load_grid_frame(tmp_path / "results", "pairs"), None)
    assert main(["report", "--grid", "pairs"]) == 0
    assert not (tmp_path / "reports" / "pairs" / "figure8.md").exists()
    assert main(["report", "--grid", "pairs", "--kind", "figure8"]) == 2
    assert capsys.readouterr().err.strip().startswith("ablate: grid 'pairs' varies none of model.head")
