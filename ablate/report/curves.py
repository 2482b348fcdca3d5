"""Training curves: one small panel per cell with a line per seed, and every cell's mean on one figure.

    curves-loss.{png,pdf,svg}      a panel per cell, a line per seed: the mean loss of each epoch
    curves-knn.{png,pdf,svg}       the same for the online kNN monitor's top-1 (%), where runs recorded it
    curves-overlay.{png,pdf,svg}   every cell's mean over seeds on shared axes: loss, monitor kNN top-1, learning rate
    curves.csv                     what they draw: each cell's mean, std and seed count per series and epoch

A cell is one combination of the spec axes that vary in the grid, the seed aside: the seeds are the
lines of its panel, and its overlay curve is their mean at each epoch (over the seeds that have that
epoch). The curves are each result.json's `curves` (ablate.schema.Curves: `epoch_loss`, `lr`,
`monitor_epochs` and `monitor_knn_top1`, see ablate.evaluate.monitor), which the grid's frame carries
in its `curves` column. The monitor's kNN top-1 is measured on a small fixed subset while training,
to watch progress: it is not the run's final `knn_top1`.

`--all` draws them when some completed run has a loss curve of two epochs or more; they accompany
the grid's other reports rather than replace them (`supplementary`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ablate.report.plots import footer  # noqa: I001  (first: it selects matplotlib's file-only backend)
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from ablate.report.data import Facet, GridFrame, ReportError, format_value, has_method_axis, split_on, varying_axes
from ablate.report.files import add_figure, write_text
from ablate.report.html import Section

if TYPE_CHECKING:
    from ablate.report.build import ReportOptions

CSV_SERIES = ("epoch_loss", "monitor_knn_top1", "lr")  # curves.csv's series, in this order within each cell
SERIES_LABELS = {"epoch_loss": "loss", "monitor_knn_top1": "kNN top-1 (%), monitor", "lr": "learning rate"}
PANELS_PER_ROW = 5
PANEL_SIZE = (2.7, 2.0)  # inches, one small multiple
SEED_COLOURS = plt.get_cmap("tab10")
MIN_EPOCHS = 2  # a curve of one epoch is a point: nothing to draw
SMALL_MULTIPLES_DPI = 100  # a PNG of many small panels: 150 dpi made it large (and slow to encode) for no detail
SMALL_MULTIPLE_TICKS = 4  # intervals per axis in a small panel: enough to read, and each tick is drawn (and costs) per panel
MAX_SEED_LINES = 10  # more seeds in a cell: its mean and min-max band instead of a line each
BAND = object()  # the legend key of the mean-and-band drawing
BAND_LABEL = f"mean over seeds (band: lowest to highest; cells of more than {MAX_SEED_LINES} seeds)"
LEGEND_INCHES_PER_CHAR = 0.065  # at the legend's 7.5 pt


def run_curves(grid: GridFrame, axes: list[str] | None = None) -> pd.DataFrame:
    """The completed runs' curves, one row per run and epoch: the cell's axes, seed, run_id, epoch,
    epoch_loss, lr and monitor_knn_top1 (NaN at the epochs it did not measure).

    Built column-wise from one array per run and series (a row-by-row build took seconds on a grid of
    10,000 runs; benchmarks/results/results-scale-cpu-2core.md)."""
    frame = completed_with_curves(grid)
    axes = cell_axes(grid) if axes is None else axes
    columns = [*axes, "seed", "run_id", "epoch", "epoch_loss", "lr", "monitor_knn_top1"]
    if frame.empty:
        return pd.DataFrame(columns=columns)
    owners, epochs, losses, lrs, knns = [], [], [], [], []
    for position, curves in enumerate(frame["curves"]):
        loss, lr = curves.get("epoch_loss") or [], curves.get("lr") or []
        measured = dict(zip(curves.get("monitor_epochs") or [], curves.get("monitor_knn_top1") or []))
        length = max(len(loss), len(lr), max(measured, default=0))
        owners.append(np.full(length, position))
        epochs.append(np.arange(1, length + 1))
        losses.append(padded(loss, length))
        lrs.append(padded(lr, length))
        knn = np.full(length, np.nan)
        knn[np.asarray(list(measured), dtype=int) - 1] = list(measured.values())
        knns.append(knn)
    runs = frame.reindex(columns=[*axes, "seed", "run_id"]).reset_index(drop=True)
    table = runs.iloc[np.concatenate(owners)].reset_index(drop=True)
    table = table.astype({column: object for column in table.columns if table[column].isna().all()})  # None, as a missing axis
    return table.assign(epoch=np.concatenate(epochs), epoch_loss=np.concatenate(losses), lr=np.concatenate(lrs),
                        monitor_knn_top1=np.concatenate(knns))[columns]


def padded(values: list[float], length: int) -> np.ndarray:
    """`values` as floats, NaN after its end up to `length`."""
    out = np.full(length, np.nan)
    out[: len(values)] = values
    return out


def completed_with_curves(grid: GridFrame) -> pd.DataFrame:
    """The completed runs whose result has curves (a mapping; results without any are left out)."""
    frame = grid.frame
    if "curves" not in frame:
        return frame.iloc[0:0]
    has = frame["curves"].map(lambda value: isinstance(value, dict))
    return frame[(frame["status"] == "completed") & has]


def cell_axes(grid: GridFrame) -> list[str]:
    """The spec axes that vary among the grid's runs, the seed aside: together they name a cell."""
    return varying_axes(grid.frame, ())


def cells_of(curves: pd.DataFrame, axes: list[str], plan_order: pd.Series | None = None) -> list[tuple[str, pd.DataFrame]]:
    """(label, the cell's rows) per cell: in the grid file's order where `plan_order` (run_id -> place in
    the plan) knows the cell's runs, else in the usual order of axis values (split_on's)."""
    # Cells are found among the runs (one row each: run_curves writes each run's rows together), then
    # each row takes its run's cell by position: splitting or mapping the run-by-epoch table itself by
    # run id took seconds at 10,000 runs of 100 epochs.
    run_ids = curves["run_id"].to_numpy()
    starts = np.flatnonzero(np.r_[True, run_ids[1:] != run_ids[:-1]]) if len(run_ids) else np.zeros(0, dtype=int)
    runs = curves.iloc[starts]
    run_position = pd.Series(np.arange(len(starts)), index=runs.index)
    cell_of_run = np.zeros(len(starts), dtype=np.int64)
    labels = []
    for facet, part in split_on(runs, axes):
        cell_of_run[run_position[part.index].to_numpy()] = len(labels)
        labels.append(cell_label(facet))
    rows_per_run = np.diff(np.r_[starts, len(run_ids)])
    parts = dict(tuple(curves.groupby(np.repeat(cell_of_run, rows_per_run), sort=False)))
    cells = [(label, parts[position]) for position, label in enumerate(labels)]
    if plan_order is None:
        return cells

    def first_planned(cell: tuple[str, pd.DataFrame]) -> float:
        places = pd.to_numeric(cell[1]["run_id"].map(plan_order), errors="coerce").dropna()
        return float(places.min()) if not places.empty else math.inf

    return sorted(cells, key=first_planned)  # stable: unplanned cells keep split_on's order, after the planned ones


def cell_label(facet: Facet) -> str:
    """The cell's values, each axis by its last name ("ops=crop+color, color_strength=0.5"); the value alone
    when one axis varies, "all runs" when none does."""
    if not facet.values:
        return "all runs"
    if len(facet.values) == 1:
        return format_value(facet.values[0][1])
    return ", ".join(f"{axis.split('.')[-1]}={format_value(value)}" for axis, value in facet.values)


def mean_curve(cell: pd.DataFrame, series: str) -> pd.Series:
    """The cell's mean over seeds at each epoch where any seed has a value (index: epoch)."""
    values = cell[["epoch", series]].dropna()
    return values.groupby("epoch")[series].mean()


def seed_lines(cell: pd.DataFrame, series: str) -> list[tuple[Any, pd.Series]]:
    """(seed, its curve indexed by epoch) for every run of the cell that has the series, by seed."""
    lines = []
    for (seed, _), run in cell.groupby(["seed", "run_id"], dropna=False, sort=True):
        values = run.set_index("epoch")[series].dropna()
        if not values.empty:
            lines.append((seed, values))
    return lines


def cell_means(cells: list[tuple[str, pd.DataFrame]]) -> pd.DataFrame:
    """What the figures draw, as numbers (curves.csv): per cell, series and epoch, the mean, std (ddof 1) and
    number of seeds with a value. Each run's own curves are in runs.csv (its `curves` column)."""
    columns = ["cell", "series", "epoch", "mean", "std", "n"]
    if not cells:
        return pd.DataFrame(columns=columns)
    every = pd.concat([cell[["epoch", *CSV_SERIES]] for _, cell in cells], ignore_index=True)
    every["cell_position"] = np.repeat(np.arange(len(cells)), [len(cell) for _, cell in cells])
    tables = []
    for series in CSV_SERIES:  # one groupby per series: sorted by cell, then epoch; epochs without a value dropped
        stats = every.groupby(["cell_position", "epoch"])[series].agg(["mean", "std", "count"])
        stats = stats[stats["count"] > 0].reset_index()
        tables.append(stats.assign(series=series))
    stats = pd.concat(tables, ignore_index=True)
    stats = stats.sort_values(["cell_position"], kind="stable").reset_index(drop=True)  # series stay in CSV_SERIES order
    labels = [label for label, _ in cells]
    stats["cell"] = [labels[position] for position in stats["cell_position"]]
    return stats.rename(columns={"count": "n"})[columns]


def has_series(curves: pd.DataFrame, series: str) -> bool:
    return bool(curves[series].notna().any()) if series in curves else False


# ---------------------------------------------------------------------------------------- drawing


def panel_grid(count: int) -> tuple[int, int]:
    """(rows, columns) for `count` small multiples, at most PANELS_PER_ROW a row."""
    columns = min(count, PANELS_PER_ROW)
    return math.ceil(count / columns), columns


def draw_small_multiples(cells: list[tuple[str, pd.DataFrame]], series: str, title: str, header: str,
                         share_y: bool = True) -> plt.Figure:
    """One panel per cell, one line per seed (coloured by seed, the same colour in every panel); a cell of more
    than MAX_SEED_LINES seeds is drawn as its mean and the band between its lowest and highest seed instead
    (hundreds of lines in one small panel are a blot, and slow to draw)."""
    rows, columns = panel_grid(len(cells))
    width, height = PANEL_SIZE
    # Not matplotlib's shared axes: every autoscale and draw of a shared axes visits all its siblings, which
    # made 49 panels quadratic (seconds); one common range is set once at the end instead (`common_limits`).
    figure, axes_grid = plt.subplots(rows, columns, figsize=(columns * width + 0.6, rows * height + 1.5), squeeze=False)
    seeds: dict[Any, Any] = {}
    marker = "o" if series == "monitor_knn_top1" else None  # measured every few epochs: show where
    for index, (label, cell) in enumerate(cells):
        axes = axes_grid[index // columns][index % columns]
        if cell["run_id"].nunique() > MAX_SEED_LINES:
            band = cell[["epoch", series]].dropna().groupby("epoch")[series].agg(["mean", "min", "max"])
            axes.fill_between(band.index, band["min"], band["max"], color="0.8", linewidth=0)
            mean, = axes.plot(band.index, band["mean"], color="0.15", linewidth=1.2, marker=marker, markersize=3)
            seeds.setdefault(BAND, mean)
            axes.set_title(label, fontsize=8.5, y=1.0)  # a fixed y: matplotlib's automatic placement measures every tick
            style(axes, fontsize=7, bins=SMALL_MULTIPLE_TICKS)
            continue
        for seed, values in seed_lines(cell, series):
            colour = SEED_COLOURS(len(seeds) % 10) if seed not in seeds else seeds[seed].get_color()
            line, = axes.plot(values.index, values.values, color=colour, linewidth=1.2, marker=marker, markersize=3)
            seeds.setdefault(seed, line)
        axes.set_title(label, fontsize=8.5, y=1.0)  # a fixed y: matplotlib's automatic placement measures every tick
        style(axes, fontsize=7, bins=SMALL_MULTIPLE_TICKS)
    for index in range(len(cells), rows * columns):
        axes_grid[index // columns][index % columns].set_visible(False)
    common_limits([axes_grid[index // columns][index % columns] for index in range(len(cells))], columns, share_y)
    for axes in axes_grid[-1]:
        axes.set_xlabel("epoch", fontsize=8)
    for row in axes_grid:
        row[0].set_ylabel(SERIES_LABELS[series], fontsize=8)
    if seeds:
        labels = [BAND_LABEL if seed is BAND else f"seed {format_value(seed)}" for seed in seeds]
        figure.legend(list(seeds.values()), labels, loc="upper right", fontsize=7.5, frameon=False, ncol=min(len(seeds), 6))
    finish(figure, title, header)
    return figure


def common_limits(panels: list[plt.Axes], columns: int, share_y: bool) -> None:
    """One epoch range on every panel (and one y range where `share_y`), with matplotlib's default 5 % margins;
    tick labels only on a panel's outer edges: x on a panel with no panel below it, y in the first column."""
    def padded_range(low: float, high: float) -> tuple[float, float]:
        margin = 0.05 * (high - low) if high > low else 0.5
        return low - margin, high + margin

    drawn = [a.dataLim for a in panels if np.isfinite(a.dataLim.get_points()).all()]  # a panel without data has none
    x_range = padded_range(min(box.x0 for box in drawn), max(box.x1 for box in drawn)) if drawn else None
    y_range = padded_range(min(box.y0 for box in drawn), max(box.y1 for box in drawn)) if drawn and share_y else None
    for index, axes in enumerate(panels):
        if x_range is not None:
            axes.set_xlim(x_range)
        if y_range is not None:
            axes.set_ylim(y_range)
        axes.tick_params(labelbottom=index + columns >= len(panels), labelleft=not share_y or index % columns == 0)


def draw_overlay(cells: list[tuple[str, pd.DataFrame]], title: str, header: str) -> plt.Figure:
    """Every cell's mean curve on shared axes: loss, then the monitor's kNN top-1 and the learning rate where present."""
    curves = pd.concat([cell for _, cell in cells], ignore_index=True)
    shown = [series for series in ("epoch_loss", "monitor_knn_top1", "lr") if has_series(curves, series)]
    figure, axes_row = plt.subplots(1, len(shown), figsize=(4.2 * len(shown) + 2.6, 3.9), squeeze=False)
    colours = plt.get_cmap("tab20" if len(cells) > 10 else "tab10")
    for position, series in enumerate(shown):
        axes = axes_row[0][position]
        for index, (label, cell) in enumerate(cells):
            mean = mean_curve(cell, series)
            if not mean.empty:
                axes.plot(mean.index, mean.values, color=colours(index % colours.N), linewidth=1.4, label=label,
                          marker="o" if series == "monitor_knn_top1" else None, markersize=3)
        axes.set_xlabel("epoch", fontsize=9)
        axes.set_ylabel(SERIES_LABELS[series], fontsize=9)
        style(axes, fontsize=8)
    handles, labels = axes_row[0][0].get_legend_handles_labels()
    legend_title = "cell (mean over seeds)"
    columns = 1 if len(labels) <= 16 else 2
    figure.legend(handles, labels, loc="center right", fontsize=7.5, frameon=False, ncol=columns, title=legend_title,
                  title_fontsize=8)
    widest = max([len(legend_title) / columns, *map(len, labels)])
    finish(figure, title, header, right_inches=columns * (0.5 + LEGEND_INCHES_PER_CHAR * widest))
    return figure


def style(axes: plt.Axes, fontsize: float, bins: int | str = "auto") -> None:
    """Whole epochs on the x axis, small tick labels, a light grid; at most `bins` intervals between ticks."""
    axes.xaxis.set_major_locator(MaxNLocator(nbins=bins, integer=True))
    if bins != "auto":
        axes.yaxis.set_major_locator(MaxNLocator(nbins=bins))
    axes.tick_params(labelsize=fontsize)
    axes.grid(alpha=0.3)


def finish(figure: plt.Figure, title: str, header: str, right_inches: float = 0.3) -> None:
    """Title on top, the grid's header as the footer, room for both (and for a legend on the right)."""
    width, height = figure.get_size_inches()
    figure.suptitle(title, fontsize=11, y=1 - 0.15 / height, va="top")
    footer(figure, header, chars_per_inch=14, fontsize=7, bottom=0.08 / height)
    figure.subplots_adjust(top=1 - 0.85 / height, bottom=0.95 / height, left=0.7 / width,
                           right=1 - right_inches / width, hspace=0.45, wspace=0.3)


# ----------------------------------------------------------------------------------------- report


class CurvesReport:
    """Training curves: small multiples per cell (seeds as lines) and an overlay of the cells' means."""

    supplementary = True  # drawn beside the grid's other reports; never the grid's only report

    def applies(self, grid: GridFrame, options: ReportOptions) -> bool:
        frame = completed_with_curves(grid)
        return not frame.empty and bool(frame["curves"].map(lambda curves: len(curves.get("epoch_loss") or []) >= MIN_EPOCHS).any())

    def section(self, grid: GridFrame, out: Path, options: ReportOptions) -> Section:
        axes = cell_axes(grid)
        curves = run_curves(grid, axes)
        if curves.empty:
            raise ReportError(f"grid {grid.grid!r} has no completed run with training curves to draw")
        cells = cells_of(curves, axes, grid.frame.groupby("run_id")["plan_index"].min() if "plan_index" in grid.frame else None)
        header = grid.header()
        runs = curves["run_id"].nunique()
        section = Section("Training curves")
        section.note = (f"{runs} completed runs in {len(cells)} cells"
                        + (f" ({', '.join(axes)})" if axes else "")
                        + ". Small multiples: one panel per cell, one line per seed. Overlay: each cell's mean over its "
                          "seeds. The kNN top-1 is the online monitor's (a fixed subset of training images as the bank "
                          "and of test images as queries, every few epochs; ABLATE_MONITOR_EVERY), not the final knn_top1.")
        several_methods = has_method_axis(grid.frame)  # losses of different methods are on different scales
        add_figure(section, draw_small_multiples(cells, "epoch_loss", "Loss per epoch, by cell", header,
                                                 share_y=not several_methods), out / "curves-loss", "Loss per epoch, by cell",
                   dpi=SMALL_MULTIPLES_DPI)
        if has_series(curves, "monitor_knn_top1"):
            title = "Online kNN top-1 (%), by cell"
            add_figure(section, draw_small_multiples(cells, "monitor_knn_top1", title, header), out / "curves-knn", title,
                       dpi=SMALL_MULTIPLES_DPI)
        title = "Every cell's mean curve"
        add_figure(section, draw_overlay(cells, title, header), out / "curves-overlay", title)
        section.files.append(write_text(out / "curves.csv", cell_means(cells).to_csv(index=False)))
        return section
