"""Cross-method report: how much each method depends on each augmentation ("Beyond SimCLR").

Rows are the grid's methods (their spec's label, in the order of METHOD_SPECS); columns are the
other axis the grid varies, by default its augmentation: the `augment` axis (mapping values: the
fields they change, e.g. "crop+color, color_strength=0.5") or `augment.ops` (pipelines:
"crop+color+blur"); `--cols AXIS` picks any other axis. Each cell is mean ± std over seeds (n), as
in ablate's other tables, and each cell's change from its method's reference column ("the full
pipeline": the first column in the grid file's order, or `--baseline LABEL`):

    Δ = mean(cell) − mean(reference cell of the same method),  ± the std over seeds of the per-seed
    differences (seeds of one grid are paired: same seed, same data order and initial weights),

with the paired t-test and the exact sign-flip test of those differences, Holm-corrected over the
report's comparisons (ablate.report.tables.attach_comparisons, ablate.report.stats).

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
    GridFrame, ReportError, check_axis, collect_cells, format_value, has_method_axis, hashable, method_label,
    method_sort_key, metric_label, sort_key, split_facets, varying_axes,
)
from ablate.report.files import add_figure, seed_note, write_text
from ablate.report.heatmap import HEATMAP_LEGEND, cell_label, draw_panel, is_pair_grid, legend_handles
from ablate.report.html import Section
from ablate.report.plots import footer
from ablate.report.tables import (
    CellTable, Delta, attach_comparisons, delta_html, delta_latex, delta_markdown, numeric_value, report_markdown, tested,
    to_frame, to_html, to_latex, to_markdown,
)

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


# ------------------------------------------------------------------------------------------- cells


@dataclass
class MethodsTable:
    """methods × columns cells of one facet; `cells` holds each cell's paired comparison with its method's
    reference column (ablate.report.tables.attach_comparisons)."""

    cells: CellTable
    axis: ColumnAxis
    runs: pd.DataFrame  # the facet's runs

    def delta(self, method: Any, column: tuple) -> Delta:
        return self.cells.delta(method, column)

    @property
    def reference(self) -> tuple:
        return self.cells.reference

    @property
    def reference_label(self) -> str:
        return self.axis.label(self.reference)


def facet_note(table: CellTable) -> str:
    return f" ({table.facet.label})" if table.facet.values else ""


def methods_tables(grid: GridFrame, metric: str, axis: ColumnAxis, baseline: str | None) -> list[MethodsTable]:
    """One MethodsTable per combination of the axes that vary besides the methods and the columns; the reference
    column is the one labelled `baseline` (else each table's first column in the grid's order); the paired
    comparisons are Holm-corrected over all tables."""
    frame = grid.frame
    order = column_order(frame, axis)
    tables = []
    for facet, part in split_facets(frame, ("method", *axis.fields)):
        cells = collect_cells(part, metric, lambda run: run["method"], axis.key)
        present = {key[1] for key in cells}
        rows = sorted({key[0] for key in cells}, key=method_sort_key)
        title = f"{metric_label(metric)} by method × {axis.name}" + (f" ({facet.label})" if facet.values else "")
        table = CellTable(title, "method", axis.name, rows, [c for c in order if c in present], cells, metric, facet,
                          row_label=method_label, col_label=axis.label, trend_x=numeric_column(axis),
                          name_of=lambda method, column: f"{method_label(method)} with {axis.label(column)}")
        tables.append(MethodsTable(table, axis, part))
    attach_comparisons([t.cells for t in tables], baseline)
    return tables


def numeric_column(axis: ColumnAxis) -> Callable[[tuple], float | None] | None:
    """A column's number for the findings' trend when the column axis is one numeric field (e.g. --cols
    train.batch_size); None for pipelines and mappings."""
    if len(axis.fields) != 1 or axis.fields[0] in PIPELINE_FIELDS:
        return None
    return lambda key: numeric_value(key[0])


# ------------------------------------------------------------------------------------------ writing


def methods_markdown(table: MethodsTable, family: int) -> str:
    return to_markdown(table.cells) + "\n" + delta_markdown(table.cells, family)


def methods_latex(table: MethodsTable, family: int) -> str:
    return to_latex(table.cells) + "\n" + delta_latex(table.cells, family)


def methods_frame(tables: list[MethodsTable]) -> pd.DataFrame:
    """to_frame's long format: one line per cell (rows then columns) with its comparison with the reference column."""
    return to_frame([t.cells for t in tables])


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
        return has_method_axis(grid.frame) and (bool(options.cols) or not is_pair_grid(grid.frame))

    def baseline_columns(self, grid: GridFrame, options: ReportOptions) -> tuple[str, list[str]]:
        """What --baseline can name here: (how the report is called, its column labels in the grid's order)."""
        axis = column_axis(grid, options.cols)
        return f"the methods report ({axis.name})", [axis.label(key) for key in column_order(grid.frame, axis)]

    def section(self, grid: GridFrame, out: Path, options: ReportOptions) -> Section:
        from ablate.report.findings import report_findings, seeds_needed_section

        if not has_method_axis(grid.frame):
            raise ReportError(f"grid {grid.grid!r} has fewer than two methods; the methods report compares methods "
                              "(give the grid a `method` axis)")
        axis = column_axis(grid, options.cols)
        tables = methods_tables(grid, options.metric, axis, options.baseline)
        vrange, bound = value_range(tables), delta_bound(tables)
        header = grid.header()
        section = Section(f"Methods × {axis.name}: {metric_label(options.metric)} and Δ from the reference column",
                          tables_first=True)
        notes = [f"Δ from {tables[0].reference_label} (give another reference with --baseline LABEL)."
                 + "".join(f" {t.cells.reference_note}." for t in tables[:1] if t.cells.reference_note)]
        if any(t.cells.facet.values for t in tables):
            notes.append(f"One table per value of {', '.join(a for a, _ in tables[0].cells.facet.values)} (not averaged).")
        section.note = " ".join(notes)
        for table in tables:
            title = table.cells.title + f" ({seed_note(table.runs)})"
            add_figure(section, draw_methods(table, title, header, vrange, bound), out / f"{STEM}{table.cells.facet.suffix}",
                       title)
            section.tables += [to_html(table.cells), delta_html(table.cells)]
        cells = [t.cells for t in tables]
        family = tested(cells)
        section.findings = report_findings(cells)
        seeds = seeds_needed_section(cells, options.seeds_needed, "reference") if options.seeds_needed else None
        section.seeds_needed = seeds.lines if seeds else []
        body = "\n".join(methods_markdown(t, family) for t in tables)
        section.files.append(write_text(out / f"{STEM}.md", report_markdown(grid, header, section.findings, body,
                                                                             seeds.markdown if seeds else "")))
        section.files.append(write_text(out / f"{STEM}.tex", f"% {header}\n% needs \\usepackage{{booktabs}}\n"
                                        + "\n".join(methods_latex(t, family) for t in tables)))
        section.files.append(write_text(out / f"{STEM}.csv", methods_frame(tables).to_csv(index=False)))
        return section
