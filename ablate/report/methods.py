"""Cross-method report: how much each method depends on each augmentation ("Beyond SimCLR").

Rows are the grid's methods (their spec's label, in the order of METHOD_SPECS); columns are the
other axis the grid varies, by default its augmentation: the `augment` axis (mapping values: the
fields they change, e.g. "crop+color, color_strength=0.5") or `augment.ops` (pipelines:
"crop+color+blur"); `--cols AXIS` picks any other axis. Each cell is mean ± std over seeds (n), as
in ablate's other tables, and each cell's change from its method's reference column ("the full
pipeline": the first column in the grid file's order, or `--baseline LABEL`):

    Δ = mean(cell) − mean(reference cell of the same method),  ± the std over seeds of the per-seed
    differences (seeds of one grid are paired: same seed, same data order and initial weights).

Δ is per method on purpose: methods differ in accuracy, the question is which augmentation each one
needs (SimCLR needs colour distortion badly; BYOL is reported to need it less, Grill et al. 2020, §5).

Output: methods[--facet].{png,pdf,svg}, methods.{md,tex,csv} and a section of index.html. The figure
is two heatmaps sharing their rows: the metric (viridis, one scale for all facets, as Figure 5) and
Δ (diverging, symmetric about 0, as the comparison of two grids). A heatmap rather than grouped bars:
with up to eight methods and several columns, bars would be 40 thin bars to match by colour, while
a grid of cells reads like the table beside it, and the Δ panel shows at a glance which method
loses most without which augmentation. Cells without a result are hatched and labelled, and a cell
with a collapsed run (ablate.evaluate.collapse) is hatched in orange and kept off the colour scale,
as in the Figure 5 heatmap.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ablate.config import OPERATORS
from ablate.report.data import (
    MISSING, Cell, GridFrame, ReportError, check_axis, collect_cells, format_value, has_method_axis, hashable, method_label,
    method_sort_key, metric_label, numeric_metric, sort_key, split_facets, varying_axes,
)
from ablate.report.files import add_figure, seed_note, write_text
from ablate.report.heatmap import HEATMAP_LEGEND, cell_label, draw_panel, is_pair_grid, legend_handles
from ablate.report.html import Section
from ablate.report.plots import footer
from ablate.report.tables import CellTable, html_table, latex_escape, to_frame, to_html, to_latex, to_markdown

if TYPE_CHECKING:
    from ablate.report.build import ReportOptions

AUGMENT = "augment"  # the grid axis whose values are mappings merged into the augment section
PIPELINE_FIELDS = ("augment.ops", "ops")  # values are pipelines, shown as "crop+color+blur"
STEM = "methods"
DELTA_LEGEND = ("Δ: the cell's mean minus the mean of its method's reference cell, ± the std over seeds of the "
                "per-seed differences (seeds are paired); 'collapsed': the cell or its reference has a collapsed run.")


# ------------------------------------------------------------------------------------------ columns


@dataclass(frozen=True)
class ColumnAxis:
    """What makes a run's column: the values of `fields` (one frame column, or the augment.* fields an
    `augment` axis changes together), and how a column is called."""

    name: str
    fields: tuple[str, ...]

    def key(self, run: pd.Series) -> tuple:
        return tuple(hashable(run[field]) if field in run else None for field in self.fields)

    def label(self, key: tuple) -> str:
        """'crop+color+blur', '0.5', or for several fields 'crop+color, color_strength=0.5' (pipeline first; a
        field the run's spec does not have is left out)."""
        if len(self.fields) == 1:
            return field_text(self.fields[0], key[0])
        parts = []
        for field, value in zip(self.fields, key):
            if value is None and field not in PIPELINE_FIELDS:
                continue
            text = field_text(field, value)
            parts.append(text if field in PIPELINE_FIELDS else f"{field.split('.', 1)[-1]}={text}")
        return ", ".join(parts)

    def sort_key(self, key: tuple) -> tuple:
        """Without a plan (no grid order known): the longest pipeline first (the full one), then the paper's
        operator order; any other field as the other reports sort it."""
        return tuple(pipeline_key(value) if field in PIPELINE_FIELDS else sort_key(value)
                     for field, value in zip(self.fields, key))


def field_text(field: str, value: Any) -> str:
    if field in PIPELINE_FIELDS:
        return str(value) if value else "none"
    return format_value(value)


def pipeline_key(value: Any) -> tuple:
    ops = [op for op in str(value or "").split("+") if op]
    rank = {op: index for index, op in enumerate(OPERATORS)}
    return (-len(ops), tuple(rank.get(op, len(rank)) for op in ops), str(value))


def augment_fields(frame: pd.DataFrame) -> tuple[str, ...]:
    """The augment.* fields that vary besides the method, the pipeline first."""
    fields = [axis for axis in varying_axes(frame, ("method",)) if axis.startswith("augment.")]
    return tuple(sorted(fields, key=lambda field: (field != "augment.ops", field)))


def column_axis(grid: GridFrame, cols: str | None) -> ColumnAxis:
    """--cols, or by default the augmentation axis (augment / augment.<field>), else the first other varying axis."""
    frame = grid.frame
    if cols == "method":
        raise ReportError("--cols method: the methods report's rows are the methods; give the axis to compare them across")
    if cols is not None and cols != AUGMENT:
        check_axis(grid, cols, "--cols")
        return ColumnAxis(cols, (cols,))
    fields = augment_fields(frame)
    if len(fields) == 1:
        return ColumnAxis(fields[0], fields)
    if fields:
        return ColumnAxis(AUGMENT, fields)
    others = varying_axes(frame, ("method",))
    if cols is None and others:
        return ColumnAxis(others[0], (others[0],))
    return ColumnAxis("augment.ops", ("augment.ops",))


def column_order(frame: pd.DataFrame, axis: ColumnAxis) -> list[tuple]:
    """Every column of the grid in the grid file's order (the plan's), then columns the plan does not name."""
    first_seen: dict[tuple, float] = {}
    for (_, run), index in zip(frame.iterrows(), frame["plan_index"]):
        key = axis.key(run)
        here = float(index) if pd.notna(index) else float("inf")
        first_seen[key] = min(first_seen.get(key, float("inf")), here)
    return sorted(first_seen, key=lambda key: (first_seen[key], axis.sort_key(key)))


def reference_column(columns: list[tuple], axis: ColumnAxis, baseline: str | None) -> tuple:
    """The column Δ is measured from: the one labelled `baseline`, or the first."""
    if baseline is None:
        return columns[0]
    labels = {axis.label(key): key for key in columns}
    if baseline in labels:
        return labels[baseline]
    known = ", ".join(repr(label) for label in labels)
    raise ReportError(f"--baseline {baseline!r}: no column of the methods report ({axis.name}) is labelled so; "
                      f"columns: {known}")


# ------------------------------------------------------------------------------------------- cells


@dataclass
class Delta:
    """A cell's change from its method's reference cell."""

    cell: Cell
    reference: Cell
    per_seed: list[float]  # cell − reference for each seed both have
    is_reference: bool = False

    @property
    def state(self) -> str:
        if self.is_reference:
            return "reference"
        if not self.cell.n:
            return self.cell.state  # missing | failed
        if not self.reference.n:
            return "missing"
        return "collapsed" if self.cell.collapsed or self.reference.collapsed else "ok"

    @property
    def value(self) -> float:
        if self.is_reference and self.cell.n:
            return 0.0
        return self.cell.mean - self.reference.mean if self.cell.n and self.reference.n else float("nan")

    @property
    def std(self) -> float:
        return float(np.std(self.per_seed, ddof=1)) if len(self.per_seed) > 1 and not self.is_reference else float("nan")

    def number(self, separator: str = " ± ") -> str:
        return f"{self.value:+.1f}" + ("" if np.isnan(self.std) else f"{separator}{self.std:.1f}")

    def text(self) -> str:
        """'-2.2 ± 0.5', 'ref.', '-48.0 ± 1.0 (collapsed)', '—', '— (no reference)'."""
        state = self.state
        if state == "reference":
            return "ref." if self.cell.n else MISSING
        if state in ("missing", "failed"):
            return MISSING + (" (no reference)" if self.cell.n else "")
        return self.number() + (" (collapsed)" if state == "collapsed" else "")

    def label(self) -> str:
        """The figure's annotation: as text() on two lines."""
        state = self.state
        if state == "reference":
            return "ref." if self.cell.n else "missing"
        if state in ("missing", "failed"):
            return "no ref." if self.cell.n else state
        number = self.number("\n±")
        return f"collapsed\n{self.value:+.1f}" if state == "collapsed" else number


@dataclass
class MethodsTable:
    """methods × columns cells of one facet, and each cell's Δ from its method's reference column."""

    cells: CellTable
    axis: ColumnAxis
    reference: tuple
    seeds: dict[tuple[Any, tuple], dict[Any, float]]  # (method, column) -> {seed: value}
    runs: pd.DataFrame  # the facet's runs

    def delta(self, method: Any, column: tuple) -> Delta:
        cell, reference = self.cells.cell(method, column), self.cells.cell(method, self.reference)
        mine, theirs = self.seeds.get((method, column), {}), self.seeds.get((method, self.reference), {})
        shared = sorted(set(mine) & set(theirs), key=sort_key)
        return Delta(cell, reference, [mine[s] - theirs[s] for s in shared], column == self.reference)

    @property
    def reference_label(self) -> str:
        return self.axis.label(self.reference)

    def delta_table(self) -> CellTable:
        """The same rows and columns for the Δ writers (texts come from delta(); no cells of its own)."""
        title = f"Δ {metric_label(self.cells.metric)} from {self.reference_label}, per method" + facet_note(self.cells)
        return CellTable(title, self.cells.row_axis, self.cells.col_axis, self.cells.rows, self.cells.cols, {},
                         self.cells.metric, self.cells.facet, self.cells.row_label, self.cells.col_label)


def facet_note(table: CellTable) -> str:
    return f" ({table.facet.label})" if table.facet.values else ""


def seed_values(frame: pd.DataFrame, metric: str, axis: ColumnAxis) -> dict[tuple[Any, tuple], dict[Any, float]]:
    """Each completed run's value by (method, column) and seed (the mean where a seed has two runs)."""
    values = numeric_metric(frame, metric)
    found: dict[tuple[Any, tuple], dict[Any, list[float]]] = {}
    for index, run in frame[frame["status"] == "completed"].iterrows():
        if np.isfinite(values.loc[index]):
            seeds = found.setdefault((run["method"], axis.key(run)), {})
            seeds.setdefault(hashable(run.get("seed")), []).append(float(values.loc[index]))
    return {key: {seed: float(np.mean(v)) for seed, v in seeds.items()} for key, seeds in found.items()}


def methods_tables(grid: GridFrame, metric: str, axis: ColumnAxis, baseline: str | None) -> list[MethodsTable]:
    """One MethodsTable per combination of the axes that vary besides the methods and the columns."""
    frame = grid.frame
    order = column_order(frame, axis)
    reference = reference_column(order, axis, baseline)
    tables = []
    for facet, part in split_facets(frame, ("method", *axis.fields)):
        cells = collect_cells(part, metric, lambda run: run["method"], axis.key)
        present = {key[1] for key in cells}
        rows = sorted({key[0] for key in cells}, key=method_sort_key)
        title = f"{metric_label(metric)} by method × {axis.name}" + (f" ({facet.label})" if facet.values else "")
        table = CellTable(title, "method", axis.name, rows, [c for c in order if c in present], cells, metric, facet,
                          row_label=method_label, col_label=axis.label)
        tables.append(MethodsTable(table, axis, reference, seed_values(part, metric, axis), part))
    return tables


# ------------------------------------------------------------------------------------------ writing


def delta_latex(delta: Delta) -> str:
    state = delta.state
    if state == "reference":
        return "ref." if delta.cell.n else "---"
    if state in ("missing", "failed"):
        return "---" + (" (no reference)" if delta.cell.n else "")
    number = f"${delta.value:+.1f}" + ("$" if np.isnan(delta.std) else f" \\pm {delta.std:.1f}$")
    return number + (" {\\scriptsize (collapsed)}" if state == "collapsed" else "")


def methods_markdown(table: MethodsTable) -> str:
    deltas = table.delta_table()
    return (to_markdown(table.cells) + "\n" + to_markdown(deltas, lambda row, col: table.delta(row, col).text())
            + "\n" + DELTA_LEGEND + "\n")


def methods_latex(table: MethodsTable) -> str:
    deltas = table.delta_table()
    caption = (f"{latex_escape(deltas.title)}: each method's mean minus its mean in the reference column, $\\pm$ the std "
               "over seeds of the per-seed differences; --- no value.")
    return to_latex(table.cells) + "\n" + to_latex(deltas, lambda row, col: delta_latex(table.delta(row, col)), caption)


def methods_frame(tables: list[MethodsTable]) -> pd.DataFrame:
    """to_frame's long format (one line per cell, rows then columns) plus the reference column and Δ."""
    frame = to_frame([t.cells for t in tables])
    deltas = [(t, t.delta(row, col)) for t in tables for row in t.cells.rows for col in t.cells.cols]
    frame["reference"] = [t.reference_label for t, _ in deltas]
    frame["delta"] = [d.value for _, d in deltas]
    frame["delta_std"] = [d.std for _, d in deltas]
    frame["delta_seeds"] = [0 if d.is_reference else len(d.per_seed) for _, d in deltas]
    return frame


def delta_html(table: MethodsTable) -> str:
    state_class = {"reference": "ok", "ok": "ok", "collapsed": "collapsed", "missing": "missing", "failed": "failed"}
    rows = [(method_label(row), [(table.delta(row, col).text(), state_class[table.delta(row, col).state])
                                 for col in table.cells.cols]) for row in table.cells.rows]
    return html_table(f"Method \\ {table.axis.name}", [table.axis.label(c) for c in table.cells.cols], rows,
                      table.delta_table().title)


# ------------------------------------------------------------------------------------------ drawing


def value_range(tables: list[MethodsTable]) -> tuple[float, float]:
    """One colour range for the metric over all facets (collapsed cells are hatched, not coloured)."""
    finite = [c.mean for t in tables for c in t.cells.cells.values() if c.state == "ok"]
    if not finite:
        return 0.0, 100.0
    low, high = float(min(finite)), float(max(finite))
    return (low - 0.5, high + 0.5) if high - low < 1e-9 else (low, high)


def delta_bound(tables: list[MethodsTable]) -> float:
    """The largest |Δ| of an ordinary cell over all facets: the diverging scale runs from −bound to +bound."""
    finite = [abs(d.value) for t in tables for row in t.cells.rows for col in t.cells.cols
              if (d := t.delta(row, col)).state == "ok" and np.isfinite(d.value)]
    return max(finite) if finite and max(finite) > 0 else 1.0


def wrapped(label: str, width: int = 18) -> str:
    """A column label on lines of at most about `width` characters, broken only after ', ' or '+'."""
    pieces = re.findall(r"[^+,]+(?:\+|, |,|$)", label)
    lines = [""]
    for piece in pieces:
        if lines[-1] and len(lines[-1]) + len(piece.rstrip()) > width:
            lines[-1] = lines[-1].rstrip()
            lines.append("")
        lines[-1] += piece
    return "\n".join(line.rstrip() for line in lines)


def panel_frames(table: MethodsTable, text: Callable[[Any, Any], tuple[float, str, str]]) -> tuple[pd.DataFrame, ...]:
    """values, labels and states (method labels × column labels) from text(method, column) -> (value, label, state)."""
    index = [method_label(row) for row in table.cells.rows]
    columns = [wrapped(table.axis.label(col)) for col in table.cells.cols]
    cells = [[text(row, col) for col in table.cells.cols] for row in table.cells.rows]
    return tuple(pd.DataFrame([[cell[i] for cell in line] for line in cells], index=index, columns=columns,
                              dtype=float if i == 0 else object) for i in range(3))


def draw_methods(table: MethodsTable, title: str, header: str, vrange: tuple[float, float], bound: float) -> plt.Figure:
    """The metric (left) and Δ from the reference column (right), methods as rows of both."""
    typical = max((c.n for c in table.cells.cells.values()), default=0)

    def metric_cell(row: Any, col: Any) -> tuple[float, str, str]:
        cell = table.cells.cell(row, col)
        return cell.mean, cell_label(cell, typical), cell.state

    def delta_cell(row: Any, col: Any) -> tuple[float, str, str]:
        delta = table.delta(row, col)
        state = "ok" if delta.state == "reference" and delta.cell.n else delta.state
        return delta.value, delta.label(), "missing" if state == "reference" else state

    left, right = panel_frames(table, metric_cell), panel_frames(table, delta_cell)
    n_rows, n_cols = len(table.cells.rows), len(table.cells.cols)
    lines = max((label.count("\n") + 1 for label in left[0].columns), default=1)
    cell_width = max(1.0, 0.075 * max((len(line) for label in left[0].columns for line in label.split("\n")), default=8) + 0.2)
    panel_width, height = n_cols * cell_width, n_rows * 0.62
    label_width = 0.085 * max((len(label) for label in left[0].index), default=6) + 0.5
    figure = plt.figure(figsize=(2 * panel_width + label_width + 2.5, height + 2.45 + 0.17 * lines))
    grid = figure.add_gridspec(1, 5, width_ratios=[panel_width, 0.18, 0.55, panel_width, 0.18], wspace=0.05)
    axes = [figure.add_subplot(grid[0]), figure.add_subplot(grid[3])]
    bars = [figure.add_subplot(grid[1]), figure.add_subplot(grid[4])]
    draw_panel(axes[0], *left, bars[0], metric_label(table.cells.metric), fontsize=8.5, cmap="viridis",
               vmin=vrange[0], vmax=vrange[1])
    draw_panel(axes[1], *right, bars[1], f"Δ {metric_label(table.cells.metric)}", fontsize=8.5, cmap="RdBu_r",
               vmin=-bound, vmax=bound)
    axes[0].set_title("mean ± std over seeds", fontsize=10.5, pad=6)
    axes[1].set_title(f"Δ from {table.reference_label} (each method's own)", fontsize=10.5, pad=6)
    axes[1].set_yticklabels([])
    for panel in axes:
        panel.set_xlabel(table.axis.name, fontsize=10)
        panel.set_ylabel("")
        panel.tick_params(axis="x", rotation=0)
    inches, width = figure.get_figheight(), figure.get_figwidth()
    figure.suptitle(title, fontsize=12, y=1 - 0.2 / inches, va="top")
    footer(figure, header.rstrip(".") + ". " + DELTA_LEGEND, chars_per_inch=14, fontsize=7, bottom=0.08 / inches)
    handles = legend_handles(HEATMAP_LEGEND, [left[2], right[2]])
    if handles:
        figure.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 0.5 / inches), ncol=len(handles),
                      frameon=False, fontsize=8.5)
    top = 0.55 + 0.22 * title.count("\n") + 0.35
    bottom = (1.15 if handles else 0.85) + 0.17 * lines  # column labels, axis title, the legend's row, the footer
    figure.subplots_adjust(left=label_width / width, right=1 - 0.75 / width, top=1 - top / inches, bottom=bottom / inches)
    return figure


# ------------------------------------------------------------------------------- the report type


class MethodsReport:
    """Methods × augmentation (or --cols) with each cell's Δ from the method's reference column.

    Chosen by `--all` for a grid with two or more methods that is not a Figure 5 pair grid (there the
    heatmap draws the methods side by side, and this report would have a column per pair) unless
    --cols or --baseline ask for it; always by `--kind methods`.
    """

    def applies(self, grid: GridFrame, options: ReportOptions) -> bool:
        methods = has_method_axis(grid.frame)
        return bool(options.baseline) or (methods and (bool(options.cols) or not is_pair_grid(grid.frame)))

    def section(self, grid: GridFrame, out: Path, options: ReportOptions) -> Section:
        if not has_method_axis(grid.frame):
            raise ReportError(f"grid {grid.grid!r} has fewer than two methods; the methods report compares methods "
                              "(give the grid a `method` axis)")
        axis = column_axis(grid, options.cols)
        tables = methods_tables(grid, options.metric, axis, options.baseline)
        vrange, bound = value_range(tables), delta_bound(tables)
        header = grid.header()
        section = Section(f"Methods × {axis.name}: {metric_label(options.metric)} and Δ from the reference column",
                          tables_first=True)
        notes = [f"Δ from {tables[0].reference_label} (give another reference with --baseline LABEL)."]
        if any(t.cells.facet.values for t in tables):
            notes.append(f"One table per value of {', '.join(a for a, _ in tables[0].cells.facet.values)} (not averaged).")
        section.note = " ".join(notes)
        for table in tables:
            title = table.cells.title + f" ({seed_note(table.runs)})"
            add_figure(section, draw_methods(table, title, header, vrange, bound), out / f"{STEM}{table.cells.facet.suffix}",
                       title)
            section.tables += [to_html(table.cells), delta_html(table)]
        section.files.append(write_text(out / f"{STEM}.md", f"# {grid.grid}\n\n{header}\n\n"
                                        + "\n".join(methods_markdown(t) for t in tables)))
        section.files.append(write_text(out / f"{STEM}.tex", f"% {header}\n% needs \\usepackage{{booktabs}}\n"
                                        + "\n".join(methods_latex(t) for t in tables)))
        section.files.append(write_text(out / f"{STEM}.csv", methods_frame(tables).to_csv(index=False)))
        return section
