"""Figure 5 heatmap: CSV numbers equal the means/stds computed here, missing and failed cells stay visible."""

import statistics

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from report_helpers import (PAPER_OPS, cell_text, distinct_colours, interval, make_result, make_spec, markdown_table,
                            ordered_pairs, pair_grid, pair_value, run_id, with_collapse, write_results)

import ablate.report.heatmap as heatmap
from ablate.report.build import write_report
from ablate.report.data import Cell, ReportError, load_grid_frame
from ablate.report.heatmap import (PairTable, diff_table, draw_difference, draw_heatmap, pair_frame, pair_operators,
                                   pair_table)

SEEDS = [0, 1, 2]
ABSENT = ("sobel", "noise")  # planned, never run
ALL_FAILED = ("blur", "rotate")  # every seed failed
ONE_FAILED = ("noise", "noise")  # seed 2 failed


def build_grid(root, grid="fig5"):
    """7 operators × 3 seeds with known numbers; returns (plan, the values written per cell)."""
    return pair_grid(root, grid, PAPER_OPS, SEEDS, absent=(ABSENT,), seconds=10.0,
                     failed=lambda key, seed: key == ALL_FAILED or (key == ONE_FAILED and seed == 2))


@pytest.fixture(scope="module")
def fig5(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fig5")
    plan, written = build_grid(folder / "results")
    paths = write_report(folder / "results", "fig5", folder / "reports", "heatmap", planned=plan)
    return folder, plan, written, paths


def test_csv_means_stds_and_counts_equal_independent_computation(fig5):
    folder, _, written, _ = fig5
    table = pd.read_csv(folder / "reports" / "fig5" / "heatmap.csv")
    assert list(table.columns) == ["first", "second", "mean", "std", "ci_low", "ci_high", "n", "vs_best", "diff_from_best",
                                   "pairs", "p_t", "p_sign_flip", "p_t_holm", "p_sign_flip_holm"]
    assert len(table) == 49
    for row in table.itertuples():
        values = written.get((row.first, row.second), [])
        assert row.n == len(values)
        if values:
            assert row.mean == pytest.approx(statistics.mean(values), abs=1e-9)
        if len(values) > 1:
            assert row.std == pytest.approx(statistics.stdev(values), abs=1e-9)
            assert (row.ci_low, row.ci_high) == pytest.approx(interval(values), abs=1e-9)
    assert table.loc[(table["first"] == "crop") & (table["second"] == "color"), "mean"].item() == pytest.approx(
        statistics.mean([60.0, 61.5, 59.3]))


def test_rows_and_columns_in_paper_order(fig5):
    folder = fig5[0]
    table = pd.read_csv(folder / "reports" / "fig5" / "heatmap.csv")
    assert list(dict.fromkeys(table["first"])) == PAPER_OPS
    assert list(table["second"][:7]) == PAPER_OPS
    _, header = markdown_table((folder / "reports" / "fig5" / "heatmap.md").read_text())
    assert header == "| 1st \\ 2nd | crop | cutout | color | sobel | noise | blur | rotate | row mean |"


def test_missing_and_failed_cells_are_shown_and_counted(fig5):
    folder = fig5[0]
    table = pd.read_csv(folder / "reports" / "fig5" / "heatmap.csv")
    for first, second in (ABSENT, ALL_FAILED):
        cell = table[(table["first"] == first) & (table["second"] == second)]
        assert cell["n"].item() == 0 and cell["mean"].isna().item()
    markdown = (folder / "reports" / "fig5" / "heatmap.md").read_text()
    # 49 cells × 3 seeds = 147 planned: 3 never ran, 3 + 1 failed, the rest completed.
    assert "grid fig5: 140 completed, 4 failed, 3 missing runs" in markdown
    assert "cpu (test, 2 cores) × 144 runs" in markdown and "25.3 min compute" in markdown  # 140 × 10 s + 4 × 30 s
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in markdown.splitlines() if line.startswith("| ")}
    assert rows["sobel"][PAPER_OPS.index("noise") + 1] == "— (3 missing)"
    assert rows["blur"][PAPER_OPS.index("rotate") + 1] == "— (3 failed)"
    assert rows["noise"][PAPER_OPS.index("noise") + 1].endswith("(n=2, 1 failed)")
    assert rows["sobel"][-1].strip(" |").endswith("*")  # a row mean over an incomplete row is flagged
    sobel = [statistics.mean([pair_value("sobel", b, s) for s in SEEDS]) for b in PAPER_OPS if b != "noise"]
    assert float(rows["sobel"][-1].strip(" |*")) == pytest.approx(statistics.mean(sobel), abs=0.051)


def test_figures_are_drawn_in_three_formats(fig5):
    folder, _, _, paths = fig5
    out = folder / "reports" / "fig5"
    assert {p.name for p in paths} >= {"heatmap.png", "heatmap.pdf", "heatmap.svg", "heatmap.csv", "heatmap.md"}
    image = Image.open(out / "heatmap.png").convert("RGB")
    assert image.size[0] > 1000 and image.size[1] > 900
    pixels = np.asarray(image).reshape(-1, 3)
    assert distinct_colours(pixels) > 200  # a coloured heatmap, not a blank canvas
    assert (out / "heatmap.pdf").read_bytes()[:5] == b"%PDF-"
    svg = (out / "heatmap.svg").read_text()
    assert "<svg" in svg and "missing" in svg and "failed" in svg  # the labels of the hatched cells


def test_planned_pair_without_any_result_is_a_missing_cell(tmp_path):
    """A pair only the plan knows about (no result, no other run naming its operator) still gets its cell."""
    root = tmp_path / "results"
    plan, results = [], []
    for ops in ordered_pairs(["crop", "color"]):
        spec = make_spec(ops, 0)
        plan.append({"run_id": run_id(spec), "spec": spec})
        results.append(make_result(spec, "g", pair_value(ops[0], ops[-1], 0)))
    extra = make_spec(["crop", "rotate"], 0)
    plan.append({"run_id": run_id(extra), "spec": extra})
    write_results(root, "g", results)
    write_report(root, "g", tmp_path / "reports", "heatmap", planned=plan)
    table = pd.read_csv(tmp_path / "reports" / "g" / "heatmap.csv")
    assert list(dict.fromkeys(table["first"])) == ["crop", "color", "rotate"]
    cell = table[(table["first"] == "crop") & (table["second"] == "rotate")]
    assert cell["n"].item() == 0
    assert "4 completed, 0 failed, 1 missing runs" in (tmp_path / "reports" / "g" / "heatmap.md").read_text()


def test_without_plan_missing_count_is_unknown_but_empty_cells_stay(tmp_path):
    root = tmp_path / "results"
    build_grid(root)
    write_report(root, "fig5", tmp_path / "reports", "heatmap")
    markdown = (tmp_path / "reports" / "fig5" / "heatmap.md").read_text()
    assert "unknown number of missing runs (plan unknown" in markdown
    assert "— (3 failed)" in markdown and "| sobel | " in markdown and " — |" in markdown


def test_method_axis_gives_one_heatmap_per_method_not_an_average(tmp_path):
    root = tmp_path / "results"
    results, expected = [], {}
    for method, offset in (("simclr", 0.0), ("supervised", 30.0)):
        for ops in ordered_pairs(["crop", "color"]):
            for seed in (0, 1):
                value = pair_value(ops[0], ops[-1], seed, offset)
                expected.setdefault((method, ops[0], ops[-1]), []).append(value)
                results.append(make_result(make_spec(ops, seed, method), "m", value))
    write_results(root, "m", results)
    paths = write_report(root, "m", tmp_path / "reports", "heatmap")
    names = {p.name for p in paths}
    # the methods side by side in one figure; tables keep a part per method
    assert {"heatmap-methods.png", "heatmap-methods.pdf", "heatmap-methods.svg"} <= names
    assert "heatmap.png" not in names and not any(n.startswith("heatmap--method") for n in names)
    table = pd.read_csv(tmp_path / "reports" / "m" / "heatmap.csv")
    assert list(table.columns)[:8] == ["method", "first", "second", "mean", "std", "ci_low", "ci_high", "n"]
    assert len(table) == 8
    for row in table.itertuples():
        values = expected[(row.method, row.first, row.second)]
        assert row.n == 2 and row.mean == pytest.approx(statistics.mean(values))
        assert row.std == pytest.approx(statistics.stdev(values))
    assert "## method=supervised" in (tmp_path / "reports" / "m" / "heatmap.md").read_text()


def test_two_varying_axes_split_into_every_combination(tmp_path):
    root = tmp_path / "results"
    results = [make_result(make_spec(ops, 0, method, strength), "two", 50.0 + strength)
               for method in ("simclr", "supervised") for strength in (0.5, 1.0) for ops in ordered_pairs(["crop", "color"])]
    write_results(root, "two", results)
    names = {p.name for p in write_report(root, "two", tmp_path / "reports", "heatmap")}
    # one figure per colour strength, each with the two methods side by side
    assert {n for n in names if n.endswith(".png")} == {"heatmap-methods--color_strength-0.5.png",
                                                         "heatmap-methods--color_strength-1.png"}
    table = pd.read_csv(tmp_path / "reports" / "two" / "heatmap.csv")
    assert set(table["mean"]) == {50.5, 51.0} and set(table["n"]) == {1}


def test_unknown_grid_and_metric_are_report_errors(tmp_path):
    root = tmp_path / "results"
    build_grid(root)
    with pytest.raises(ReportError, match="no results for grid 'nope'.*grids with results: fig5"):
        write_report(root, "nope", tmp_path / "reports", "heatmap")
    with pytest.raises(ReportError, match="unknown metric 'top1'.*available: .*linear_top1"):
        write_report(root, "fig5", tmp_path / "reports", "heatmap", metric="top1")
    with pytest.raises(ReportError, match="not a plain grid name"):
        load_grid_frame(root, "../etc", None)


def test_other_metric_is_drawn(tmp_path):
    root = tmp_path / "results"
    _, written = build_grid(root)
    write_report(root, "fig5", tmp_path / "reports", "heatmap", metric="knn_top1")
    table = pd.read_csv(tmp_path / "reports" / "fig5" / "heatmap.csv")
    crop_color = table[(table["first"] == "crop") & (table["second"] == "color")]
    assert crop_color["mean"].item() == pytest.approx(statistics.mean(written[("crop", "color")]) - 5)


def test_the_header_says_when_runs_computed_colour_compiled(tmp_path):
    """Runs made with ABLATE_COMPILE_COLOR=1 (provenance "color") are counted in the header; eager runs say nothing."""
    results = [make_result({"augment": {"ops": ["crop"]}, "seed": seed}, "mixed", 50.0 + seed) for seed in range(3)]
    results[0]["provenance"]["color"] = "compiled (torch.compile)"
    results[1]["provenance"]["color"] = "eager"  # results[2]: written before the field existed
    write_results(tmp_path, "mixed", results)
    header = load_grid_frame(tmp_path, "mixed").header()
    assert "cpu (test, 2 cores) × 3 runs; colour compiled (ABLATE_COMPILE_COLOR) in 1 runs;" in header
    results[0]["provenance"]["color"] = "eager: torch.compile failed (no compiler)"
    write_results(tmp_path, "mixed", results[:1])
    assert "colour compiled" not in load_grid_frame(tmp_path, "mixed").header()


# ------------------------------------------------------------------------------ the figure, read back


def pair_table_of(root, grid, plan=None):
    pairs = pair_frame(load_grid_frame(root, grid, plan).frame)
    return pair_table(pairs, pair_operators(pairs))


def texts_by_cell(axes):
    """Each text on the heatmap's axes by the cell whose centre it sits at: {(row, column): text}."""
    return {(int(t.get_position()[1]), int(t.get_position()[0])): t.get_text() for t in axes.texts}


def test_figure_shows_the_tables_means_and_masks_cells_without_a_result(fig5):
    folder, plan, written, _ = fig5
    axes = draw_heatmap(pair_table_of(folder / "results", "fig5", plan), "title", "header").axes[0]
    drawn = np.ma.asarray(axes.collections[0].get_array()).reshape(7, 8)  # seaborn's QuadMesh: 7 operators + row mean
    texts = texts_by_cell(axes)
    for i, first in enumerate(PAPER_OPS):
        row = []
        for j, second in enumerate(PAPER_OPS):
            values = written.get((first, second))
            if not values:
                assert drawn.mask[i, j] and texts[(i, j)] == ("failed" if (first, second) == ALL_FAILED else "missing")
                continue
            row.append(statistics.mean(values))
            assert not drawn.mask[i, j] and drawn[i, j] == pytest.approx(statistics.mean(values), abs=1e-9)
            expected = f"{statistics.mean(values):.1f}\n±{statistics.stdev(values):.1f}"
            if (first, second) == ONE_FAILED:
                expected += "\nn=2, 1 failed"
            assert texts[(i, j)] == expected
        assert drawn[i, 7] == pytest.approx(statistics.mean(row), abs=1e-9)
        assert texts[(i, 7)] == f"{statistics.mean(row):.1f}" + ("*" if len(row) < 7 else "")
    hatched = {(int(p.get_y()), int(p.get_x())): p.get_hatch() for p in axes.patches if p.get_hatch()}
    cell_of = {name: PAPER_OPS.index(name) for name in PAPER_OPS}
    assert hatched == {(cell_of[ABSENT[0]], cell_of[ABSENT[1]]): "///", (cell_of[ALL_FAILED[0]], cell_of[ALL_FAILED[1]]): "xx"}
    means = [statistics.mean(v) for v in written.values()]
    assert (axes.collections[0].norm.vmin, axes.collections[0].norm.vmax) == pytest.approx((min(means), max(means)))


def test_facets_share_one_colour_scale(tmp_path, monkeypatch):
    """Two colour strengths 30 points apart (one method): a figure each, both coloured on the range of all cells,
    so that equal colours mean equal numbers."""
    figures, draw = [], heatmap.draw_heatmap
    monkeypatch.setattr(heatmap, "draw_heatmap", lambda *args, **kw: figures.append(draw(*args, **kw)) or figures[-1])
    values = {(strength, ops[0], ops[-1]): pair_value(ops[0], ops[-1], 0, offset)
              for strength, offset in ((0.5, 0.0), (1.0, 30.0)) for ops in ordered_pairs(["crop", "color"])}
    write_results(tmp_path / "results", "s", [make_result(make_spec([a] if a == b else [a, b], 0, strength=s), "s", v)
                                               for (s, a, b), v in values.items()])
    names = {p.name for p in write_report(tmp_path / "results", "s", tmp_path / "reports", "heatmap")}
    assert {n for n in names if n.endswith(".png")} == {"heatmap--color_strength-0.5.png", "heatmap--color_strength-1.png"}
    assert len(figures) == 2
    for figure in figures:
        mesh = figure.axes[0].collections[0]
        assert (mesh.norm.vmin, mesh.norm.vmax) == pytest.approx((min(values.values()), max(values.values())))
    colorbars = [figure.axes[1].get_ylim() for figure in figures]
    assert colorbars[0] == pytest.approx(colorbars[1])


def method_pair_values(methods):
    """{(method, first, second): [value per seed 0, 1]}: each method 10 points above the one before."""
    return {(method, ops[0], ops[-1]): [pair_value(ops[0], ops[-1], seed, 10.0 * index) for seed in (0, 1)]
            for index, method in enumerate(methods) for ops in ordered_pairs(["crop", "color", "blur"])}


def test_methods_are_panels_of_one_figure_on_one_colour_scale(tmp_path, monkeypatch):
    """A pair grid of three methods: one figure, a panel per method titled by its label in the registry's order,
    every panel's cells on the range of all methods' cells, one colour bar."""
    figures, draw = [], heatmap.draw_method_heatmaps
    monkeypatch.setattr(heatmap, "draw_method_heatmaps", lambda *a, **kw: figures.append(draw(*a, **kw)) or figures[-1])
    expected = method_pair_values(["supervised", "byol", "simclr"])
    write_results(tmp_path / "results", "m3", [make_result(make_spec([a] if a == b else [a, b], seed, m), "m3", v[seed])
                                                for (m, a, b), v in expected.items() for seed in (0, 1)])
    names = {p.name for p in write_report(tmp_path / "results", "m3", tmp_path / "reports", "heatmap")}
    assert {n for n in names if n.endswith(".png")} == {"heatmap-methods.png"}
    (figure,) = figures
    panels = [axes for axes in figure.axes if axes.get_title()]
    assert [axes.get_title() for axes in panels] == ["SimCLR", "BYOL", "Supervised"]
    means = [statistics.mean(v) for v in expected.values()]
    ops = ["crop", "color", "blur"]
    for axes, method in zip(panels, ["simclr", "byol", "supervised"]):
        mesh = axes.collections[0]
        assert (mesh.norm.vmin, mesh.norm.vmax) == pytest.approx((min(means), max(means)))
        drawn = np.ma.asarray(mesh.get_array()).reshape(3, 4)
        texts = texts_by_cell(axes)
        for i, first in enumerate(ops):
            for j, second in enumerate(ops):
                values = expected[(method, first, second)]
                assert drawn[i, j] == pytest.approx(statistics.mean(values))
                assert texts[(i, j)] == f"{statistics.mean(values):.1f}\n±{statistics.stdev(values):.1f}"
    bars = [axes for axes in figure.axes if not axes.get_title() and axes.get_ylabel() == "linear top-1 (%)"]
    assert len(bars) == 1 and bars[0].get_ylim() == pytest.approx((min(means), max(means)))
    assert figure.get_suptitle().startswith("linear top-1 (%): 1st × 2nd transformation, by method (mean ± std over 2 seeds)")
    markdown = (tmp_path / "reports" / "m3" / "heatmap.md").read_text()
    assert markdown.index("## method=simclr") < markdown.index("## method=byol") < markdown.index("## method=supervised")


def test_panel_layout_wraps_after_four():
    assert [heatmap.panel_layout(n) for n in (1, 2, 3, 4, 5, 6, 7, 8)] == [
        (1, 1), (1, 2), (1, 3), (1, 4), (2, 3), (2, 3), (2, 4), (2, 4)]


def test_difference_figure_shows_b_minus_a_and_hatches_cells_in_one_grid_only():
    a = PairTable(["crop", "color"], {("crop", "crop"): Cell([60.0, 62.0]), ("crop", "color"): Cell([70.0, 72.0]),
                                       ("color", "crop"): Cell([50.0, 52.0])})
    b = PairTable(["crop", "color"], {("crop", "crop"): Cell([65.0, 67.0]), ("crop", "color"): Cell([68.0, 70.0])})
    axes = draw_difference(diff_table(a, b), "title", "header", "linear_top1", ("ga", "gb")).axes[0]
    drawn = np.ma.asarray(axes.collections[0].get_array()).reshape(2, 3)
    assert drawn[0].tolist() == pytest.approx([5.0, -2.0, 1.5])  # row mean over the two shared cells
    assert drawn.mask[1].all()
    texts = texts_by_cell(axes)
    # each side: std sqrt(2), n = 2, so the standard error of the difference is sqrt(2/2 + 2/2)
    stderr = f"{np.sqrt(2):.1f}"
    assert texts[(0, 0)] == f"+5.0\n±{stderr}" and texts[(0, 1)] == f"-2.0\n±{stderr}" and texts[(0, 2)] == "+1.5"
    assert texts[(1, 0)] == "only A\n(ga)" and texts[(1, 1)] == "missing" and texts[(1, 2)] == "missing"
    mesh = axes.collections[0]
    assert (mesh.norm.vmin, mesh.norm.vmax) == (-5.0, 5.0)  # symmetric about 0, the largest |difference|


# ------------------------------------------------------------------------------------------ collapse


def collapse_pair_grid(root, diagnosed=True):
    """crop, color, blur × seeds 0, 1; crop→blur seed 1 collapsed, with a value (5.0) far below every other cell."""
    written, results = {}, []
    for ops in ordered_pairs(["crop", "color", "blur"]):
        for seed in (0, 1):
            collapsed = (ops[0], ops[-1], seed) == ("crop", "blur", 1)
            value = 5.0 if collapsed else pair_value(ops[0], ops[-1], seed)
            written.setdefault((ops[0], ops[-1]), []).append(value)
            result = make_result(make_spec(ops, seed), "col", value)
            results.append(with_collapse(result, collapsed) if diagnosed else result)
    write_results(root, "col", results)
    return written


def test_a_collapsed_cell_is_hatched_labelled_and_off_the_colour_scale(tmp_path):
    written = collapse_pair_grid(tmp_path / "results")
    axes = draw_heatmap(pair_table_of(tmp_path / "results", "col"), "title", "header").axes[0]
    ops = ["crop", "color", "blur"]
    drawn = np.ma.asarray(axes.collections[0].get_array()).reshape(3, 4)
    texts = texts_by_cell(axes)
    blur = ops.index("blur")
    assert drawn.mask[0, blur] and texts[(0, blur)] == f"collapsed 1/2\n{statistics.mean(written[('crop', 'blur')]):.1f}"
    hatched = {(int(p.get_y()), int(p.get_x())): p.get_hatch() for p in axes.patches if p.get_hatch()}
    assert hatched == {(0, blur): ".."}  # and no other cell
    assert sum("collapsed" in text for text in texts.values()) == 1
    healthy = [statistics.mean(v) for key, v in written.items() if key != ("crop", "blur")]
    mesh = axes.collections[0]
    assert (mesh.norm.vmin, mesh.norm.vmax) == pytest.approx((min(healthy), max(healthy)))  # 5.0 stretches nothing
    crop_row = [statistics.mean(written[("crop", second)]) for second in ops]
    assert texts[(0, 3)] == f"{statistics.mean(crop_row):.1f}"  # the row mean still counts the collapsed cell's value
    legend = [text.get_text() for text in axes.get_legend().get_texts()]
    assert legend == ["collapsed (k of n runs; not on the colour scale)"]  # drawn without comparisons: no outline


def test_collapsed_cell_in_heatmap_files_and_older_results_unmarked(tmp_path):
    written = collapse_pair_grid(tmp_path / "results")
    write_report(tmp_path / "results", "col", tmp_path / "reports", "heatmap")
    out = tmp_path / "reports" / "col"
    table = pd.read_csv(out / "heatmap.csv")
    assert list(table.columns)[:8] == ["first", "second", "mean", "std", "ci_low", "ci_high", "n", "collapsed"]
    assert table.loc[table["collapsed"] > 0, ["first", "second", "collapsed", "vs_best"]].values.tolist() == [
        ["crop", "blur", 1, "collapsed"]]  # not compared with the best: its number is no ordinary one
    values = written[("crop", "blur")]
    markdown = (out / "heatmap.md").read_text()
    assert f"| {cell_text(values)}, collapsed 1/2) |" in markdown
    assert markdown.count("collapsed 1/2") == 1 and "collapsed k/n: k of the cell's n completed runs" in markdown
    assert "collapsed" in (out / "heatmap.svg").read_text()

    collapse_pair_grid(tmp_path / "old", diagnosed=False)
    write_report(tmp_path / "old", "col", tmp_path / "old-reports", "heatmap")
    assert "collapsed" not in pd.read_csv(tmp_path / "old-reports" / "col" / "heatmap.csv").columns
    assert "collapsed" not in (tmp_path / "old-reports" / "col" / "heatmap.md").read_text()
    axes = draw_heatmap(pair_table_of(tmp_path / "old", "col"), "title", "header").axes[0]
    assert not [p for p in axes.patches if p.get_hatch()]  # the low cell is drawn as an ordinary cell
    assert axes.collections[0].norm.vmin == pytest.approx(statistics.mean(values))


def test_the_header_says_when_runs_trained_on_several_processes(tmp_path):
    """Runs of `ablate run --devices N` (result "processes") are counted in the header; one process says nothing."""
    results = [make_result({"augment": {"ops": ["crop"]}, "seed": seed}, "ranks", 50.0 + seed) for seed in range(4)]
    results[0]["processes"] = 2
    results[1]["processes"] = 2
    results[2]["processes"] = 8
    results[3]["processes"] = 1
    write_results(tmp_path, "ranks", results)
    header = load_grid_frame(tmp_path, "ranks").header()
    assert "cpu (test, 2 cores) × 4 runs; 2 runs trained on 2 processes; 1 run trained on 8 processes;" in header
    for result in results[:3]:
        result.pop("processes")  # written before ablate trained on several processes, or on one
    write_results(tmp_path, "ranks", results[:3])
    assert "processes" not in load_grid_frame(tmp_path, "ranks").header()
