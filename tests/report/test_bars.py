"""Table 1's bars, read back from the drawn Axes: bar heights are the table's means, error bars its std
(seaborn's errorbar="sd" over one observation per run, ddof=1), cells without a completed run hatched in their slot."""

import math
import statistics

import numpy as np
import pytest
from report_helpers import make_result, make_spec, run_id, write_results

from ablate.report.bars import draw_bars
from ablate.report.data import load_grid_frame
from ablate.report.tables import table1

STRENGTHS = [0.25, 0.5, 1.0]  # columns 1/4, 1/2, 1
RUNS = {  # (method, strength): values of its completed runs; "failed": every run failed; absent: planned, never run
    ("simclr", 0.25): [80.0, 81.0, 83.5], ("simclr", 0.5): [85.0, 86.0], ("simclr", 1.0): "failed",
    ("supervised", 0.25): [90.0, 91.2, 89.1], ("supervised", 1.0): [92.0],
}
ROW_OFFSET = {"simclr": -0.2, "supervised": 0.2}  # two bars per group of width 0.8: centres at the tick ∓ 0.2


def draw(root, runs):
    plan, results = [], []
    for method in ("simclr", "supervised"):
        for strength in STRENGTHS:
            values = runs.get((method, strength), [])
            for seed in range(3):
                spec = make_spec(["crop", "color"], seed, method, strength)
                plan.append({"run_id": run_id(spec), "spec": spec})
                if values == "failed":
                    results.append(make_result(spec, "bars", None, status="failed"))
                elif seed < len(values):
                    results.append(make_result(spec, "bars", values[seed]))
    write_results(root, "bars", results)
    [table] = table1(load_grid_frame(root, "bars", plan))
    return table, draw_bars(table, table.title, "grid bars: a header").axes[0]


def error_bars(axes):
    """{bar centre x: (low, high)} from seaborn's error-bar Line2Ds (cap, NaN, the bar's vertical segment, NaN, cap)."""
    found = {}
    for line in axes.lines:
        x, y = np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)
        if np.isfinite(y).any():
            assert x[3] == x[4]
            found[round(float(x[3]), 6)] = (float(y[3]), float(y[4]))
    return found


def bars(axes):
    """{bar centre x: height} of seaborn's bars (one BarContainer per row)."""
    return {round(p.get_x() + p.get_width() / 2, 6): p.get_height() for container in axes.containers for p in container}


def test_bars_are_the_means_and_error_bars_the_sample_std(tmp_path):
    table, axes = draw(tmp_path, RUNS)
    drawn, errors = bars(axes), error_bars(axes)
    expected_bars, expected_errors = {}, {}
    for (method, strength), values in RUNS.items():
        if values == "failed":
            continue
        x = round(STRENGTHS.index(strength) + ROW_OFFSET[method], 6)
        expected_bars[x] = statistics.mean(values)
        if len(values) > 1:  # one run has no spread: no error bar
            expected_errors[x] = statistics.stdev(values)
    assert drawn.keys() == expected_bars.keys()
    for x, mean in expected_bars.items():
        assert drawn[x] == pytest.approx(mean, abs=1e-9)
    assert errors.keys() == expected_errors.keys()
    for x, std in expected_errors.items():
        low, high = errors[x]
        assert (high - low) / 2 == pytest.approx(std, abs=1e-9)
        assert (low + high) / 2 == pytest.approx(expected_bars[x], abs=1e-9)
    # ddof=1: two runs 1 apart have std 1/sqrt(2), not 1/2; and it is the table's own std
    low, high = errors[round(1 + ROW_OFFSET["simclr"], 6)]
    assert (high - low) / 2 == pytest.approx(1 / math.sqrt(2), abs=1e-9)
    assert (high - low) / 2 == pytest.approx(table.cell("simclr", (1, 0.5)).std, abs=1e-12)


def test_value_labels_sit_on_their_bars_and_empty_cells_are_hatched_in_their_slot(tmp_path):
    _, axes = draw(tmp_path, RUNS)
    drawn = bars(axes)
    labels = {round(t.get_position()[0], 6): t.get_text() for t in axes.texts}
    for x, height in drawn.items():
        assert labels[x] == f"{height:.1f}"
    hatched = {round(p.get_x() + p.get_width() / 2, 6): p.get_hatch() for p in axes.patches if p.get_hatch()}
    missing_x, failed_x = round(1 + ROW_OFFSET["supervised"], 6), round(2 + ROW_OFFSET["simclr"], 6)
    assert hatched == {missing_x: "///", failed_x: "xx"}
    assert labels[missing_x] == "—" and labels[failed_x] == "failed"
    assert [t.get_text() for t in axes.get_legend().get_texts()] == [
        "SimCLR", "Supervised", "no completed run (missing)", "no completed run (failed)"]
    assert [t.get_text() for t in axes.get_xticklabels()] == ["1/4", "1/2", "1"]
    assert any("grid bars: a header. Error bars: ± std over seeds." in t.get_text() for t in axes.figure.texts)


def test_a_row_without_any_run_keeps_its_slot(tmp_path):
    """Only SimCLR ran: its bars stay left of each tick (seaborn would centre a lone hue), supervised's slots are hatched."""
    runs = {("simclr", strength): [70.0 + strength, 71.0 + strength] for strength in STRENGTHS}
    _, axes = draw(tmp_path, runs)
    assert sorted(bars(axes)) == [round(c + ROW_OFFSET["simclr"], 6) for c in range(3)]
    hatched = sorted(round(p.get_x() + p.get_width() / 2, 6) for p in axes.patches if p.get_hatch())
    assert hatched == [round(c + ROW_OFFSET["supervised"], 6) for c in range(3)]


def test_a_table_without_any_completed_run_is_drawn(tmp_path):
    _, axes = draw(tmp_path, {("simclr", 0.5): "failed"})
    assert bars(axes) == {} and error_bars(axes) == {}
    assert sorted(t.get_text() for t in axes.texts).count("—") == 5


def test_a_collapsed_cell_keeps_its_bar_hatched_over_and_labelled(tmp_path):
    from report_helpers import with_collapse

    plan, results = [], []
    for method in ("simclr", "supervised"):
        for strength in STRENGTHS:
            for seed in range(2):
                spec = make_spec(["crop", "color"], seed, method, strength)
                plan.append({"run_id": run_id(spec), "spec": spec})
                collapsed = method == "simclr" and strength == 0.5 and seed == 1  # one of this cell's two runs
                results.append(with_collapse(make_result(spec, "bars", 60.0 + 10 * strength + seed), collapsed))
    write_results(tmp_path, "bars", results)
    [table] = table1(load_grid_frame(tmp_path, "bars", plan))
    axes = draw_bars(table, table.title, "header").axes[0]
    x = round(1 + ROW_OFFSET["simclr"], 6)
    assert bars(axes)[x] == pytest.approx(65.5)  # the bar is still drawn at the cell's mean
    hatched = {round(p.get_x() + p.get_width() / 2, 6): (p.get_hatch(), p.get_height()) for p in axes.patches if p.get_hatch()}
    assert list(hatched) == [x] and hatched[x][0] == ".."
    assert hatched[x][1] == pytest.approx(65.5 - axes.get_ylim()[0])  # from the floor up to the bar's top
    labels = {round(t.get_position()[0], 6): t.get_text() for t in axes.texts}
    assert labels[x] == "65.5\ncollapsed 1/2"
    assert all(label == label.split("\n")[0] for position, label in labels.items() if position != x)
    assert "collapsed representation (ablate.evaluate.collapse)" in [t.get_text() for t in axes.get_legend().get_texts()]
