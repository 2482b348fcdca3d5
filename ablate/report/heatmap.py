"""Figure 5 style heatmap: a metric for every ordered pair of operators, and differences of two grids.

Rows are the first operator, columns the second, the diagonal is the operator alone, and an extra
column holds each row's mean (as in the paper). Cells show the mean (± std over seeds when n > 1).
A cell with no completed run is hatched and labelled "missing" or "failed", never dropped.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import TwoSlopeNorm  # noqa: E402
from matplotlib.patches import Patch, Rectangle  # noqa: E402

from ablate.config import OPERATORS  # noqa: E402
from ablate.report.data import MISSING, Cell, collect_cells, metric_label  # noqa: E402, F401

MISSING_HATCH, FAILED_HATCH, ONLY_HATCH = "///", "xx", "\\\\\\"
MISSING_COLOR, FAILED_COLOR, ONLY_COLOR = "0.55", "#c0392b", "#7d3c98"
HATCHES = {"missing": (MISSING_HATCH, MISSING_COLOR), "failed": (FAILED_HATCH, FAILED_COLOR), "only": (ONLY_HATCH, ONLY_COLOR)}


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


def _hatch(axes: plt.Axes, i: int, j: int, state: str) -> None:
    hatch, color = HATCHES[state]
    axes.add_patch(Rectangle((j, i), 1, 1, facecolor="white", hatch=hatch, edgecolor=color, linewidth=0, zorder=1))


def _text_color(rgba: tuple[float, ...]) -> str:
    red, green, blue = rgba[:3]
    return "black" if 0.299 * red + 0.587 * green + 0.114 * blue > 0.55 else "white"


def _draw_grid(axes: plt.Axes, values: np.ndarray, labels: list[list[str]], states: list[list[str]], cmap, norm,
               row_names: list[str], col_names: list[str]) -> matplotlib.image.AxesImage:
    """Cells as an image (NaN transparent), hatched where missing/failed, annotated; y grows downwards."""
    image = axes.imshow(np.ma.masked_invalid(values), cmap=cmap, norm=norm, aspect="auto", interpolation="nearest",
                        extent=(0, values.shape[1], values.shape[0], 0), zorder=2)
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            if states[i][j] in HATCHES:
                _hatch(axes, i, j, states[i][j])
                color = {"failed": FAILED_COLOR, "only": ONLY_COLOR}.get(states[i][j], "0.25")
                axes.text(j + 0.5, i + 0.5, labels[i][j], ha="center", va="center", fontsize=8.5, color=color,
                          zorder=3, bbox={"boxstyle": "round,pad=0.25", "facecolor": "white", "edgecolor": "none"})
            elif labels[i][j]:
                color = _text_color(cmap(norm(values[i, j])))
                axes.text(j + 0.5, i + 0.5, labels[i][j], ha="center", va="center", fontsize=9, color=color,
                          zorder=3, linespacing=1.15)
    for edge in range(values.shape[1] + 1):
        axes.axvline(edge, color="white", linewidth=1.0, zorder=2.5)
    for edge in range(values.shape[0] + 1):
        axes.axhline(edge, color="white", linewidth=1.0, zorder=2.5)
    axes.set_xlim(0, values.shape[1])
    axes.set_ylim(values.shape[0], 0)
    axes.set_xticks(np.arange(values.shape[1]) + 0.5, col_names)
    axes.set_yticks(np.arange(values.shape[0]) + 0.5, row_names)
    axes.tick_params(length=0)
    for spine in axes.spines.values():
        spine.set_visible(False)
    return image


def _figure(n_ops: int) -> tuple[plt.Figure, plt.Axes, plt.Axes]:
    side = 0.95 * (max(n_ops, 4) + 1)
    figure = plt.figure(figsize=(side + 2.6, side * 0.82 + 1.9))
    grid = figure.add_gridspec(1, 2, width_ratios=[side, 0.25], wspace=0.06)
    return figure, figure.add_subplot(grid[0]), figure.add_subplot(grid[1])


def _finish(figure: plt.Figure, axes: plt.Axes, title: str, header: str, legend: list[Patch]) -> None:
    axes.set_xlabel("2nd transformation", fontsize=11)
    axes.set_ylabel("1st transformation", fontsize=11)
    width_chars = int(figure.get_figwidth() * 13)
    axes.set_title(title, fontsize=12, pad=10, loc="center")
    figure.text(0.5, 0.02, "\n".join(textwrap.wrap(header, width_chars)), ha="center", va="bottom", fontsize=7.5, color="0.3")
    if legend:
        axes.legend(handles=legend, loc="upper center", bbox_to_anchor=(0.5, -0.085), ncol=len(legend), frameon=False, fontsize=8.5)
    figure.subplots_adjust(left=0.13, right=0.9, top=0.9, bottom=0.17)


def _legend(states: list[list[str]]) -> list[Patch]:
    flat = {state for row in states for state in row}
    legend = []
    if "missing" in flat:
        legend.append(Patch(facecolor="white", edgecolor=MISSING_COLOR, hatch=MISSING_HATCH, label="missing (no result)"))
    if "failed" in flat:
        legend.append(Patch(facecolor="white", edgecolor=FAILED_COLOR, hatch=FAILED_HATCH, label="failed (all runs)"))
    return legend


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
    ops = table.operators
    typical = table.typical_n()
    values = np.full((len(ops), len(ops) + 1), np.nan)
    labels = [["" for _ in range(len(ops) + 1)] for _ in ops]
    states = [["ok" for _ in range(len(ops) + 1)] for _ in ops]
    row_mean = table.row_mean
    for i, first in enumerate(ops):
        for j, second in enumerate(ops):
            cell = table.cell(first, second)
            values[i, j] = cell.mean
            labels[i][j] = cell_label(cell, typical)
            states[i][j] = cell.state
        values[i, -1] = row_mean[first]
        text = table.row_mean_text(first)
        labels[i][-1], states[i][-1] = ("missing", "missing") if text is None else (text, "ok")
    low, high = vrange or value_range([table])
    figure, axes, bar_axes = _figure(len(ops))
    cmap = plt.get_cmap("viridis")
    norm = matplotlib.colors.Normalize(low, high)
    image = _draw_grid(axes, values, labels, states, cmap, norm, ops, ops + ["mean"])
    axes.axvline(len(ops), color="white", linewidth=6, zorder=2.6)  # the row-mean column stands apart
    figure.colorbar(image, cax=bar_axes, label=metric_label(metric))
    if any(not table.row_complete(op) and not np.isnan(row_mean[op]) for op in ops):
        header = "* mean over the row's cells that have a result. " + header
    _finish(figure, axes, title, header, _legend(states))
    return figure


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
    values = np.full((len(ops), len(ops) + 1), np.nan)
    labels = [["" for _ in range(len(ops) + 1)] for _ in ops]
    states = [["ok" for _ in range(len(ops) + 1)] for _ in ops]
    for i, first in enumerate(ops):
        for j, second in enumerate(ops):
            cell = table.cells[(first, second)]
            values[i, j] = cell.diff
            if cell.state == "both":
                labels[i][j] = cell.diff_text("\n±")
            else:
                labels[i][j] = {"only A": f"only A\n({names[0]})", "only B": f"only B\n({names[1]})"}.get(cell.state, "missing")
                states[i][j] = "only" if cell.state.startswith("only") else "missing"
        values[i, -1] = table.row_mean(first)
        text = table.row_mean_text(first)
        labels[i][-1], states[i][-1] = ("missing", "missing") if text is None else (text, "ok")
    finite = np.abs(values[np.isfinite(values)])
    bound = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    figure, axes, bar_axes = _figure(len(ops))
    cmap = plt.get_cmap("RdBu_r")
    norm = TwoSlopeNorm(vcenter=0.0, vmin=-bound, vmax=bound)
    image = _draw_grid(axes, values, labels, states, cmap, norm, ops, ops + ["mean"])
    axes.axvline(len(ops), color="white", linewidth=6, zorder=2.6)
    figure.colorbar(image, cax=bar_axes, label=f"Δ {metric_label(metric)}: B − A")
    if any(0 < sum(table.cells[(op, b)].state == "both" for b in ops) < len(ops) for op in ops):
        header = "* mean over the row's cells present in both grids. " + header
    legend = []
    flat = {s for row in states for s in row}
    if "only" in flat:
        legend.append(Patch(facecolor="white", edgecolor=ONLY_COLOR, hatch=ONLY_HATCH, label="in one grid only"))
    if "missing" in flat:
        legend.append(Patch(facecolor="white", edgecolor=MISSING_COLOR, hatch=MISSING_HATCH, label="in neither"))
    _finish(figure, axes, title, header, legend)
    return figure


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
