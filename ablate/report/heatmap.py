"""Figure 5 style heatmap: a metric for every ordered pair of operators, and differences of two grids.

Rows are the first operator, columns the second, the diagonal is the operator alone, and an extra
column holds each row's mean (as in the paper). Cells show the mean (± std over seeds when n > 1).
A cell with no completed run is hatched and labelled "missing" or "failed", never dropped.

Drawn by `seaborn.heatmap` (colours, annotations, colour bar; one colour scale shared by a grid's
facets); cells without a value are masked there and marked by ablate.report.plots, which also
writes the footer: the two things seaborn does not draw.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.patches import Rectangle

from ablate.config import OPERATORS
from ablate.report.data import (  # noqa: F401
    MISSING, PAIR_AXES, Cell, GridFrame, ReportError, collect_cells, metric_label, split_on, varying_axes,
)
from ablate.report.files import add_facet, seed_note, write_section_tables
from ablate.report.html import Section
from ablate.report.plots import MARKS, footer, mark, mark_legend

if TYPE_CHECKING:
    from ablate.report.build import ReportOptions


@dataclass
class PairTable:
    """first × second operator cells (the diagonal: the operator alone)."""

    operators: list[str]
    cells: dict[tuple[str, str], Cell]

    def cell(self, first: str, second: str) -> Cell:
        return self.cells.get((first, second), Cell())

    def matrix(self, stat: str) -> pd.DataFrame:
        data = [[getattr(self.cell(a, b), stat) for b in self.operators] for a in self.operators]
        return pd.DataFrame(data, index=self.operators, columns=self.operators, dtype=float)

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


def pair_operators(pairs: pd.DataFrame) -> list[str]:
    names = set(pairs["first_op"].dropna()) | set(pairs["second_op"].dropna())
    return operator_order({str(n) for n in names})


def pair_table(pairs: pd.DataFrame, operators: list[str], metric: str = "linear_top1") -> PairTable:
    cells = collect_cells(pairs, metric, lambda run: run["first_op"], lambda run: run["second_op"])
    return PairTable(operators, {key: cell for key, cell in cells.items() if key[0] in operators and key[1] in operators})


# ------------------------------------------------------------------------------------------ drawing


def cell_label(cell: Cell, typical_n: int) -> str:
    if not cell.n:
        return "failed" if cell.failed else "missing"
    text = f"{cell.mean:.1f}"
    if cell.n > 1:
        text += f"\n±{cell.std:.1f}"
    if cell.n < typical_n or cell.failed:
        text += f"\nn={cell.n}" + (f", {cell.failed} failed" if cell.failed else "")
    return text


def draw_pairs(values: pd.DataFrame, labels: pd.DataFrame, states: pd.DataFrame, title: str, header: str,
               colorbar_label: str, legend: dict[str, str], **colour) -> plt.Figure:
    """operators × (operators + 'mean') cells: seaborn colours and annotates the cells whose state is 'ok' on the
    scale `colour` gives (cmap, vmin, vmax); the others are masked, and hatched and labelled here."""
    n_ops = len(values)
    side = 0.95 * (max(n_ops, 4) + 1)
    figure = plt.figure(figsize=(side + 2.6, side * 0.82 + 1.9))
    grid = figure.add_gridspec(1, 2, width_ratios=[side, 0.25], wspace=0.06)
    axes, bar_axes = figure.add_subplot(grid[0]), figure.add_subplot(grid[1])
    marked = states != "ok"
    sns.heatmap(values, mask=marked | values.isna(), annot=labels.to_numpy(), fmt="", linewidths=1, linecolor="white",
                annot_kws={"fontsize": 9, "linespacing": 1.15}, ax=axes, cbar_ax=bar_axes,
                cbar_kws={"label": colorbar_label}, **colour)
    for i, j in np.argwhere(marked.to_numpy()):
        state = states.iat[i, j]
        mark(axes, j, i, 1, 1, state)
        # seaborn draws no edge around a masked cell: the white grid line, as between the other cells
        axes.add_patch(Rectangle((j, i), 1, 1, fill=False, edgecolor="white", linewidth=1))
        axes.text(j + 0.5, i + 0.5, labels.iat[i, j], ha="center", va="center", fontsize=8.5, zorder=3,
                  color="0.25" if state == "missing" else MARKS[state][1],
                  bbox={"boxstyle": "round,pad=0.25", "facecolor": "white", "edgecolor": "none"})
    axes.axvline(n_ops, color="white", linewidth=6)  # the row-mean column stands apart
    axes.tick_params(length=0)
    axes.tick_params(axis="y", rotation=0)  # seaborn turns y labels upright unless they overlap
    axes.set_xlabel("2nd transformation", fontsize=11)
    axes.set_ylabel("1st transformation", fontsize=11)
    axes.set_title(title, fontsize=12, pad=10, loc="center")
    footer(figure, header, chars_per_inch=13, fontsize=7.5, bottom=0.02)
    handles = [mark_legend(state, label) for state, label in legend.items() if (states == state).any(axis=None)]
    if handles:
        axes.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.085), ncol=len(handles), frameon=False,
                    fontsize=8.5)
    figure.subplots_adjust(left=0.13, right=0.9, top=0.9, bottom=0.17)
    return figure


def value_range(tables: list[PairTable]) -> tuple[float, float]:
    """One colour range for all facets of a grid, so that equal colours mean equal numbers."""
    finite = []
    for table in tables:
        values = table.mean.to_numpy()
        finite += list(values[np.isfinite(values)])
    if not finite:
        return 0.0, 100.0
    low, high = float(min(finite)), float(max(finite))
    return (low - 0.5, high + 0.5) if high - low < 1e-9 else (low, high)


def draw_heatmap(table: PairTable, title: str, header: str, metric: str = "linear_top1",
                 vrange: tuple[float, float] | None = None) -> plt.Figure:
    ops, typical = table.operators, table.typical_n()
    columns = ops + ["mean"]
    values = pd.concat([table.mean, table.row_mean.rename("mean")], axis=1)
    labels = pd.DataFrame([[cell_label(table.cell(a, b), typical) for b in ops] + [table.row_mean_text(a) or "missing"]
                           for a in ops], index=ops, columns=columns)
    states = pd.DataFrame([[table.cell(a, b).state for b in ops] + ["ok" if table.row_mean_text(a) else "missing"]
                           for a in ops], index=ops, columns=columns)
    if any(not table.row_complete(op) and not np.isnan(table.row_mean[op]) for op in ops):
        header = "* mean over the row's cells that have a result. " + header
    low, high = vrange or value_range([table])
    return draw_pairs(values, labels, states, title, header, metric_label(metric),
                      {"missing": "missing (no result)", "failed": "failed (all runs)"}, cmap="viridis", vmin=low, vmax=high)


# ------------------------------------------------------------------------------------------ files


def table_markdown(table: PairTable) -> str:
    ops = table.operators
    lines = ["| 1st \\ 2nd | " + " | ".join(ops) + " | row mean |", "|---" * (len(ops) + 2) + "|"]
    for first in ops:
        cells = [table.cell(first, second).text() for second in ops]
        cells.append(table.row_mean_text(first) or MISSING)
        lines.append(f"| {first} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def table_csv(table: PairTable) -> pd.DataFrame:
    """Long format: one row per cell with mean, std and n (cells without a result have n = 0)."""
    rows = []
    for first in table.operators:
        for second in table.operators:
            cell = table.cell(first, second)
            rows.append({"first": first, "second": second, "mean": cell.mean, "std": cell.std, "n": cell.n})
    return pd.DataFrame(rows, columns=["first", "second", "mean", "std", "n"])


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

    Chosen by `--all` for a grid of single operators and ordered pairs that is not a Table 1 grid.
    """

    def applies(self, grid: GridFrame, options: ReportOptions) -> bool:
        from ablate.report.tables import table1_applies

        return not pair_frame(grid.frame).empty and not table1_applies(grid)

    def section(self, grid: GridFrame, out: Path, options: ReportOptions) -> Section:
        pairs = pair_frame(grid.frame)
        if pairs.empty and not options.operators:
            raise ReportError(f"grid {grid.grid!r} has no run of one operator or an ordered pair to draw")
        order = options.operators or pair_operators(pairs)
        split = split_on(pairs, varying_axes(pairs, PAIR_AXES))
        tables = [(facet, part, pair_table(part, order, options.metric)) for facet, part in split]
        vrange = value_range([table for _, _, table in tables])
        header = grid.header()
        section = Section("Figure 5: pairs of transformations")
        if split.axes:
            section.note = f"One heatmap per value of {', '.join(split.axes)} (these vary in the grid and are not averaged)."
        frames, markdown = [], [f"# {grid.grid}: {options.metric}\n\n{header}\n"]
        for facet, part, table in tables:
            title = f"{metric_label(options.metric)}: 1st × 2nd transformation ({seed_note(part)})"
            if facet.values:
                title += f"\n{facet.label}"
            add_facet(section, frames, markdown, facet, title, out / f"heatmap{facet.suffix}",
                      draw_heatmap(table, title, header, options.metric, vrange), table_csv(table), table_markdown(table),
                      pair_html(table, title.replace("\n", " · ")))
        write_section_tables(section, out / "heatmap", frames, markdown)
        return section


def pair_html(table: PairTable, caption: str) -> str:
    from ablate.report.tables import html_table

    rows = []
    for first in table.operators:
        cells = [(table.cell(first, second).text(), table.cell(first, second).state) for second in table.operators]
        mean = table.row_mean_text(first)
        cells.append(("—", "missing") if mean is None else (mean, "ok"))
        rows.append((first, cells))
    return html_table("1st \\ 2nd", table.operators + ["row mean"], rows, caption)
