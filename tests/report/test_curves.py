"""The training-curves report: each run's curves as rows, each cell's mean over seeds, one panel per cell
with a line per seed, one overlay line per cell, the files it writes, and when `--all` draws it."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from report_helpers import make_result, make_spec, run_id

from ablate.report.build import ReportOptions
from ablate.report.curves import CurvesReport, cells_of, draw_overlay, draw_small_multiples, mean_curve, run_curves
from ablate.report.data import GridFrame
from ablate.store import result_row

# (ops, seed) -> curves; crop+color's seed 1 ran with the monitor off.
CURVES = {
    (("crop",), 0): {"epoch_loss": [5.0, 4.0, 3.0, 2.5], "lr": [0.1, 0.08, 0.04, 0.01],
                     "monitor_epochs": [2, 4], "monitor_knn_top1": [30.0, 40.0]},
    (("crop",), 1): {"epoch_loss": [6.0, 5.0, 4.0, 3.5], "lr": [0.1, 0.08, 0.04, 0.01],
                     "monitor_epochs": [2, 4], "monitor_knn_top1": [34.0, 50.0]},
    (("crop", "color"), 0): {"epoch_loss": [4.0, 3.0, 2.0, 1.0], "lr": [0.1, 0.08, 0.04, 0.01],
                             "monitor_epochs": [2, 4], "monitor_knn_top1": [60.0, 80.0]},
    (("crop", "color"), 1): {"epoch_loss": [4.5, 3.5, 2.5, 1.5], "lr": [0.1, 0.08, 0.04, 0.01]},
}


def grid_frame(curves=CURVES, extra_rows=(), plan_first=("crop",)) -> GridFrame:
    """Completed runs with `curves`, plus `extra_rows`; the plan lists `plan_first`'s runs first."""
    rows = []
    for (ops, seed), run_curves_ in curves.items():
        result = make_result(make_spec(list(ops), seed), "g", 50.0) | {"curves": run_curves_}
        rows.append(result_row(result) | {"curves": run_curves_})
    rows.extend(extra_rows)
    frame = pd.DataFrame(rows)
    frame["plan_index"] = [0.0 if row["augment.ops"] == "+".join(plan_first) else 10.0 for _, row in frame.iterrows()]
    frame["plan_index"] += frame["seed"].astype(float)
    return GridFrame("g", frame, plan_known=True)


def test_each_run_is_a_row_per_epoch_and_runs_without_curves_are_left_out():
    failed = result_row(make_result(make_spec(["crop"], 2), "g", None, status="failed")) | {"curves": None}
    old = result_row(make_result(make_spec(["crop"], 3), "g", 50.0)) | {"curves": None}  # written before curves existed
    table = run_curves(grid_frame(extra_rows=[failed, old]))
    assert len(table) == 4 * 4 and set(table["seed"]) == {0, 1}
    run = table[(table["augment.ops"] == "crop") & (table["seed"] == 1)]
    assert run["run_id"].unique().tolist() == [run_id(make_spec(["crop"], 1))]
    assert run["epoch"].tolist() == [1, 2, 3, 4]
    assert run["epoch_loss"].tolist() == [6.0, 5.0, 4.0, 3.5]
    assert run["lr"].tolist() == [0.1, 0.08, 0.04, 0.01]
    assert run["monitor_knn_top1"].tolist()[1::2] == [34.0, 50.0] and run["monitor_knn_top1"][::2].isna().all()


def test_a_cell_mean_is_over_the_seeds_that_have_the_epoch():
    table = run_curves(grid_frame())
    cells = dict(cells_of(table, ["augment.ops"]))
    assert mean_curve(cells["crop"], "epoch_loss").to_dict() == {1: 5.5, 2: 4.5, 3: 3.5, 4: 3.0}
    assert mean_curve(cells["crop"], "monitor_knn_top1").to_dict() == {2: 32.0, 4: 45.0}
    assert mean_curve(cells["crop+color"], "monitor_knn_top1").to_dict() == {2: 60.0, 4: 80.0}  # seed 1 measured nothing


def test_cells_follow_the_plan_when_it_is_known():
    table = run_curves(grid_frame(plan_first=("crop", "color")))
    assert [label for label, _ in cells_of(table, ["augment.ops"])] == ["crop", "crop+color"]  # the values' order
    plan = grid_frame(plan_first=("crop", "color")).frame.set_index("run_id")["plan_index"]
    assert [label for label, _ in cells_of(table, ["augment.ops"], plan)] == ["crop+color", "crop"]


def test_small_multiples_have_a_panel_per_cell_and_a_line_per_seed():
    cells = cells_of(run_curves(grid_frame()), ["augment.ops"])
    figure = draw_small_multiples(cells, "epoch_loss", "t", "header")
    try:
        panels = [axes for axes in figure.axes if axes.get_visible()]
        assert [axes.get_title() for axes in panels] == ["crop", "crop+color"]
        assert [[line.get_ydata().tolist() for line in axes.lines] for axes in panels] == [
            [[5.0, 4.0, 3.0, 2.5], [6.0, 5.0, 4.0, 3.5]], [[4.0, 3.0, 2.0, 1.0], [4.5, 3.5, 2.5, 1.5]]]
        # A seed has one colour in every panel.
        assert [line.get_color() for line in panels[0].lines] == [line.get_color() for line in panels[1].lines]
    finally:
        plt.close(figure)
    figure = draw_small_multiples(cells, "monitor_knn_top1", "t", "header")
    try:
        knn = [axes for axes in figure.axes if axes.get_visible()]
        assert [[(line.get_xdata().tolist(), line.get_ydata().tolist()) for line in axes.lines] for axes in knn] == [
            [([2, 4], [30.0, 40.0]), ([2, 4], [34.0, 50.0])], [([2, 4], [60.0, 80.0])]]
    finally:
        plt.close(figure)


def test_the_overlay_has_each_cells_mean_on_loss_knn_and_lr():
    cells = cells_of(run_curves(grid_frame()), ["augment.ops"])
    figure = draw_overlay(cells, "t", "header")
    try:
        loss, knn, lr = figure.axes
        assert [line.get_label() for line in loss.lines] == ["crop", "crop+color"]
        assert [line.get_ydata().tolist() for line in loss.lines] == [[5.5, 4.5, 3.5, 3.0], [4.25, 3.25, 2.25, 1.25]]
        assert [line.get_ydata().tolist() for line in knn.lines] == [[32.0, 45.0], [60.0, 80.0]]
        assert np.allclose(lr.lines[0].get_ydata(), [0.1, 0.08, 0.04, 0.01])
    finally:
        plt.close(figure)


def test_the_section_writes_figures_in_three_formats_and_the_csv(tmp_path: Path):
    section = CurvesReport().section(grid_frame(), tmp_path, ReportOptions())
    names = sorted(path.name for path in section.files)
    assert names == sorted([f"curves-{kind}.{fmt}" for kind in ("loss", "knn", "overlay") for fmt in ("png", "pdf", "svg")]
                           + ["curves.csv"])
    assert len(section.figures) == 3
    for kind in ("loss", "knn", "overlay"):
        assert (tmp_path / f"curves-{kind}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (tmp_path / f"curves-{kind}.pdf").read_bytes()[:5] == b"%PDF-"
        assert b"<svg" in (tmp_path / f"curves-{kind}.svg").read_bytes()[:2000]
    written = pd.read_csv(tmp_path / "curves.csv")
    loss = written[written["series"] == "epoch_loss"]
    assert loss[loss["cell"] == "crop"][["epoch", "mean", "n"]].values.tolist() == [[1, 5.5, 2], [2, 4.5, 2], [3, 3.5, 2], [4, 3.0, 2]]
    assert loss[loss["cell"] == "crop"]["std"].tolist() == pytest.approx([2 ** -0.5] * 4)  # seeds 1 apart, ddof 1
    knn = written[(written["series"] == "monitor_knn_top1") & (written["cell"] == "crop+color")]
    assert knn[["epoch", "mean", "n"]].values.tolist() == [[2, 60.0, 1], [4, 80.0, 1]]


def test_no_knn_figure_when_no_run_was_monitored(tmp_path: Path):
    plain = {key: {"epoch_loss": curves["epoch_loss"], "lr": curves["lr"]} for key, curves in CURVES.items()}
    section = CurvesReport().section(grid_frame(plain), tmp_path, ReportOptions())
    assert not (tmp_path / "curves-knn.png").exists() and len(section.figures) == 2
    figure = draw_overlay(cells_of(run_curves(grid_frame(plain)), ["augment.ops"]), "t", "header")
    try:
        assert [axes.get_ylabel() for axes in figure.axes] == ["loss", "learning rate"]
    finally:
        plt.close(figure)


@pytest.mark.parametrize("curves, applies", [
    (CURVES, True),
    ({key: {"epoch_loss": [3.0], "lr": [0.1]} for key in CURVES}, False),  # one epoch: nothing to draw
    ({}, False),
])
def test_applies_when_a_completed_run_has_two_epochs(curves, applies):
    if curves:
        grid = grid_frame(curves)
    else:  # results of an older ablate: no curves column at all
        grid = GridFrame("g", pd.DataFrame([result_row(make_result(make_spec(["crop"], 0), "g", 50.0))]), plan_known=False)
    assert CurvesReport().applies(grid, ReportOptions()) is applies


def test_a_cell_of_many_seeds_is_drawn_as_its_mean_and_band():
    rows = []
    for seed in range(12):
        curves = {"epoch_loss": [5.0 + seed, 4.0 + seed, 3.0 + seed]}
        result = make_result(make_spec(["crop"], seed), "g", 50.0) | {"curves": curves}
        rows.append(result_row(result) | {"curves": curves})
    frame = pd.DataFrame(rows)
    frame["plan_index"] = range(len(frame))
    cells = cells_of(run_curves(GridFrame("g", frame, plan_known=True)), [])
    figure = draw_small_multiples(cells, "epoch_loss", "t", "header")
    try:
        [panel] = [axes for axes in figure.axes if axes.get_visible()]
        [line] = panel.lines  # one mean line, not 12 seed lines
        assert line.get_ydata().tolist() == pytest.approx([10.5, 9.5, 8.5])  # mean of 5..16, 4..15, 3..14
        [band] = panel.collections
        low_high = band.get_paths()[0].vertices[:, 1]
        assert min(low_high) == 3.0 and max(low_high) == 16.0
        assert "mean over seeds" in figure.legends[0].get_texts()[0].get_text()
    finally:
        plt.close(figure)


def test_panels_share_one_range_with_labels_on_the_outer_edges_only():
    # 7 cells in rows of 5: the first row's panels 3-5 have no panel below them, so they carry x labels too.
    curves = {(f"op{cell}",): {0: {"epoch_loss": [10.0 - cell, 5.0 - cell / 2, 1.0 + cell]}} for cell in range(7)}
    rows = []
    for (ops,), seeds in curves.items():
        for seed, run in seeds.items():
            result = make_result(make_spec([ops], seed), "g", 50.0) | {"curves": run}
            rows.append(result_row(result) | {"curves": run})
    cells = cells_of(run_curves(GridFrame("g", pd.DataFrame(rows), plan_known=False)), ["augment.ops"])
    figure = draw_small_multiples(cells, "epoch_loss", "t", "header")
    try:
        panels = [axes for axes in figure.axes if axes.get_visible()]
        assert len(panels) == 7
        low, high = 1.0, 10.0  # the lowest and highest loss of any cell, with matplotlib's 5 % margins
        for axes in panels:
            assert axes.get_xlim() == pytest.approx((1 - 0.1, 3 + 0.1)) and axes.get_ylim() == pytest.approx((low - 0.45, high + 0.45))
        x_labelled = [axes.xaxis.get_tick_params()["labelbottom"] for axes in panels]
        y_labelled = [axes.yaxis.get_tick_params()["labelleft"] for axes in panels]
        assert x_labelled == [False, False, True, True, True, True, True]
        assert y_labelled == [True, False, False, False, False, True, False]
    finally:
        plt.close(figure)
