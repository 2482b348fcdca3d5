"""Figure 5 style heatmap: a metric for every ordered pair of operators, and differences of two grids.

Rows are the first operator, columns the second, the diagonal is the operator alone, and an extra
column holds each row's mean (as in the paper). Cells show the mean (± std over seeds when n > 1).
A cell with no completed run is hatched and labelled "missing" or "failed", never dropped; a cell
one of whose runs collapsed (ablate.evaluate.collapse) is hatched in orange and labelled
"collapsed k/n" above its number, and left out of the colour scale, so that it never reads as an
ordinary low cell.

Every cell is compared with the best cell (the highest mean on the colour scale) over the seeds both
have, by a paired t-test Holm-corrected over the report's comparisons with the best: the best cell is
outlined thick (bold in heatmap.md and heatmap.tex), a cell it cannot be told apart from thin, with
"≈" before its number. heatmap.tex has the same numbers, intervals and marks as a booktabs table.

When the grid runs several methods, the methods' heatmaps are panels of one figure
(heatmap-methods[--other-facets].{png,pdf,svg}), titled by the methods' labels in the registry's
order, on one colour scale: the comparison of methods is the point of such a grid. Other facet
axes keep one figure per value (heatmap--<axis>-<value>.*).

Drawn by `seaborn.heatmap` (colours, annotations, colour bar; one colour scale shared by a grid's
facets); cells without a value are masked there and marked by ablate.report.plots, which also
writes the footer: the two things seaborn does not draw.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.patches import Patch, Rectangle

from ablate.config import OPERATORS
from ablate.report.data import (  # noqa: F401
    COLLAPSE_LEGEND, MISSING, PAIR_AXES, Cell, Facet, GridFrame, ReportError, any_diagnosed, collect_cells, method_label,
    metric_label, split_on, varying_axes,
)
from ablate.report.files import add_facet, add_facet_tables, add_figure, seed_note, write_section_tables, write_text
from ablate.report.html import Section
from ablate.report.plots import MARKS, footer, mark, mark_legend
from ablate.report.stats import ALPHA
from ablate.report.tables import CellTable, attach_comparisons, html_table, latex_cell, latex_escape, to_latex

if TYPE_CHECKING:
    from ablate.report.build import ReportOptions


FIRST, SECOND = "1st transformation", "2nd transformation"  # the axes' names in tables and the LaTeX


@dataclass
class PairTable:
    """first × second operator cells (the diagonal: the operator alone)."""

    operators: list[str]
    cells: dict[tuple[str, str], Cell]
    view: CellTable | None = None  # the same cells as a CellTable, with the comparisons against the best (pair_view)

    def cell(self, first: str, second: str) -> Cell:
        return self.cells.get((first, second), Cell())

    def mark(self, first: str, second: str) -> str:
        """'best', 'tied', 'differs', 'not enough seeds' or '' (ablate.report.tables.CellTable.best_mark)."""
        return self.view.best_mark(first, second) if self.view is not None else ""

    def matrix(self, stat: str) -> pd.DataFrame:
        data = [[getattr(self.cell(a, b), stat) for b in self.operators] for a in self.operators]
        return pd.DataFrame(data, index=self.operators, columns=self.operators, dtype=float)

    def coloured_means(self) -> list[float]:
        """The cell means the colour scale spans: cells whose state is ok (a collapsed cell is hatched instead)."""
        return [c.mean for c in self.cells.values() if c.state == "ok" and np.isfinite(c.mean)]

    @property
    def any_collapsed(self) -> bool:
        return any(c.collapsed for c in self.cells.values())

    @property
    def mean(self) -> pd.DataFrame:
        return self.matrix("mean")

    @property
    def row_mean(self) -> pd.Series:
        """Mean over each row's cells that have a value (diagonal included, as in the paper)."""
        return self.mean.mean(axis=1, skipna=True)

    def row_complete(self, first: str) -> bool:
        return all(self.cell(first, b).n for b in self.operators)

    def row_mean_text(self, first: str) -> str | None:
        """The row's mean as shown everywhere ('73.1'; '73.1*' when a cell of the row has no result), None without one."""
        mean = self.row_mean[first]
        return None if np.isnan(mean) else f"{mean:.1f}" + ("" if self.row_complete(first) else "*")

    def typical_n(self) -> int:
        counts = [c.n for c in self.cells.values() if c.n]
        return max(counts) if counts else 0


def operator_order(names: set[str]) -> list[str]:
    """Operators in the vocabulary's order (the paper's seven first: config.OPERATORS), then the rest."""
    known = [op for op in OPERATORS if op in names]
    return known + sorted(names - set(known))


def pair_frame(results: pd.DataFrame) -> pd.DataFrame:
    """Runs (any status) whose pipeline is one operator or an ordered pair."""
    if results.empty or "augment.ops" not in results:
        return results.iloc[0:0]
    ops = results["augment.ops"].fillna("").astype(str)
    return results[(ops != "") & (ops.str.count(r"\+") <= 1)]


def is_pair_grid(frame: pd.DataFrame) -> bool:
    """Figure 5's grid: every pipeline is one operator or an ordered pair, and some pair is there in both
    orders (or there are only single operators). A grid that also runs longer pipelines, or a few pairs
    of one order (e.g. a full pipeline and what is left when one operator is removed), is no pair grid:
    its heatmap would be mostly empty cells."""
    ops = frame["augment.ops"].dropna().astype(str) if "augment.ops" in frame else pd.Series(dtype=str)
    pipelines = [tuple(o.split("+")) for o in ops if o]
    if not pipelines or any(len(p) > 2 for p in pipelines):
        return False
    ordered = {p for p in pipelines if len(p) == 2 and p[0] != p[1]}
    return not ordered or any((b, a) in ordered for a, b in ordered)


def pair_operators(pairs: pd.DataFrame) -> list[str]:
    names = set(pairs["first_op"].dropna()) | set(pairs["second_op"].dropna())
    return operator_order({str(n) for n in names})


def pair_table(pairs: pd.DataFrame, operators: list[str], metric: str = "linear_top1") -> PairTable:
    cells = collect_cells(pairs, metric, lambda run: run["first_op"], lambda run: run["second_op"])
    return PairTable(operators, {key: cell for key, cell in cells.items() if key[0] in operators and key[1] in operators})


def pair_name(first: str, second: str) -> str:
    """How the findings call a cell: 'crop → color', 'crop alone' (the diagonal)."""
    return f"{first} alone" if first == second else f"{first} → {second}"


def pair_view(table: PairTable, metric: str, facet: Facet, title: str) -> CellTable:
    """The pair table as a CellTable (rows: 1st operator, columns: 2nd), for comparisons, findings and LaTeX."""
    return CellTable(title, FIRST, SECOND, table.operators, table.operators, table.cells, metric, facet, name_of=pair_name)


def compare_with_best_cells(tables: list[PairTable], metric: str, facets: list[Facet], titles: list[str]) -> list[CellTable]:
    """Each table's best cell and every other cell's paired comparison with it, Holm-corrected over all facets."""
    views = [pair_view(table, metric, facet, title) for table, facet, title in zip(tables, facets, titles)]
    attach_comparisons(views, None, versus_reference=False)
    for table, view in zip(tables, views):
        table.view = view
    return views


# ------------------------------------------------------------------------------------------ drawing


def cell_label(cell: Cell, typical_n: int, mark: str = "") -> str:
    """'62.3\n±0.4' (n= added below the grid's usual n; '≈62.3' when `mark` is 'tied': not told apart from the
    best cell), 'missing', 'failed', 'collapsed 1/2\n40.5' (the mean only: its std mixes a collapsed run with
    healthy ones)."""
    if not cell.n:
        return "failed" if cell.failed else "missing"
    if cell.collapsed:
        return f"{cell.collapsed_note}\n{cell.mean:.1f}"
    text = ("≈" if mark == "tied" else "") + f"{cell.mean:.1f}"
    if cell.n > 1:
        text += f"\n±{cell.std:.1f}"
    if cell.n < typical_n or cell.failed:
        text += f"\nn={cell.n}" + (f", {cell.failed} failed" if cell.failed else "")
    return text


def mark_cells(axes: plt.Axes, labels: pd.DataFrame, states: pd.DataFrame, fontsize: float = 8.5) -> None:
    """The cells seaborn masked (state not 'ok'): hatched in the colour of their state, labelled on a white box."""
    for i, j in np.argwhere((states != "ok").to_numpy()):
        state = states.iat[i, j]
        mark(axes, j, i, 1, 1, state)
        # seaborn draws no edge around a masked cell: the white grid line, as between the other cells
        axes.add_patch(Rectangle((j, i), 1, 1, fill=False, edgecolor="white", linewidth=1))
        axes.text(j + 0.5, i + 0.5, labels.iat[i, j], ha="center", va="center", fontsize=fontsize, zorder=3,
                  color="0.25" if state == "missing" else MARKS[state][1],
                  bbox={"boxstyle": "round,pad=0.25", "facecolor": "white", "edgecolor": "none"})


def draw_panel(axes: plt.Axes, values: pd.DataFrame, labels: pd.DataFrame, states: pd.DataFrame, bar_axes: plt.Axes | None,
               colorbar_label: str, fontsize: float = 9, **colour) -> None:
    """One heatmap: seaborn colours and annotates the cells whose state is 'ok' on the scale `colour` gives
    (cmap, vmin, vmax), the others are masked, and hatched and labelled here; a colour bar in bar_axes if given."""
    bar = {"cbar_ax": bar_axes, "cbar_kws": {"label": colorbar_label}} if bar_axes is not None else {"cbar": False}
    sns.heatmap(values, mask=(states != "ok") | values.isna(), annot=labels.to_numpy(), fmt="", linewidths=1,
                linecolor="white", annot_kws={"fontsize": fontsize, "linespacing": 1.15}, ax=axes, **bar, **colour)
    mark_cells(axes, labels, states, fontsize - 0.5)
    axes.tick_params(length=0)
    axes.tick_params(axis="y", rotation=0)  # seaborn turns y labels upright unless they overlap


def draw_pairs(values: pd.DataFrame, labels: pd.DataFrame, states: pd.DataFrame, title: str, header: str,
               colorbar_label: str, legend: dict[str, str], outlines: list[tuple[int, int, str]] = (), **colour) -> plt.Figure:
    """operators × (operators + 'mean') cells in one figure (draw_panel), with the legend of the marks used;
    `outlines` (row, column, 'best' | 'tied') are drawn around their cells (outline_cells)."""
    n_ops = len(values)
    side = 0.95 * (max(n_ops, 4) + 1)
    figure = plt.figure(figsize=(side + 2.6, side * 0.82 + 1.9))
    grid = figure.add_gridspec(1, 2, width_ratios=[side, 0.25], wspace=0.06)
    axes, bar_axes = figure.add_subplot(grid[0]), figure.add_subplot(grid[1])
    draw_panel(axes, values, labels, states, bar_axes, colorbar_label, **colour)
    axes.axvline(n_ops, color="white", linewidth=6)  # the row-mean column stands apart
    outline_cells(axes, outlines)
    axes.set_xlabel("2nd transformation", fontsize=11)
    axes.set_ylabel("1st transformation", fontsize=11)
    axes.set_title(title, fontsize=12, pad=10, loc="center")
    footer(figure, header, chars_per_inch=13, fontsize=7.5, bottom=0.02)
    handles = legend_handles(legend, [states]) + outline_handles(outlines)
    if handles:
        axes.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.085), ncol=len(handles), frameon=False,
                    fontsize=8.5)
    figure.subplots_adjust(left=0.13, right=0.9, top=0.9, bottom=0.17)
    return figure


OUTLINE_WIDTH = {"best": 2.6, "tied": 1.0}
OUTLINE_LEGEND = {"best": "best cell",
                  "tied": f"≈ not told apart from the best (paired t-test, Holm-corrected p ≥ {ALPHA:g})"}


def outlines_of(table: PairTable) -> list[tuple[int, int, str]]:
    """(row, column, 'best' | 'tied') of the cells the heatmap outlines."""
    ops = table.operators
    return [(i, j, table.mark(a, b)) for i, a in enumerate(ops) for j, b in enumerate(ops) if table.mark(a, b) in OUTLINE_WIDTH]


def outline_cells(axes: plt.Axes, outlines: list[tuple[int, int, str]]) -> None:
    """A black outline inside each marked cell: thick around the best cell, thin around those tied with it."""
    inset = 0.06  # in cells: inside the white grid lines and the row-mean column's separator
    for i, j, kind in outlines:
        axes.add_patch(Rectangle((j + inset, i + inset), 1 - 2 * inset, 1 - 2 * inset, fill=False, edgecolor="black",
                                 linewidth=OUTLINE_WIDTH[kind], zorder=4))


def outline_handles(outlines: list[tuple[int, int, str]]) -> list:
    kinds = {kind for _, _, kind in outlines}
    return [Patch(facecolor="none", edgecolor="black", linewidth=OUTLINE_WIDTH[kind], label=label)
            for kind, label in OUTLINE_LEGEND.items() if kind in kinds]


def legend_handles(legend: dict[str, str], states: list[pd.DataFrame]) -> list:
    """A legend entry for each mark that some panel uses."""
    return [mark_legend(state, label) for state, label in legend.items() if any((s == state).any(axis=None) for s in states)]


def value_range(tables: list[PairTable]) -> tuple[float, float]:
    """One colour range for all facets of a grid, so that equal colours mean equal numbers. Collapsed cells
    are hatched, not coloured, and stay out of it: a collapse must not squeeze the others' colours together."""
    finite = [value for table in tables for value in table.coloured_means()]
    if not finite:
        return 0.0, 100.0
    low, high = float(min(finite)), float(max(finite))
    return (low - 0.5, high + 0.5) if high - low < 1e-9 else (low, high)


HEATMAP_LEGEND = {"missing": "missing (no result)", "failed": "failed (all runs)",
                  "collapsed": "collapsed (k of n runs; not on the colour scale)"}


def heatmap_frames(table: PairTable) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """values, labels and states of a pair table's cells, the row means last."""
    ops, typical = table.operators, table.typical_n()
    columns = ops + ["mean"]
    values = pd.concat([table.mean, table.row_mean.rename("mean")], axis=1)
    labels = pd.DataFrame([[cell_label(table.cell(a, b), typical, table.mark(a, b)) for b in ops]
                           + [table.row_mean_text(a) or "missing"] for a in ops], index=ops, columns=columns)
    states = pd.DataFrame([[table.cell(a, b).state for b in ops] + ["ok" if table.row_mean_text(a) else "missing"]
                           for a in ops], index=ops, columns=columns)
    return values, labels, states


def row_mean_note(tables: list[PairTable]) -> str:
    incomplete = any(not t.row_complete(op) and not np.isnan(t.row_mean[op]) for t in tables for op in t.operators)
    return "* mean over the row's cells that have a result. " if incomplete else ""


def draw_heatmap(table: PairTable, title: str, header: str, metric: str = "linear_top1",
                 vrange: tuple[float, float] | None = None) -> plt.Figure:
    values, labels, states = heatmap_frames(table)
    low, high = vrange or value_range([table])
    return draw_pairs(values, labels, states, title, row_mean_note([table]) + header, metric_label(metric),
                      HEATMAP_LEGEND, outlines_of(table), cmap="viridis", vmin=low, vmax=high)


MAX_PANELS_PER_ROW = 4


def panel_layout(count: int) -> tuple[int, int]:
    """(rows, columns) of `count` panels: at most four a row, rows filled evenly (5 → 3 + 2, 8 → 4 + 4)."""
    rows = math.ceil(count / MAX_PANELS_PER_ROW)
    return rows, math.ceil(count / rows)


def draw_method_heatmaps(tables: list[tuple[str, PairTable]], title: str, header: str, metric: str = "linear_top1",
                         vrange: tuple[float, float] | None = None) -> plt.Figure:
    """One heatmap per method (title: its label), side by side in one figure, on one colour scale (one colour bar)."""
    low, high = vrange or value_range([table for _, table in tables])
    n_ops = max(len(table.operators) for _, table in tables)
    side = 0.9 * (max(n_ops, 4) + 1)
    rows, cols = panel_layout(len(tables))
    panel_height = side * 0.82 + 0.9  # the panel and its title and column labels
    figure = plt.figure(figsize=(cols * (side + 0.35) + 2.4, rows * panel_height + 1.9))
    grid = figure.add_gridspec(rows, cols + 1, width_ratios=[side] * cols + [0.25], wspace=0.12, hspace=0.28)
    bar_axes = figure.add_subplot(grid[:, cols])
    all_states = []
    for index, (label, table) in enumerate(tables):
        row, col = divmod(index, cols)
        axes = figure.add_subplot(grid[row, col])
        values, labels, states = heatmap_frames(table)
        all_states.append(states)
        draw_panel(axes, values, labels, states, bar_axes if index == 0 else None, metric_label(metric), fontsize=8.5,
                   cmap="viridis", vmin=low, vmax=high)
        axes.axvline(len(table.operators), color="white", linewidth=5)  # the row-mean column stands apart
        outline_cells(axes, outlines_of(table))
        axes.set_title(label, fontsize=11.5, pad=6)
        axes.set_xlabel("2nd transformation" if row == rows - 1 or index + cols >= len(tables) else "", fontsize=10)
        axes.set_ylabel("1st transformation" if col == 0 else "", fontsize=10)
        if col:
            axes.set_yticklabels([])
    inches = figure.get_figheight()
    figure.suptitle(title, fontsize=12.5, y=1 - 0.25 / inches, va="top")
    footer(figure, row_mean_note([t for _, t in tables]) + header, chars_per_inch=13, fontsize=7.5, bottom=0.1 / inches)
    handles = legend_handles(HEATMAP_LEGEND, all_states) + outline_handles([o for _, t in tables for o in outlines_of(t)])
    if handles:
        figure.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 0.45 / inches), ncol=len(handles),
                      frameon=False, fontsize=8.5)
    width = figure.get_figwidth()
    figure.subplots_adjust(left=1.3 / width, right=1 - 0.9 / width, top=1 - (0.35 + 0.3 * title.count("\n") + 0.45) / inches,
                           bottom=1.2 / inches)
    return figure


# ------------------------------------------------------------------------------------------ files


def marks_legend(family: int) -> str:
    return (f"**bold**: the best cell; ≈: not told apart from it (paired t-test over the seeds both have, Holm-corrected "
            f"over the {family} comparisons with the best cell in this report, p ≥ {ALPHA:g}); a cell sharing fewer than "
            "2 seeds with the best is not tested (heatmap.csv: vs_best).")


def marked_text(table: PairTable, first: str, second: str) -> str:
    """The cell's text, bold for the best cell, after '≈ ' for a cell not told apart from it."""
    text, mark = table.cell(first, second).text(), table.mark(first, second)
    return f"**{text}**" if mark == "best" else (f"≈ {text}" if mark == "tied" else text)


def table_markdown(table: PairTable, family: int = 0) -> str:
    """Markdown rows of the pair table with the marks, then the legends of the numbers, the marks and collapsed cells."""
    from ablate.report.tables import INTERVAL_LEGEND

    ops = table.operators
    lines = ["| 1st \\ 2nd | " + " | ".join(ops) + " | row mean |", "|---" * (len(ops) + 2) + "|"]
    for first in ops:
        cells = [marked_text(table, first, second) for second in ops]
        cells.append(table.row_mean_text(first) or MISSING)
        lines.append(f"| {first} | " + " | ".join(cells) + " |")
    lines += ["", INTERVAL_LEGEND + "; row mean: the mean of the row's cell means."]
    if table.view is not None and table.view.best is not None:
        lines.append(marks_legend(family))
    if table.any_collapsed:
        lines.append(COLLAPSE_LEGEND)
    return "\n".join(lines) + "\n"


BEST_COLUMNS = ["vs_best", "diff_from_best", "pairs", "p_t", "p_sign_flip", "p_t_holm", "p_sign_flip_holm"]


def table_csv(table: PairTable, collapsed: bool = False) -> pd.DataFrame:
    """Long format: one row per cell with mean, std, the 95 % interval (ci_low, ci_high) and n (cells without a
    result have n = 0), `collapsed` (how many of the cell's runs collapsed) when the results have the collapse
    diagnostic, and the cell against the best: vs_best (best | tied | differs | not enough seeds), the mean and
    number of the paired differences, the raw and Holm-corrected p of the paired t-test and the sign-flip test."""
    columns = ["first", "second", "mean", "std", "ci_low", "ci_high", "n"] + (["collapsed"] if collapsed else []) + BEST_COLUMNS
    rows = []
    nan = float("nan")
    for first in table.operators:
        for second in table.operators:
            cell = table.cell(first, second)
            low, high = cell.interval
            comparison = table.view.versus_best.get((first, second)) if table.view is not None else None
            test = comparison.test if comparison is not None else None
            rows.append({"first": first, "second": second, "mean": cell.mean, "std": cell.std, "ci_low": low, "ci_high": high,
                         "n": cell.n, "collapsed": cell.collapsed, "vs_best": table.mark(first, second),
                         "diff_from_best": test.mean if test else nan, "pairs": test.n if test else 0,
                         "p_t": test.t_p if test else nan, "p_sign_flip": test.sign_flip_p if test else nan,
                         "p_t_holm": comparison.t_p_holm if test else nan,
                         "p_sign_flip_holm": comparison.sign_flip_p_holm if test else nan})
    return pd.DataFrame(rows, columns=columns)


def table_latex(table: PairTable, family: int) -> str:
    """The pair table as a booktabs table (heatmap.tex): the same numbers, intervals and marks as heatmap.md."""
    view = table.view

    def text(first: str, second: str) -> str:
        if second == ROW_MEAN:
            mean = table.row_mean_text(first)
            return "---" if mean is None else f"${mean.rstrip('*')}${'*' if mean.endswith('*') else ''}"
        return latex_cell(table.cell(first, second), table.mark(first, second))

    legend = ["mean $\\pm$ std over seeds [95\\,\\% interval of the mean, Student $t$] (n runs); --- no completed run"]
    if view.best is not None:
        legend.append("bold: the best cell; $\\approx$: not told apart from it (paired $t$-test over shared seeds, "
                      f"Holm-corrected over the {family} comparisons with the best cell, $p \\geq {ALPHA:g}$)")
    if any(not table.row_complete(op) and not np.isnan(table.row_mean[op]) for op in table.operators):
        legend.append("* row mean over the cells with a result")
    if table.any_collapsed:
        legend.append("collapsed k/n: k of the n runs collapsed")
    caption = f"{latex_escape(view.title)}: " + "; ".join(legend) + "."
    return to_latex(view, text, caption, extra_cols=[ROW_MEAN])


ROW_MEAN = "row mean"


# ------------------------------------------------------------------------------------------ compare


@dataclass
class DiffCell:
    a: Cell
    b: Cell

    @property
    def state(self) -> str:
        if self.a.n and self.b.n:
            return "both"
        if self.a.n:
            return "only A"
        if self.b.n:
            return "only B"
        return "neither"

    @property
    def diff(self) -> float:
        return self.b.mean - self.a.mean if self.state == "both" else float("nan")

    @property
    def stderr(self) -> float:
        """Standard error of the difference of the two means (needs n > 1 on both sides)."""
        if self.state != "both" or self.a.n < 2 or self.b.n < 2:
            return float("nan")
        return float(np.sqrt(self.a.std**2 / self.a.n + self.b.std**2 / self.b.n))

    def diff_text(self, separator: str) -> str:
        """A cell present in both grids: '+1.2', then separator + the standard error where known ('+1.2 ± 0.4')."""
        return f"{self.diff:+.1f}" + ("" if np.isnan(self.stderr) else f"{separator}{self.stderr:.1f}")


@dataclass
class DiffTable:
    operators: list[str]
    cells: dict[tuple[str, str], DiffCell]

    def row_mean(self, first: str) -> float:
        diffs = [self.cells[(first, b)].diff for b in self.operators if self.cells[(first, b)].state == "both"]
        return float(np.mean(diffs)) if diffs else float("nan")

    def row_mean_text(self, first: str) -> str | None:
        """'+1.2' ('+1.2*' when some cell of the row is not in both grids), None when none is."""
        mean = self.row_mean(first)
        complete = all(self.cells[(first, b)].state == "both" for b in self.operators)
        return None if np.isnan(mean) else f"{mean:+.1f}" + ("" if complete else "*")


def diff_table(a: PairTable, b: PairTable) -> DiffTable:
    operators = operator_order(set(a.operators) | set(b.operators))
    cells = {(x, y): DiffCell(a.cell(x, y), b.cell(x, y)) for x in operators for y in operators}
    return DiffTable(operators, cells)


def draw_difference(table: DiffTable, title: str, header: str, metric: str, names: tuple[str, str]) -> plt.Figure:
    ops = table.operators
    columns = ops + ["mean"]
    values = pd.DataFrame([[table.cells[(a, b)].diff for b in ops] + [table.row_mean(a)] for a in ops], index=ops,
                          columns=columns)
    only = {"only A": f"only A\n({names[0]})", "only B": f"only B\n({names[1]})"}
    labels = pd.DataFrame([[table.cells[(a, b)].diff_text("\n±") if table.cells[(a, b)].state == "both"
                            else only.get(table.cells[(a, b)].state, "missing") for b in ops]
                           + [table.row_mean_text(a) or "missing"] for a in ops], index=ops, columns=columns)
    state_of = {"both": "ok", "only A": "only", "only B": "only", "neither": "missing"}
    states = pd.DataFrame([[state_of[table.cells[(a, b)].state] for b in ops]
                           + ["ok" if table.row_mean_text(a) else "missing"] for a in ops], index=ops, columns=columns)
    finite = np.abs(values.to_numpy()[np.isfinite(values.to_numpy())])
    bound = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    if any(0 < sum(table.cells[(op, b)].state == "both" for b in ops) < len(ops) for op in ops):
        header = "* mean over the row's cells present in both grids. " + header
    # bounds symmetric about 0, so that no difference is the middle (white) of the diverging map
    return draw_pairs(values, labels, states, title, header, f"Δ {metric_label(metric)}: B − A",
                      {"only": "in one grid only", "missing": "in neither"}, cmap="RdBu_r", vmin=-bound, vmax=bound)


def diff_csv(table: DiffTable) -> pd.DataFrame:
    rows = []
    for (first, second), cell in table.cells.items():
        rows.append({"first": first, "second": second, "mean_a": cell.a.mean, "std_a": cell.a.std, "n_a": cell.a.n,
                     "mean_b": cell.b.mean, "std_b": cell.b.std, "n_b": cell.b.n, "diff": cell.diff,
                     "stderr": cell.stderr, "state": cell.state})
    return pd.DataFrame(rows)


def diff_markdown(table: DiffTable) -> str:
    ops = table.operators
    lines = ["| 1st \\ 2nd | " + " | ".join(ops) + " | row mean |", "|---" * (len(ops) + 2) + "|"]
    for first in ops:
        cells = []
        for second in ops:
            cell = table.cells[(first, second)]
            if cell.state == "both":
                cells.append(cell.diff_text(" ± "))
            else:
                cells.append(cell.state if cell.state != "neither" else MISSING)
        cells.append(table.row_mean_text(first) or MISSING)
        lines.append(f"| {first} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------- the report type


class HeatmapReport:
    """Figure 5: one heatmap of first × second operator per facet, with heatmap.csv and heatmap.md.

    Chosen by `--all` for a grid of single operators and ordered pairs (is_pair_grid) that is not a
    Table 1 grid; `--heatmap` draws the runs of one operator or a pair of any grid.
    """

    def applies(self, grid: GridFrame, options: ReportOptions) -> bool:
        from ablate.report.tables import table1_applies

        return is_pair_grid(grid.frame) and not table1_applies(grid)

    def section(self, grid: GridFrame, out: Path, options: ReportOptions) -> Section:
        from ablate.report.findings import findings_markdown, report_findings, seeds_needed_section

        pairs = pair_frame(grid.frame)
        if pairs.empty and not options.operators:
            raise ReportError(f"grid {grid.grid!r} has no run of one operator or an ordered pair to draw")
        order = options.operators or pair_operators(pairs)
        split = split_on(pairs, varying_axes(pairs, PAIR_AXES))
        tables = [(facet, part, pair_table(part, order, options.metric)) for facet, part in split]
        vrange = value_range([table for _, _, table in tables])
        diagnosed = any_diagnosed(cell for _, _, table in tables for cell in table.cells.values())
        header = grid.header()
        section = Section("Figure 5: pairs of transformations")
        side_by_side = "method" in split.axes
        if split.axes:
            section.note = f"One heatmap per value of {', '.join(split.axes)} (these vary in the grid and are not averaged)."
            if side_by_side:
                section.note += " The methods are drawn side by side on one colour scale."
        if any(table.any_collapsed for _, _, table in tables):
            section.note = (section.note + " " if section.note else "") + COLLAPSE_LEGEND + "."
        titles = [f"{metric_label(options.metric)}: 1st × 2nd transformation ({seed_note(part)})"
                  + (f"\n{facet.label}" if facet.values else "") for facet, part, _ in tables]
        views = compare_with_best_cells([table for _, _, table in tables], options.metric, [facet for facet, _, _ in tables],
                                        [title.replace("\n", " · ") for title in titles])
        family = sum(c.testable for view in views for c in view.versus_best.values())
        section.findings = report_findings(views)
        if any(view.best is not None for view in views):
            section.note = (section.note + " " if section.note else "") + marks_legend(family).replace("**bold**", "Bold")
        opening = findings_markdown(section.findings)
        frames, markdown = [], [f"# {grid.grid}: {options.metric}\n\n{header}\n" + (f"\n{opening.rstrip()}\n" if opening else "")]
        for (facet, part, table), title in zip(tables, titles):
            body = (table_csv(table, diagnosed), table_markdown(table, family), pair_html(table, title.replace("\n", " · ")))
            if side_by_side:
                add_facet_tables(section, frames, markdown, facet, *body)
            else:
                add_facet(section, frames, markdown, facet, title, out / f"heatmap{facet.suffix}",
                          draw_heatmap(table, title, header, options.metric, vrange), *body)
        if side_by_side:
            for rest, group in group_by_method(tables).items():
                title = f"{metric_label(options.metric)}: 1st × 2nd transformation, by method " \
                        f"({seed_note(pd.concat([part for _, part, _ in group]))})" + (f"\n{rest.label}" if rest.values else "")
                panels = [(method_label(dict(facet.values)["method"]), table) for facet, _, table in group]
                add_figure(section, draw_method_heatmaps(panels, title, header, options.metric, vrange),
                           out / f"heatmap-methods{rest.suffix}", title)
        if options.seeds_needed:
            seeds = seeds_needed_section(views, options.seeds_needed, "best")
            markdown.append(seeds.markdown)
            section.seeds_needed = seeds.lines
        write_section_tables(section, out / "heatmap", frames, markdown)
        section.files.append(write_text(out / "heatmap.tex", f"% {header}\n% needs \\usepackage{{booktabs}}\n"
                                        + "\n".join(table_latex(table, family) for _, _, table in tables)))
        return section


def group_by_method(tables: list[tuple[Facet, pd.DataFrame, PairTable]]) -> dict[Facet, list[tuple[Facet, pd.DataFrame, PairTable]]]:
    """The facets grouped by their values on the axes other than `method` (one figure each), in facet order;
    inside a group the methods in the registry's order, as split_on sorted them."""
    groups: dict[Facet, list] = {}
    for facet, part, table in tables:
        rest = Facet(tuple((axis, value) for axis, value in facet.values if axis != "method"))
        groups.setdefault(rest, []).append((facet, part, table))
    return groups


def pair_html(table: PairTable, caption: str) -> str:
    rows = []
    for first in table.operators:
        cells = [pair_html_cell(table, first, second) for second in table.operators]
        mean = table.row_mean_text(first)
        cells.append(("—", "missing") if mean is None else (mean, "ok"))
        rows.append((first, cells))
    return html_table("1st \\ 2nd", table.operators + ["row mean"], rows, caption)


def pair_html_cell(table: PairTable, first: str, second: str) -> tuple[str, str]:
    """(text, class): '≈ ' before a cell not told apart from the best; the best cell's class adds 'best' (bold, outlined)."""
    cell, mark = table.cell(first, second), table.mark(first, second)
    return ("≈ " if mark == "tied" else "") + cell.text(), cell.state + (" best" if mark == "best" else "")
