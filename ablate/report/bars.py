"""A table's figure: grouped bars (one group per column, one bar per row) with ± std error bars.

For Table 1 this shows SimCLR and supervised side by side across colour strengths, the comparison
the paper draws from its table. `seaborn.barplot` draws the bars from the runs themselves (one
observation per run) with errorbar="sd", pandas' sample standard deviation (ddof=1), the table's
std. A cell without a completed run has no observation, so seaborn leaves its place empty: it is
drawn here (ablate.report.plots) as a hatched outline labelled "—" or "failed", never left out; a
cell with a collapsed run keeps its bar, hatched over and labelled "collapsed k/n".
"""

from __future__ import annotations

import textwrap

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from ablate.report.data import metric_label
from ablate.report.plots import MARKS, footer, mark, mark_legend
from ablate.report.tables import CellTable, axis_title

PALETTE = ["#4a6fa5", "#d98c3f", "#5b9e6b", "#a05195", "#8c8c8c", "#c44e52"]
GROUP_WIDTH, GAP = 0.8, 0.1  # a column's group of bars spans 0.8; each bar leaves a tenth of its slot empty


def runs_frame(table: CellTable) -> pd.DataFrame:
    """One line per completed run: its row's and column's labels and its value (what seaborn aggregates)."""
    return pd.DataFrame([(table.row_label(row), table.col_label(col), value) for row in table.rows for col in table.cols
                         for value in table.cell(row, col).values], columns=["row", "column", "value"])


def bar_centre(table: CellTable, r: int, c: int) -> float:
    """Where seaborn puts row r's bar in column c (dodged bars side by side around the column's tick)."""
    width = GROUP_WIDTH / max(len(table.rows), 1)
    return c - GROUP_WIDTH / 2 + width * (r + 0.5)


def draw_bars(table: CellTable, title: str, header: str) -> plt.Figure:
    rows, cols = [table.row_label(r) for r in table.rows], [table.col_label(c) for c in table.cols]
    figure, axes = plt.subplots(figsize=(max(6.5, 1.15 * len(cols) * max(1, len(rows) / 2) + 2.0), 4.8))
    finite = [c.mean for c in table.cells.values() if c.n] or [0.0, 100.0]
    top, low = max(finite), min(finite)
    floor = max(0.0, low - (top - low) * 0.6 - 5)  # bars start near the data, as accuracy tables are read
    runs = runs_frame(table)
    if not runs.empty:
        # dodge=True: a slot per row even where only one row has runs (seaborn's "auto" would centre that bar)
        sns.barplot(runs, x="column", y="value", hue="row", order=cols, hue_order=rows, dodge=True, ax=axes,
                    errorbar="sd", palette=dict(zip(rows, PALETTE * len(rows))), saturation=1, width=GROUP_WIDTH,
                    gap=GAP, capsize=0.1, err_kws={"linewidth": 1, "color": "0.2"})
    placeholder = (top - floor) * 0.25
    marked = set()
    for r, row in enumerate(table.rows):
        for c, col in enumerate(table.cols):
            cell, x = table.cell(row, col), bar_centre(table, r, c)
            bar = GROUP_WIDTH / max(len(rows), 1) * (1 - GAP)
            if cell.n:
                above = cell.mean + (cell.std if cell.n > 1 else 0)
                label, colour = f"{cell.mean:.1f}", "black"
                if cell.collapsed:  # hatched over its bar and labelled, so it is not read as an ordinary low bar
                    marked.add("collapsed")
                    mark(axes, x - bar / 2, floor, bar, cell.mean - floor, "collapsed", outline=0.8, zorder=3)
                    label, colour = f"{cell.mean:.1f}\n{cell.collapsed_note}", MARKS["collapsed"][1]
                axes.text(x, above + (top - floor) * 0.015, label, ha="center", va="bottom", fontsize=7.5, color=colour)
                continue
            state = "failed" if cell.failed else "missing"
            marked.add(state)
            mark(axes, x - bar / 2, floor, bar, placeholder, state, outline=0.8)
            axes.text(x, floor + placeholder * 1.05, "failed" if cell.failed else "—", ha="center", va="bottom",
                      fontsize=7.5, color=MARKS[state][1])
    axes.set_xticks(range(len(cols)), cols)
    axes.set_xlim(-0.6, len(cols) - 0.4)
    axes.set_ylim(floor, top + (top - floor) * 0.15)
    axes.set_xlabel(axis_title(table.col_axis))
    axes.set_ylabel(metric_label(table.metric))
    sns.despine(ax=axes)
    axes.grid(axis="y", color="0.9", zorder=0)
    axes.set_axisbelow(True)
    handles = axes.get_legend_handles_labels()[0]  # seaborn's: one per row (hue level)
    handles += [mark_legend(state, f"no completed run ({state})") for state in ("missing", "failed") if state in marked]
    if "collapsed" in marked:
        handles.append(mark_legend("collapsed", "collapsed representation (ablate.evaluate.collapse)"))
    axes.legend(handles=handles, frameon=False, fontsize=8.5, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    axes.set_title(textwrap.fill(title, 80), fontsize=10.5)
    footer(figure, header.rstrip(".") + ". Error bars: ± std over seeds.", chars_per_inch=14, fontsize=7, bottom=0.01)
    figure.tight_layout(rect=(0, 0.08, 1, 1))
    return figure
