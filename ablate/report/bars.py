"""A table's figure: grouped bars (one group per column, one bar per row) with ± std error bars.

For Table 1 this shows SimCLR and supervised side by side across colour strengths, the comparison
the paper draws from its table. Cells without a completed run are drawn as hatched outlines
labelled "—", never left out.
"""

from __future__ import annotations

import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from ablate.report.heatmap import FAILED_COLOR, MISSING_COLOR, metric_label  # noqa: E402
from ablate.report.tables import CellTable, axis_title  # noqa: E402

PALETTE = ["#4a6fa5", "#d98c3f", "#5b9e6b", "#a05195", "#8c8c8c", "#c44e52"]


def draw_bars(table: CellTable, title: str, header: str) -> plt.Figure:
    rows, cols = table.rows, table.cols
    width = 0.8 / max(len(rows), 1)
    figure, axes = plt.subplots(figsize=(max(6.5, 1.15 * len(cols) * max(1, len(rows) / 2) + 2.0), 4.8))
    finite = [c.mean for c in table.cells.values() if c.n]
    top = max(finite) if finite else 100.0
    low = min(finite) if finite else 0.0
    floor = max(0.0, low - (top - low) * 0.6 - 5)  # bars start near the data, as accuracy tables are read
    placeholder = (top - floor) * 0.25
    hatched = False
    for r, row in enumerate(rows):
        color = PALETTE[r % len(PALETTE)]
        for c, col in enumerate(cols):
            cell = table.cell(row, col)
            x = c - 0.4 + width * (r + 0.5)
            if cell.n:
                error = cell.std if cell.n > 1 else None
                axes.bar(x, cell.mean - floor, width * 0.9, bottom=floor, color=color, yerr=error, capsize=3,
                         error_kw={"elinewidth": 1, "ecolor": "0.2"})
                above = cell.mean + (cell.std if cell.n > 1 else 0)
                axes.text(x, above + (top - floor) * 0.015, f"{cell.mean:.1f}", ha="center", va="bottom", fontsize=7.5)
            else:
                hatched = True
                edge = FAILED_COLOR if cell.failed else MISSING_COLOR
                axes.bar(x, placeholder, width * 0.9, bottom=floor, facecolor="white", edgecolor=edge, hatch="///", linewidth=0.8)
                axes.text(x, floor + placeholder * 1.05, "failed" if cell.failed else "—", ha="center", va="bottom",
                          fontsize=7.5, color=edge)
    axes.set_xticks(range(len(cols)), [table.col_label(c) for c in cols])
    axes.set_xlim(-0.6, len(cols) - 0.4)
    axes.set_ylim(floor, top + (top - floor) * 0.15)
    axes.set_xlabel(axis_title(table.col_axis))
    axes.set_ylabel(metric_label(table.metric))
    axes.spines[["top", "right"]].set_visible(False)
    axes.grid(axis="y", color="0.9", zorder=0)
    axes.set_axisbelow(True)
    handles = [Patch(color=PALETTE[r % len(PALETTE)], label=table.row_label(row)) for r, row in enumerate(rows)]
    if hatched:
        handles.append(Patch(facecolor="white", edgecolor=MISSING_COLOR, hatch="///", label="no completed run"))
    axes.legend(handles=handles, frameon=False, fontsize=8.5, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    axes.set_title("\n".join(textwrap.wrap(title, 80)), fontsize=10.5)
    figure.text(0.5, 0.01, "\n".join(textwrap.wrap(header.rstrip(".") + ". Error bars: ± std over seeds.", int(figure.get_figwidth() * 14))),
                ha="center", va="bottom", fontsize=7, color="0.3")
    figure.tight_layout(rect=(0, 0.08, 1, 1))
    return figure
