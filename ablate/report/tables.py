"""Table 1 style tables (method × colour-distortion strength) and a pivot of any two axes.

Cells read "mean ± std (n=…)"; a cell without a completed run reads "—" (with how many runs of
it failed or are missing), never left out. Written as Markdown, LaTeX (booktabs) and CSV.

Writers: CSV is `DataFrame.to_csv` and LaTeX is pandas' `Styler.to_latex(hrules=True)` (booktabs
rules); the one line Styler cannot draw, the cmidrule under the spanning column title, is added to
its output. Markdown stays hand-written: `DataFrame.to_markdown` (tabulate) pads every cell to its
column's width and draws the rule under the header as wide as the column (`|:------|`), in each of
its Markdown formats, so the committed tables (`|---|`, cells unpadded) would change; matching them
takes a hand-built tabulate format, i.e. this writer again plus a dependency.

Methods are named and ordered as ablate.config.methods says: each method spec's `label` (SimCLR,
Supervised), in the order of METHOD_SPECS; methods it does not know come after, by name.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import pandas as pd

from ablate.config import OPERATORS
from ablate.config.methods import DEFAULT_METHOD
from ablate.report.data import (
    COLLAPSE_LEGEND, PAIR_AXES, Cell, any_diagnosed, has_method_axis, Facet, GridFrame, ReportError, check_axis, collect_cells, format_value, fraction_label, hashable,
    method_label, method_sort_key, metric_label, slug, sort_key, split_facets, varying_axes,
)
from ablate.report.files import save_figure, write_text
from ablate.report.html import Section

if TYPE_CHECKING:
    from ablate.report.build import ReportOptions

TABLE1_AXES = ("method", "augment.color_strength", "augment.ops", "ops", "first_op", "second_op")
AXIS_NAMES = {"method": "Method", "color_distortion": "Color distortion strength"}


@dataclass
class CellTable:
    """rows × columns of cells, for one facet of a grid."""

    title: str
    row_axis: str
    col_axis: str
    rows: list[Any]
    cols: list[Any]
    cells: dict[tuple[Any, Any], Cell]
    metric: str
    facet: Facet = field(default_factory=Facet)
    row_label: Callable[[Any], str] = format_value
    col_label: Callable[[Any], str] = format_value

    def cell(self, row: Any, col: Any) -> Cell:
        return self.cells.get((row, col), Cell())


# ------------------------------------------------------------------------------------------ Table 1


def strength_column(ops: str, strength: Any) -> tuple[int, float]:
    """A run's Table 1 column as a sortable key: (0 no colour | 1 colour | 2 colour + blur | 3 AutoAug, s)."""
    names = set(str(ops or "").split("+"))
    value = float(strength) if strength is not None and pd.notna(strength) else 1.0
    if "autoaugment" in names:
        return (3, 0.0)
    if "color" in names and "blur" in names:
        return (2, value)
    if "color" in names:
        return (1, value)
    return (0, 0.0)


def strength_label(key: tuple[int, float]) -> str:
    kind, value = key
    if kind == 3:
        return "AutoAug"
    if kind == 2:
        return "1 (+Blur)" if value == 1.0 else f"{fraction_label(value)} (+Blur)"
    if kind == 1:
        return fraction_label(value)
    return "no colour"


def table1_applies(grid: GridFrame) -> bool:
    """Colour strength, AutoAugment or the method varies, and every run distorts colour (no pair grid)."""
    frame = grid.frame
    if frame.empty or "augment.ops" not in frame:
        return False
    ops = frame["augment.ops"].fillna("").astype(str)
    every_colour = ops.map(lambda o: bool({"color", "autoaugment"} & set(o.split("+")))).all()
    columns = {strength_column(o, s) for o, s in zip(ops, frame.get("augment.color_strength", [None] * len(frame)))}
    methods = set(frame["method"].dropna()) if "method" in frame else set()
    return bool(every_colour and (len(columns) > 1 or len(methods) > 1))


def table1(grid: GridFrame, metric: str = "linear_top1") -> list[CellTable]:
    """One Table 1 per facet: rows = method, columns = colour strength (1/8 … 1, 1 (+Blur), AutoAug)."""
    frame = grid.frame.copy()
    if "augment.color_strength" not in frame:
        frame["augment.color_strength"] = 1.0
    if "method" not in frame:
        frame["method"] = DEFAULT_METHOD  # results without a method column: the default method ran them
    tables = []
    for facet, part in split_facets(frame, TABLE1_AXES):
        cells = collect_cells(part, metric, lambda run: run["method"],
                              lambda run: strength_column(run["augment.ops"], run["augment.color_strength"]))
        rows = sorted({key[0] for key in cells}, key=method_sort_key)
        cols = sorted({key[1] for key in cells})
        title = f"{metric_label(metric)} by method and colour distortion strength" + (f" ({facet.label})" if facet.values else "")
        tables.append(CellTable(title, "method", "color_distortion", rows, cols, cells, metric, facet,
                                row_label=method_label, col_label=strength_label))
    return tables


# -------------------------------------------------------------------------------------------- pivot


def pivot(grid: GridFrame, rows: str, cols: str, metric: str) -> list[CellTable]:
    """One rows × cols table of `metric` per combination of the other varying axes."""
    laid_out = [rows, cols]
    if rows in PAIR_AXES or cols in PAIR_AXES:
        laid_out += list(PAIR_AXES)
    tables = []
    for facet, part in split_facets(grid.frame, laid_out):
        cells = collect_cells(part, metric, lambda run: hashable(run[rows]), lambda run: hashable(run[cols]))
        row_values = sorted({k[0] for k in cells}, key=axis_sort_key(rows))
        col_values = sorted({k[1] for k in cells}, key=axis_sort_key(cols))
        title = f"{metric_label(metric)} by {rows} × {cols}" + (f" ({facet.label})" if facet.values else "")
        label = method_label if rows == "method" else format_value
        tables.append(CellTable(title, rows, cols, row_values, col_values, cells, metric, facet, row_label=label,
                                col_label=method_label if cols == "method" else format_value))
    return tables


def axis_sort_key(axis: str) -> Callable[[Any], tuple]:
    """Operators (and pipelines of them) in the paper's order, methods in the registry's; everything
    else numbers first, then text."""
    if axis == "method":
        return method_sort_key
    if axis not in PAIR_AXES:
        return sort_key
    rank = {op: index for index, op in enumerate(OPERATORS)}
    return lambda value: (0, tuple(rank.get(op, len(rank)) for op in str(value).split("+")), str(value))


# ------------------------------------------------------------------------------------------- output


def axis_title(axis: str) -> str:
    return AXIS_NAMES.get(axis, axis)


def to_markdown(table: CellTable, text: Callable[[Any, Any], str] | None = None) -> str:
    """A Markdown table of the cells' texts (or of `text(row, col)`), with the legend of collapsed cells under
    it where a cell has one."""
    text = text or (lambda row, col: table.cell(row, col).text())
    head = f"| {axis_title(table.row_axis)} \\ {axis_title(table.col_axis)} | " + " | ".join(table.col_label(c) for c in table.cols) + " |"
    lines = [f"### {table.title}", "", head, "|---" * (len(table.cols) + 1) + "|"]
    for row in table.rows:
        lines.append(f"| {table.row_label(row)} | " + " | ".join(text(row, col) for col in table.cols) + " |")
    if any_collapsed(table):
        lines += ["", COLLAPSE_LEGEND]
    return "\n".join(lines) + "\n"


def any_collapsed(table: CellTable) -> bool:
    return any(cell.collapsed for cell in table.cells.values())


LATEX_SPECIALS = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def latex_escape(text: str) -> str:
    return "".join(LATEX_SPECIALS.get(ch, ch) for ch in text)


def latex_cell(cell: Cell) -> str:
    notes = cell.notes()
    if not cell.n:
        return "---" + (f" ({', '.join(notes)})" if notes else "")
    number = f"${cell.mean:.1f}" + (f" \\pm {cell.std:.1f}$" if cell.n > 1 else "$")
    return number + f" {{\\scriptsize ({', '.join([f'n={cell.n}'] + notes)})}}"


LATEX_COLLAPSE_LEGEND = ("; collapsed k/n: k of the n runs collapsed (embedding std below the threshold "
                         "$\\times 1/\\sqrt{d}$)")


def to_latex(table: CellTable, text: Callable[[Any, Any], str] | None = None, caption: str | None = None) -> str:
    """A booktabs table: the column axis as a spanning title over the column labels, the row axis
    heading the first column (given as the column labels' name, so that Styler puts it on their row).
    Cells are the cells' mean ± std (n) unless `text(row, col)` (LaTeX) says otherwise."""
    text = text or (lambda row, col: latex_cell(table.cell(row, col)))
    width = len(table.cols)
    columns = pd.MultiIndex.from_arrays(
        [[latex_escape(axis_title(table.col_axis))] * width, [latex_escape(table.col_label(c)) for c in table.cols]],
        names=[None, latex_escape(axis_title(table.row_axis))],
    )
    body = pd.DataFrame([[text(row, col) for col in table.cols] for row in table.rows],
                        index=[latex_escape(table.row_label(row)) for row in table.rows], columns=columns)
    if caption is None:
        legend = LATEX_COLLAPSE_LEGEND if any_collapsed(table) else ""
        caption = f"{latex_escape(table.title)}: mean $\\pm$ std over seeds (n runs); --- no completed run{legend}."
    latex = body.style.to_latex(hrules=True, position="t", position_float="centering", caption=caption,
                                column_format="l" + "c" * width, multicol_align="c")
    lines = latex.splitlines()
    spanning_title = lines.index(r"\toprule") + 1
    lines.insert(spanning_title + 1, f"\\cmidrule(lr){{2-{width + 1}}}")  # Styler has no rule for a column span
    return "\n".join(lines) + "\n"


def to_frame(tables: list[CellTable]) -> pd.DataFrame:
    """Long format: facet axes, row, column, mean, std, n, failed, missing (one line per cell, empty ones too),
    and `collapsed` (runs of the cell that collapsed) when the results have the collapse diagnostic."""
    diagnosed = any_diagnosed(cell for table in tables for cell in table.cells.values())
    records = []
    for table in tables:
        for row in table.rows:
            for col in table.cols:
                cell = table.cell(row, col)
                record = {axis: format_value(value) for axis, value in table.facet.values}
                record.update({table.row_axis: table.row_label(row), table.col_axis: table.col_label(col), "metric": table.metric,
                               "mean": cell.mean, "std": cell.std, "n": cell.n, "failed": cell.failed, "missing": cell.missing})
                if diagnosed:
                    record["collapsed"] = cell.collapsed
                records.append(record)
    return pd.DataFrame(records)


def html_table(row_title: str, col_labels: list[str], rows: list[tuple[str, list[tuple[str, str]]]], caption: str) -> str:
    """An HTML table; each cell is (text, state) with state ok | collapsed | missing | failed | only."""
    out = [f"<table><caption>{html.escape(caption)}</caption><thead><tr><th>{html.escape(row_title)}</th>"]
    out += [f"<th>{html.escape(label)}</th>" for label in col_labels]
    out.append("</tr></thead><tbody>")
    for label, cells in rows:
        out.append(f"<tr><th>{html.escape(label)}</th>")
        out += [f'<td class="{state}">{html.escape(text)}</td>' for text, state in cells]
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def to_html(table: CellTable) -> str:
    rows = []
    for row in table.rows:
        cells = [(table.cell(row, col).text(), table.cell(row, col).state) for col in table.cols]
        rows.append((table.row_label(row), cells))
    title = f"{axis_title(table.row_axis)} \\ {axis_title(table.col_axis)}"
    return html_table(title, [table.col_label(c) for c in table.cols], rows, table.title)


# ------------------------------------------------------------------------------- the report type


class TableReport:
    """Table 1 (method × colour strength), or the pivot of any two axes given as --rows/--cols, as .md,
    .tex and .csv with a bar figure, one table per facet.

    Chosen by `--all` for a Table 1 grid, or when --rows/--cols are given. On a grid with a method
    axis, --cols alone is the column axis of the methods report (ablate.report.methods), not half a pivot.
    """

    def applies(self, grid: GridFrame, options: ReportOptions) -> bool:
        return wants_pivot(grid, options) or table1_applies(grid)

    def section(self, grid: GridFrame, out: Path, options: ReportOptions) -> Section:
        from ablate.report.bars import draw_bars

        metric, rows, cols = options.metric, options.rows, options.cols
        if wants_pivot(grid, options):
            if not (rows and cols):
                raise ReportError("a pivot needs both --rows AXIS and --cols AXIS")
            check_axis(grid, rows, "--rows")
            check_axis(grid, cols, "--cols")
            tables, stem = pivot(grid, rows, cols, metric), slug(f"pivot-{rows}-by-{cols}-{metric}")
            section = Section(f"{metric} by {rows} × {cols}", tables_first=True)
        else:
            if not table1_applies(grid):
                raise ReportError(f"grid {grid.grid!r} varies neither the colour strength, AutoAugment nor the method of "
                                  "colour-distorted runs (Table 1); give --rows AXIS --cols AXIS for a pivot table")
            tables, stem = table1(grid, metric), "table1"
            section = Section("Table 1: colour distortion strength", tables_first=True)
        header = grid.header()
        facets = [t.facet for t in tables if t.facet.values]
        if facets:
            section.note = f"One table per value of {', '.join(a for a, _ in facets[0].values)} (not averaged)."
        for table in tables:
            files = save_figure(draw_bars(table, table.title, header), out, f"{stem}{table.facet.suffix}")
            section.files += files
            section.figures.append((files[0], table.title))
        section.files.append(write_text(out / f"{stem}.md", f"# {grid.grid}\n\n{header}\n\n" + "\n".join(to_markdown(t) for t in tables)))
        section.files.append(write_text(out / f"{stem}.tex", f"% {header}\n% needs \\usepackage{{booktabs}}\n" + "\n".join(to_latex(t) for t in tables)))
        section.files.append(write_text(out / f"{stem}.csv", to_frame(tables).to_csv(index=False)))
        section.tables += [to_html(t) for t in tables]
        return section


def wants_pivot(grid: GridFrame, options: ReportOptions) -> bool:
    """--rows asks for a pivot; so does --cols alone, except where it lays out the methods report."""
    return bool(options.rows) or (bool(options.cols) and not has_method_axis(grid.frame))


def fallback_pivot_axes(grid: GridFrame) -> tuple[str, str]:
    """For --all on a grid that is neither a pair grid nor a Table 1 grid: the axes it varies."""
    axes = varying_axes(grid.frame, ())
    if len(axes) >= 2:
        return axes[0], axes[1]
    if axes:
        return "method", axes[0]
    return "method", "augment.ops"
