"""The methods report: methods × augmentation, mean ± std (n) and each cell's Δ from its method's reference
column, read back from the written Markdown / CSV / LaTeX and from the figure's Axes; the numbers are
computed here from the values written into the synthetic results."""

import re
import statistics

import numpy as np
import pandas as pd
import pytest
from report_helpers import cell_text, holm_by_hand, p_text, interval, make_result, make_spec, ordered_pairs, pair_value, with_collapse, write_results

from ablate.cli import main
from ablate.config import load_grid
from ablate.plan import plan_grid
from ablate.report.build import write_report
from ablate.report.data import ReportError, load_grid_frame
from ablate.report.methods import ColumnAxis, column_axis, draw_methods, methods_tables, wrapped

GRID = """\
name: beyond
method: simclr
augment: {protocol: both_branches}
grid:
  method: [supervised, simsiam, simclr, byol]
  augment.ops: [[crop, color], [crop, color, blur], [crop]]
  seed: [0, 1, 2]
"""
ROWS = ["simclr", "byol", "simsiam", "supervised"]  # the registry's order (METHOD_SPECS), not the grid file's
LABELS = ["SimCLR", "BYOL", "SimSiam", "Supervised"]
COLUMNS = ["crop+color", "crop+color+blur", "crop"]  # the grid file's order: the first is the reference
BASE = {"simclr": 70.0, "byol": 74.0, "simsiam": 68.0, "supervised": 85.0}
EFFECT = {"crop+color": 0.0, "crop+color+blur": 1.5, "crop": -20.0}
NEED = {"simclr": 1.0, "byol": 0.4, "simsiam": 0.7, "supervised": 0.05}  # how much each method loses without colour
MISSING_RUN = ("byol", "crop", 2)  # planned, never ran
FAILED_RUN = ("simclr", "crop+color+blur", 0)
COLLAPSED_RUN = ("simsiam", "crop", 1)  # its value: 10.0


def value_of(method, ops, seed):
    noise = ((seed + 1) * (len(ops) + 1) * (ROWS.index(method) + 2)) % 7 / 10  # differs by seed, method and pipeline
    return BASE[method] + NEED[method] * EFFECT[ops] + noise


def write_beyond(folder, grid_text=GRID, name="beyond"):
    """grids/<name>.yaml and its results; returns {(method, ops): {seed: value}} of the completed runs."""
    (folder / "grids").mkdir(exist_ok=True)
    (folder / "grids" / f"{name}.yaml").write_text(grid_text)
    written, results = {}, []
    for run in plan_grid(load_grid(folder / "grids" / f"{name}.yaml")):
        spec = run.spec.model_dump(mode="json")
        method, ops, seed = spec["method"]["name"], "+".join(spec["augment"]["ops"]), spec["seed"]
        key = (method, ops, seed)
        if key == MISSING_RUN:
            continue
        if key == FAILED_RUN:
            result = make_result(spec, name, None, status="failed")
        else:
            value = 10.0 if key == COLLAPSED_RUN else value_of(method, ops, seed)
            written.setdefault((method, ops), {})[seed] = value
            result = with_collapse(make_result(spec, name, value), key == COLLAPSED_RUN)
        results.append(result | {"run_id": run.run_id})
    write_results(folder / "results", name, results)
    return written


def plan_of(folder, name="beyond"):
    return [{"run_id": r.run_id, "spec": r.spec.model_dump(mode="json")} for r in plan_grid(load_grid(folder / "grids" / f"{name}.yaml"))]


def expected_delta(written, method, column, reference):
    """(Δ of the means, std of the per-seed differences or None, number of shared seeds), in float64 by hand."""
    mine, theirs = written[(method, column)], written[(method, reference)]
    delta = statistics.mean(mine.values()) - statistics.mean(theirs.values())
    shared = sorted(set(mine) & set(theirs))
    differences = [mine[seed] - theirs[seed] for seed in shared]
    return delta, (statistics.stdev(differences) if len(differences) > 1 else None), len(shared)


def t_pvalue_by_hand(differences):
    """Two-sided p of the paired t-test: t = mean(d) / (s_d/√n) in float64 loops, p = 2·P(T_{n−1} > |t|)."""
    from scipy.stats import t as student

    n = len(differences)
    mean = sum(differences) / n
    sd = (sum((d - mean) ** 2 for d in differences) / (n - 1)) ** 0.5
    return 2 * student.sf(abs(mean / (sd / n ** 0.5)), n - 1)


def sign_flip_by_hand(differences):
    """Share of the 2^n sign patterns whose |Σ ± d_i| reaches the observed |Σ d_i|."""
    import itertools

    observed = abs(sum(differences))
    patterns = list(itertools.product([1, -1], repeat=len(differences)))
    return sum(abs(sum(s * d for s, d in zip(signs, differences))) >= observed - 1e-9 for signs in patterns) / len(patterns)




def markdown_rows(text, heading):
    """{row label: [cell texts]} of the Markdown table under `heading` (a prefix of its ### line)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"### {heading}"))
    rows = {}
    for line in lines[start + 4:]:
        if not line.startswith("| "):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        rows[cells[0]] = cells[1:]
    return rows, lines[start + 2]


@pytest.fixture(scope="module")
def beyond(tmp_path_factory):
    folder = tmp_path_factory.mktemp("beyond")
    written = write_beyond(folder)
    paths = write_report(folder / "results", "beyond", folder / "reports", "all", planned=plan_of(folder))
    return folder, written, paths


def test_markdown_cells_are_mean_std_n_in_registry_and_grid_order(beyond):
    folder, written, paths = beyond
    assert {"methods.png", "methods.pdf", "methods.svg", "methods.md", "methods.tex", "methods.csv", "index.html"} <= {
        p.name for p in paths}
    text = (folder / "reports" / "beyond" / "methods.md").read_text()
    rows, head = markdown_rows(text, "linear top-1 (%) by method × augment.ops")
    assert head == "| Method \\ augment.ops | " + " | ".join(COLUMNS) + " |"
    assert list(rows) == LABELS
    for method, label in zip(ROWS, LABELS):
        for column, cell in zip(COLUMNS, rows[label]):
            values = list(written[(method, column)].values())
            assert cell.startswith(cell_text(values)), cell
    assert rows["SimCLR"][1].endswith("(n=2, 1 failed)") and rows["BYOL"][2].endswith("(n=2, 1 missing)")
    assert [(label, c) for label, row in rows.items() for c, cell in zip(COLUMNS, row) if "collapsed" in cell] == [
        ("SimSiam", "crop")]
    assert rows["SimSiam"][2].endswith("(n=3, collapsed 1/3)")
    assert "grid beyond: 34 completed, 1 failed, 1 missing runs" in text


def test_deltas_from_the_first_column_equal_independent_computation(beyond):
    folder, written, _ = beyond
    text = (folder / "reports" / "beyond" / "methods.md").read_text()
    rows, _ = markdown_rows(text, "Δ linear top-1 (%) from crop+color, per method")
    table = pd.read_csv(folder / "reports" / "beyond" / "methods.csv")
    assert list(table.columns) == ["method", "augment.ops", "metric", "mean", "std", "ci_low", "ci_high", "n", "failed",
                                   "missing", "collapsed", "reference", "delta", "delta_std", "pairs", "p_t", "p_sign_flip",
                                   "p_t_holm", "p_sign_flip_holm", "vs_best"]
    assert (table["reference"] == "crop+color").all() and len(table) == 12
    # the family: every method's every column against its crop+color cell (8 comparisons, all with ≥ 2 shared seeds)
    family = [(method, column) for method in ROWS for column in COLUMNS[1:]]
    differences = {key: [written[key][s] - written[(key[0], "crop+color")][s]
                         for s in sorted(set(written[key]) & set(written[(key[0], "crop+color")]))] for key in family}
    t_holm = dict(zip(family, holm_by_hand([t_pvalue_by_hand(differences[key]) for key in family])))
    flip_holm = dict(zip(family, holm_by_hand([sign_flip_by_hand(differences[key]) for key in family])))
    for method, label in zip(ROWS, LABELS):
        assert rows[label][0] == "ref."
        for column, cell in zip(COLUMNS[1:], rows[label][1:]):
            delta, std, shared = expected_delta(written, method, column, "crop+color")
            line = table[(table["method"] == label) & (table["augment.ops"] == column)]
            assert line["delta"].item() == pytest.approx(delta, abs=1e-9)
            assert line["delta_std"].item() == pytest.approx(std, abs=1e-9) and line["pairs"].item() == shared
            assert line["p_t"].item() == pytest.approx(t_pvalue_by_hand(differences[(method, column)]), rel=1e-9)
            assert line["p_t_holm"].item() == pytest.approx(t_holm[(method, column)], rel=1e-9)
            assert line["p_sign_flip_holm"].item() == pytest.approx(flip_holm[(method, column)], rel=1e-12)
            notes = [p_text(t_holm[(method, column)]), f"flip {flip_holm[(method, column)]:.3f}"]
            notes += ["collapsed"] if (method, column) == ("simsiam", "crop") else []
            assert cell == f"{delta:+.1f} ± {std:.1f} ({', '.join(notes)})"
        means = table[table["method"] == label].set_index("augment.ops")["mean"]
        assert means["crop+color"] == pytest.approx(statistics.mean(written[(method, "crop+color")].values()))
    assert table.loc[table["collapsed"] > 0, ["method", "augment.ops"]].values.tolist() == [["SimSiam", "crop"]]
    # SimCLR's crop+color+blur has seeds 1, 2 only (seed 0 failed): Δ's std is over those two paired seeds
    assert table[(table["method"] == "SimCLR") & (table["augment.ops"] == "crop+color+blur")]["pairs"].item() == 2


def test_latex_has_both_tables_with_pm_and_the_marks(beyond):
    folder, written, _ = beyond
    tex = (folder / "reports" / "beyond" / "methods.tex").read_text()
    assert tex.count(r"\begin{table}") == 2 and tex.count(r"\toprule") == 2
    values = list(written[("byol", "crop+color+blur")].values())
    low, high = interval(values)
    assert f"${statistics.mean(values):.1f} \\pm {statistics.stdev(values):.1f}$ {{\\scriptsize [{low:.1f}, {high:.1f}] (n=3)}}" in tex
    delta, std, _ = expected_delta(written, "byol", "crop", "crop+color")
    assert f"${delta:+.1f} \\pm {std:.1f}$ {{\\scriptsize (p" in tex
    assert tex.count("collapsed 1/3") == 1 and tex.count(", collapsed)}") == 1
    assert "SimCLR & ref." in tex


def texts_by_cell(axes):
    return {(int(t.get_position()[1]), int(t.get_position()[0])): t.get_text() for t in axes.texts}


def hatched(axes):
    return {(int(p.get_y()), int(p.get_x())): p.get_hatch() for p in axes.patches if p.get_hatch()}


def test_figure_panels_show_the_means_and_deltas_with_the_collapsed_cell_marked(beyond):
    folder, written, _ = beyond
    grid = load_grid_frame(folder / "results", "beyond", plan_of(folder))
    (table,) = methods_tables(grid, "linear_top1", column_axis(grid, None), None)
    figure = draw_methods(table, "title", "header", (60.0, 90.0), 25.0)
    left = next(a for a in figure.axes if a.get_title() == "mean ± std over seeds")
    right = next(a for a in figure.axes if a.get_title() == "Δ from crop+color (each method's own)")
    assert [t.get_text() for t in left.get_yticklabels()] == LABELS
    assert [t.get_text() for t in left.get_xticklabels()] == COLUMNS
    values, deltas = (np.ma.asarray(a.collections[0].get_array()).reshape(4, 3) for a in (left, right))
    left_texts, right_texts = texts_by_cell(left), texts_by_cell(right)
    collapsed = (ROWS.index("simsiam"), COLUMNS.index("crop"))
    for i, method in enumerate(ROWS):
        for j, column in enumerate(COLUMNS):
            cell = list(written[(method, column)].values())
            delta, std, _ = expected_delta(written, method, column, "crop+color")
            if (i, j) == collapsed:
                assert values.mask[i, j] and left_texts[(i, j)] == f"collapsed 1/3\n{statistics.mean(cell):.1f}"
                assert deltas.mask[i, j] and right_texts[(i, j)] == f"collapsed\n{delta:+.1f}"
                continue
            assert values[i, j] == pytest.approx(statistics.mean(cell))
            assert left_texts[(i, j)].startswith(f"{statistics.mean(cell):.1f}\n±{statistics.stdev(cell):.1f}")
            assert deltas[i, j] == pytest.approx(delta)
            assert right_texts[(i, j)] == ("ref." if j == 0 else f"{delta:+.1f}\n±{std:.1f}")
    assert left_texts[(0, 1)].endswith("\nn=2, 1 failed") and left_texts[(1, 2)].endswith("\nn=2")
    assert hatched(left) == {collapsed: ".."} and hatched(right) == {collapsed: ".."}
    assert (left.collections[0].norm.vmin, left.collections[0].norm.vmax) == (60.0, 90.0)
    assert (right.collections[0].norm.vmin, right.collections[0].norm.vmax) == (-25.0, 25.0)


def test_report_colour_limits_leave_the_collapsed_cell_out(beyond, monkeypatch):
    """The section's scales: the metric from the lowest to the highest ordinary cell, Δ symmetric to the largest
    ordinary |Δ| (the collapsed cell, 10.0 and its Δ, stretch neither)."""
    import ablate.report.methods as methods

    folder, written, _ = beyond
    figures, draw = [], methods.draw_methods
    monkeypatch.setattr(methods, "draw_methods", lambda *a, **kw: figures.append(draw(*a, **kw)) or figures[-1])
    write_report(folder / "results", "beyond", folder / "again", "methods", planned=plan_of(folder))
    (figure,) = figures
    left, right = figure.axes[0], figure.axes[1]
    ordinary = {key: statistics.mean(v.values()) for key, v in written.items() if key != ("simsiam", "crop")}
    assert (left.collections[0].norm.vmin, left.collections[0].norm.vmax) == pytest.approx(
        (min(ordinary.values()), max(ordinary.values())))
    bound = max(abs(expected_delta(written, m, c, "crop+color")[0]) for m, c in ordinary if c != "crop+color")
    assert (right.collections[0].norm.vmin, right.collections[0].norm.vmax) == pytest.approx((-bound, bound))
    assert figure.get_suptitle() == "linear top-1 (%) by method × augment.ops (mean ± std over 3 seeds)"


def test_baseline_picks_the_reference_column(tmp_path):
    written = write_beyond(tmp_path)
    write_report(tmp_path / "results", "beyond", tmp_path / "reports", "methods", planned=plan_of(tmp_path),
                 baseline="crop+color+blur")
    table = pd.read_csv(tmp_path / "reports" / "beyond" / "methods.csv")
    assert (table["reference"] == "crop+color+blur").all()
    for row in table.itertuples():
        method = ROWS[LABELS.index(row.method)]
        column = getattr(row, "_2")
        if column == "crop+color+blur":
            assert row.delta == 0.0 and row.pairs == 0
        else:
            assert row.delta == pytest.approx(expected_delta(written, method, column, "crop+color+blur")[0], abs=1e-9)


def test_cli_methods_report_and_bad_baseline_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_beyond(tmp_path)
    assert main(["report", "--grid", "beyond", "--kind", "methods", "--baseline", "crop"]) == 0
    assert (pd.read_csv(tmp_path / "reports" / "beyond" / "methods.csv")["reference"] == "crop").all()
    capsys.readouterr()
    assert main(["report", "--grid", "beyond", "--baseline", "crop+blur"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["ablate: --baseline 'crop+blur': no column of the methods report (augment.ops) is labelled so; "
                   "columns: 'crop+color', 'crop+color+blur', 'crop'"]
    assert main(["report", "--grid", "beyond", "--kind", "methods", "--cols", "method"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ablate: --cols method: the methods report's rows are the methods")
    assert main(["report", "--grid", "beyond", "--kind", "methods", "--cols", "train.bach_size"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ablate: --cols 'train.bach_size': no such axis in grid beyond")


def test_all_includes_it_with_an_html_section_and_no_pair_heatmap(beyond):
    folder, written, paths = beyond
    names = {p.name for p in paths}
    assert not any(n.startswith("heatmap") for n in names)  # pipelines of three operators: no Figure 5 grid
    page = (folder / "reports" / "beyond" / "index.html").read_text()
    assert "Methods × augment.ops: linear top-1 (%) and Δ from the reference column" in page
    values = list(written[("simsiam", "crop")].values())
    assert f'<td class="collapsed">{cell_text(values)}, collapsed 1/3)</td>' in page
    delta, std, _ = expected_delta(written, "simsiam", "crop", "crop+color")
    assert re.search(f'<td class="collapsed">{re.escape(f"{delta:+.1f} ± {std:.1f} (p")}[^<]*, collapsed\\)</td>', page)
    assert page.count('<td class="ok">ref.</td>') == 4


def test_a_grid_without_a_method_axis_gets_no_methods_report(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_beyond(tmp_path, GRID.replace("[supervised, simsiam, simclr, byol]", "[simclr]"), "one")
    paths = write_report(tmp_path / "results", "one", tmp_path / "reports", "all", planned=plan_of(tmp_path, "one"))
    assert not any(p.name.startswith("methods") for p in paths)
    assert "Methods ×" not in (tmp_path / "reports" / "one" / "index.html").read_text()
    with pytest.raises(ReportError, match="grid 'one' has fewer than two methods"):
        write_report(tmp_path / "results", "one", tmp_path / "reports", "methods")
    # --baseline on a grid of one method: the pivot of what it varies takes it
    assert main(["report", "--grid", "one", "--baseline", "crop"]) == 0
    pivot = pd.read_csv(tmp_path / "reports" / "one" / "pivot-method-by-augment.ops-linear_top1.csv")
    assert (pivot["reference"] == "crop").all()
    assert main(["report", "--grid", "one", "--kind", "methods"]) == 2
    assert capsys.readouterr().err.strip().startswith("ablate: grid 'one' has fewer than two methods")


def test_a_pair_grid_of_methods_gets_the_heatmap_not_a_column_per_pair(tmp_path):
    results = [make_result(make_spec(ops, seed, method), "pairs", pair_value(ops[0], ops[-1], seed))
               for method in ("simclr", "byol") for ops in ordered_pairs(["crop", "color"]) for seed in (0, 1)]
    write_results(tmp_path / "results", "pairs", results)
    names = {p.name for p in write_report(tmp_path / "results", "pairs", tmp_path / "reports", "all")}
    assert "heatmap-methods.png" in names and not any(n.startswith("methods") for n in names)


MAPPING_GRID = """\
name: mapped
method: simclr
augment: {protocol: both_branches, ops: [crop, color], crop_scale: [0.2, 1.0]}
grid:
  method: [byol, simclr]
  augment:
    - {color_strength: 1.0}
    - {color_strength: 0.5}
    - {ops: [crop, blur]}
  train.batch_size: [128, 256]
  seed: [0, 1]
"""


def test_mapping_values_are_labelled_by_the_fields_that_differ_and_cols_picks_another_axis(tmp_path):
    (tmp_path / "grids").mkdir()
    (tmp_path / "grids" / "mapped.yaml").write_text(MAPPING_GRID)
    planned, results, expected = [], [], {}
    for run in plan_grid(load_grid(tmp_path / "grids" / "mapped.yaml")):
        spec = run.spec.model_dump(mode="json")
        value = 50 + 10 * spec["augment"]["color_strength"] + len(spec["augment"]["ops"]) + spec["seed"] \
            + spec["train"]["batch_size"] / 128
        key = (spec["method"]["name"], spec["train"]["batch_size"], "+".join(spec["augment"]["ops"]),
               spec["augment"]["color_strength"])
        expected.setdefault(key, []).append(value)
        planned.append({"run_id": run.run_id, "spec": spec})
        results.append(make_result(spec, "mapped", value) | {"run_id": run.run_id})
    write_results(tmp_path / "results", "mapped", results)
    write_report(tmp_path / "results", "mapped", tmp_path / "reports", "methods", planned=planned)
    text = (tmp_path / "reports" / "mapped" / "methods.md").read_text()
    rows, head = markdown_rows(text, "linear top-1 (%) by method × augment (train.batch_size=128)")
    assert head == ("| Method \\ augment | crop+color, color_strength=1 | crop+color, color_strength=0.5 | "
                    "crop+blur, color_strength=1 |")  # crop_scale and protocol do not differ: not shown
    assert list(rows) == ["SimCLR", "BYOL"]
    values = expected[("byol", 128, "crop+color", 0.5)]
    assert rows["BYOL"][1] == cell_text(values) + ")"
    assert "(train.batch_size=256)" in text

    write_report(tmp_path / "results", "mapped", tmp_path / "reports", "methods", planned=planned, cols="train.batch_size")
    table = pd.read_csv(tmp_path / "reports" / "mapped" / "methods.csv")
    assert list(table.columns[:3]) == ["augment.color_strength", "augment.ops", "method"]  # the other axes: facets
    part = table[(table["augment.ops"] == "crop+blur") & (table["method"] == "SimCLR")]
    assert part["train.batch_size"].tolist() == [128, 256]
    high, low = expected[("simclr", 256, "crop+blur", 1.0)], expected[("simclr", 128, "crop+blur", 1.0)]
    assert part["delta"].tolist() == pytest.approx([0.0, statistics.mean(high) - statistics.mean(low)])


def test_column_labels_and_order_without_a_plan():
    pipelines = ColumnAxis("augment.ops", ("augment.ops",))
    assert pipelines.label(("crop+color+blur",)) == "crop+color+blur" and pipelines.label(("",)) == "none"
    keys = [("crop",), ("crop+color",), ("color+blur",), ("crop+color+blur",)]
    # no grid order known: the longest pipeline (the full one) first, then the paper's operator order
    assert sorted(keys, key=pipelines.sort_key) == [("crop+color+blur",), ("crop+color",), ("color+blur",), ("crop",)]
    mapping = ColumnAxis("augment", ("augment.ops", "augment.color_strength"))
    assert mapping.label(("crop+color", 0.5)) == "crop+color, color_strength=0.5"
    assert mapping.label(("crop+autoaugment", None)) == "crop+autoaugment"
    assert wrapped("crop+color+blur+rotate+noise") == "crop+color+blur+\nrotate+noise"
    assert wrapped("crop+color, color_strength=0.5") == "crop+color,\ncolor_strength=0.5"
