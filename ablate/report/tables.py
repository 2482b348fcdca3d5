"""Table 1 style tables (method × colour-distortion strength) and a pivot of any two axes.

Cells read "mean ± std [95 % interval] (n=…)"; a cell without a completed run reads "—" (with how
many runs of it failed or are missing), never left out. Under each table, every column is compared
with a reference column of the same row (--baseline LABEL, else the first): Δ of the means ± the std
of the per-seed differences, with the paired t-test and the exact sign-flip test (ablate.report.stats),
each Holm-corrected over the report's comparisons with the reference. Every cell is also compared
with the best cell (the findings' ties, `vs_best` in the CSV). Written as Markdown, LaTeX (booktabs)
and CSV; the Markdown opens with the findings (ablate.report.findings).

The comparisons live here, with the tables they compare (Comparison, attach_comparisons, Delta): the
heatmap and the methods report attach theirs through the same functions.

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

import numpy as np

from ablate.config import OPERATORS
from ablate.config.methods import DEFAULT_METHOD
from ablate.report.data import (
    COLLAPSE_LEGEND, MISSING, PAIR_AXES, Cell, any_diagnosed, has_method_axis, Facet, GridFrame, ReportError, check_axis, collect_cells, format_value, fraction_label, hashable,
    method_label, method_sort_key, metric_label, slug, sort_key, split_facets, varying_axes,
)
from ablate.report.files import save_figure, write_text
from ablate.report.html import Section
from ablate.report.stats import ALPHA, PairedTest, holm, paired_test

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
    trend_x: Callable[[Any], float | None] | None = None  # a column's number on a strength axis (findings' trend)
    name_of: Callable[[Any, Any], str] | None = None  # how the findings call a cell ('SimCLR at 1/2')
    # Paired comparisons (attach_comparisons): every column against `reference`, every cell against `best`.
    reference: Any = None
    reference_note: str = ""  # why the reference is not the one --baseline named (the table has no such column)
    versus_reference: dict[tuple[Any, Any], Comparison] = field(default_factory=dict)
    best: tuple[Any, Any] | None = None
    versus_best: dict[tuple[Any, Any], Comparison] = field(default_factory=dict)

    def cell(self, row: Any, col: Any) -> Cell:
        return self.cells.get((row, col), Cell())

    def cell_name(self, row: Any, col: Any) -> str:
        return self.name_of(row, col) if self.name_of else f"{self.row_label(row)} at {self.col_label(col)}"

    def delta(self, row: Any, col: Any) -> Delta:
        """The cell's change from its row's reference cell (a table without a reference: the cell against itself)."""
        reference = self.reference if self.reference is not None else col
        return Delta(self.cell(row, col), self.cell(row, reference), self.versus_reference.get((row, col)), col == reference)

    def best_mark(self, row: Any, col: Any) -> str:
        """'best', 'tied' (not told apart from the best), 'differs', 'not enough seeds', 'collapsed' (not compared: its
        number is no ordinary one), or '' (no value / no best)."""
        if self.best is None or not self.cell(row, col).n:
            return ""
        if (row, col) == self.best:
            return "best"
        if self.cell(row, col).collapsed:
            return "collapsed"
        comparison = self.versus_best.get((row, col))
        if comparison is None or not comparison.testable:
            return "not enough seeds"
        return "differs" if comparison.told_apart else "tied"


# ------------------------------------------------------------------------------------- comparisons


@dataclass
class Comparison:
    """A cell against another over the seeds both have (paired), with p-values Holm-corrected over the report's
    family of such comparisons (correct())."""

    test: PairedTest
    t_p_holm: float = float("nan")
    sign_flip_p_holm: float = float("nan")

    @property
    def testable(self) -> bool:
        return self.test.testable

    @property
    def told_apart(self) -> bool:
        """The corrected paired t-test rejects "no difference" at ALPHA: what marks and findings go by."""
        return self.testable and self.t_p_holm < ALPHA

    def p_text(self) -> str:
        """'p=0.040, flip 0.250' (t-test and sign-flip test, Holm-corrected), or 'not enough seeds'."""
        if not self.testable:
            return "not enough seeds"
        flip = "" if np.isnan(self.sign_flip_p_holm) else f", flip {format_p(self.sign_flip_p_holm, bare=True)}"
        return format_p(self.t_p_holm) + flip


def format_p(p: float, bare: bool = False) -> str:
    """'p=0.040', 'p<0.001' ('0.040', '<0.001' when bare)."""
    text = "<0.001" if p < 0.001 else f"{p:.3f}"
    return text if bare else ("p" + text if text.startswith("<") else f"p={text}")


def compare_cells(cell: Cell, reference: Cell) -> Comparison:
    """cell − reference over the seeds both have (a seed's value: its mean where it ran twice)."""
    mine, theirs = cell.by_seed(), reference.by_seed()
    shared = sorted(set(mine) & set(theirs), key=sort_key)
    return Comparison(paired_test([mine[s] for s in shared], [theirs[s] for s in shared]))


def correct(comparisons: list[Comparison]) -> None:
    """Holm-corrects one family of comparisons (both tests, each on its own); untestable ones stay NaN."""
    t_adjusted = holm([c.test.t_p for c in comparisons])
    flip_adjusted = holm([c.test.sign_flip_p for c in comparisons])
    for comparison, t_p, flip_p in zip(comparisons, t_adjusted, flip_adjusted):
        comparison.t_p_holm, comparison.sign_flip_p_holm = float(t_p), float(flip_p)


def best_key(cells: dict[tuple[Any, Any], Cell]) -> tuple[Any, Any] | None:
    """The cell with the highest mean among those on the colour scale (a collapsed cell is no contender)."""
    candidates = [(key, cell.mean) for key, cell in cells.items() if cell.state == "ok" and np.isfinite(cell.mean)]
    return max(candidates, key=lambda item: item[1])[0] if candidates else None


def compare_with_best(cells: dict[tuple[Any, Any], Cell]) -> tuple[tuple[Any, Any] | None, dict[tuple[Any, Any], Comparison]]:
    """The best cell and every other cell on the colour scale compared with it (uncorrected; a collapsed cell is
    not compared: its number is a probe on a collapsed representation)."""
    best = best_key(cells)
    if best is None:
        return None, {}
    return best, {key: compare_cells(cell, cells[best]) for key, cell in cells.items() if key != best and cell.state == "ok"}


def reference_column(table: CellTable, baseline: str | None) -> Any:
    """The column labelled `baseline`, else (or without one) the first column."""
    labels = {table.col_label(col): col for col in table.cols}
    if baseline is not None and baseline in labels:
        return labels[baseline]
    return table.cols[0] if table.cols else None


def attach_comparisons(tables: list[CellTable], baseline: str | None, versus_reference: bool = True) -> None:
    """Every table's best cell and reference column, and the paired comparisons with them, each family
    Holm-corrected over all tables of the report (every facet)."""
    against_best, against_reference = [], []
    for table in tables:
        in_order = {(row, col): table.cells[(row, col)] for row in table.rows for col in table.cols if (row, col) in table.cells}
        table.best, table.versus_best = compare_with_best(in_order)
        against_best += table.versus_best.values()
        if not versus_reference:
            continue
        table.reference = reference_column(table, baseline)
        if baseline is not None and table.cols and table.col_label(table.reference) != baseline:
            table.reference_note = f"no column is labelled {baseline!r} here: the first column is the reference"
        for row in table.rows:
            reference = table.cell(row, table.reference)
            for col in table.cols:
                if col != table.reference and table.cell(row, col).n and reference.n:
                    table.versus_reference[(row, col)] = compare_cells(table.cell(row, col), reference)
        against_reference += table.versus_reference.values()
    correct(against_best)
    correct(against_reference)


@dataclass
class Delta:
    """A cell's change from its row's reference cell: Δ = mean(cell) − mean(reference), ± the std of the per-seed
    differences, with the paired tests of those differences."""

    cell: Cell
    reference: Cell
    comparison: Comparison | None  # None for the reference cell itself, or when either cell has no value
    is_reference: bool = False

    @property
    def per_seed(self) -> list[float]:
        return list(self.comparison.test.differences) if self.comparison and not self.is_reference else []

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
        return float(np.std(self.per_seed, ddof=1)) if len(self.per_seed) > 1 else float("nan")

    def number(self, separator: str = " ± ") -> str:
        return f"{self.value:+.1f}" + ("" if np.isnan(self.std) else f"{separator}{self.std:.1f}")

    def notes(self) -> list[str]:
        """The tests' p-values (or 'not enough seeds') and 'collapsed' where the cell or its reference has a collapsed run."""
        notes = [self.comparison.p_text()] if self.comparison is not None else []
        return notes + (["collapsed"] if self.state == "collapsed" else [])

    def text(self) -> str:
        """'-2.2 ± 0.5 (p=0.040, flip 0.250)', 'ref.', '-48.0 ± 1.0 (p=0.002, flip 0.250, collapsed)',
        '+1.0 (not enough seeds)', '—', '— (no reference)'."""
        state = self.state
        if state == "reference":
            return "ref." if self.cell.n else MISSING
        if state in ("missing", "failed"):
            return MISSING + (" (no reference)" if self.cell.n else "")
        return self.number() + f" ({', '.join(self.notes())})"

    def latex(self) -> str:
        state = self.state
        if state == "reference":
            return "ref." if self.cell.n else "---"
        if state in ("missing", "failed"):
            return "---" + (" (no reference)" if self.cell.n else "")
        number = f"${self.value:+.1f}" + ("$" if np.isnan(self.std) else f" \\pm {self.std:.1f}$")
        return number + f" {{\\scriptsize ({', '.join(self.notes())})}}".replace("<", "$<$")

    def label(self) -> str:
        """The figure's annotation: the number on two lines ('collapsed' above it where so marked)."""
        state = self.state
        if state == "reference":
            return "ref." if self.cell.n else "missing"
        if state in ("missing", "failed"):
            return "no ref." if self.cell.n else state
        number = self.number("\n±")
        return f"collapsed\n{self.value:+.1f}" if state == "collapsed" else number


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


def colour_strength(key: tuple[int, float]) -> float | None:
    """A Table 1 column's strength on the colour axis (the findings' trend): colour alone only (blur and
    AutoAugment change more than the strength)."""
    kind, value = key
    return value if kind == 1 else None


def numeric_value(value: Any) -> float | None:
    """A pivot column's value as a number for the trend, None for text (or booleans)."""
    if isinstance(value, (int, float, np.number)) and not isinstance(value, (bool, np.bool_)):
        return float(value)
    return None


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
                                row_label=method_label, col_label=strength_label, trend_x=colour_strength))
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
                                col_label=method_label if cols == "method" else format_value, trend_x=numeric_value))
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


INTERVAL_LEGEND = "mean ± std over seeds [95 % interval of the mean: mean ± t(0.975, n−1)·std/√n] (n runs)"
LATEX_INTERVAL = "mean $\\pm$ std over seeds [95\\,\\% interval of the mean, Student $t$] (n runs)"


def axis_title(axis: str) -> str:
    return AXIS_NAMES.get(axis, axis)


def any_interval(table: CellTable) -> bool:
    return any(cell.n > 1 for cell in table.cells.values())


def to_markdown(table: CellTable, text: Callable[[Any, Any], str] | None = None, legend: str | None = None) -> str:
    """A Markdown table of the cells' texts (or of `text(row, col)`), with the legend of its numbers under it (the
    interval's, or `legend`) and that of collapsed cells where a cell has one."""
    if text is None:
        legend = INTERVAL_LEGEND if any_interval(table) else None
        text = lambda row, col: table.cell(row, col).text()  # noqa: E731
    head = f"| {axis_title(table.row_axis)} \\ {axis_title(table.col_axis)} | " + " | ".join(table.col_label(c) for c in table.cols) + " |"
    lines = [f"### {table.title}", "", head, "|---" * (len(table.cols) + 1) + "|"]
    for row in table.rows:
        lines.append(f"| {table.row_label(row)} | " + " | ".join(text(row, col) for col in table.cols) + " |")
    notes = ([legend] if legend else []) + ([COLLAPSE_LEGEND] if any_collapsed(table) else [])
    if notes:
        lines += [""] + notes
    return "\n".join(lines) + "\n"


def any_collapsed(table: CellTable) -> bool:
    return any(cell.collapsed for cell in table.cells.values())


LATEX_SPECIALS = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                  # the symbols of titles and labels, as math (pdfLaTeX reads no Unicode maths)
                  "±": r"$\pm$", "×": r"$\times$", "Δ": r"$\Delta$", "≈": r"$\approx$", "→": r"$\to$"}


def latex_escape(text: str) -> str:
    return "".join(LATEX_SPECIALS.get(ch, ch) for ch in text)


def latex_cell(cell: Cell, mark: str = "") -> str:
    """'$85.8 \\pm 1.3$ {\\scriptsize [82.6, 89.0] (n=3)}'; `mark` 'best' sets the number in bold, 'tied' puts ≈
    before it (the heatmap's marks)."""
    notes = cell.notes()
    if not cell.n:
        return "---" + (f" ({', '.join(notes)})" if notes else "")
    number = f"{cell.mean:.1f}" + (f" \\pm {cell.std:.1f}" if cell.n > 1 else "")
    number = {"best": f"\\mathbf{{{number}}}", "tied": f"\\approx {number}"}.get(mark, number)
    interval = f"{cell.interval_text()} " if cell.n > 1 else ""
    return f"${number}$ {{\\scriptsize {interval}({', '.join([f'n={cell.n}'] + notes)})}}"


LATEX_COLLAPSE_LEGEND = ("; collapsed k/n: k of the n runs collapsed (embedding std below the threshold "
                         "$\\times 1/\\sqrt{d}$)")


def to_latex(table: CellTable, text: Callable[[Any, Any], str] | None = None, caption: str | None = None,
             extra_cols: list[str] | None = None) -> str:
    """A booktabs table: the column axis as a spanning title over the column labels, the row axis
    heading the first column (given as the column labels' name, so that Styler puts it on their row).
    Cells are the cells' mean ± std [interval] (n) unless `text(row, col)` (LaTeX) says otherwise;
    `extra_cols` are labels of columns after the table's own (text() is asked for them by label)."""
    text = text or (lambda row, col: latex_cell(table.cell(row, col)))
    extra = extra_cols or []
    width = len(table.cols) + len(extra)
    columns = pd.MultiIndex.from_arrays(
        [[latex_escape(axis_title(table.col_axis))] * len(table.cols) + [""] * len(extra),
         [latex_escape(table.col_label(c)) for c in table.cols] + [latex_escape(label) for label in extra]],
        names=[None, latex_escape(axis_title(table.row_axis))],
    )
    body = pd.DataFrame([[text(row, col) for col in [*table.cols, *extra]] for row in table.rows],
                        index=[latex_escape(table.row_label(row)) for row in table.rows], columns=columns)
    if caption is None:
        legend = LATEX_COLLAPSE_LEGEND if any_collapsed(table) else ""
        caption = f"{latex_escape(table.title)}: {LATEX_INTERVAL}; --- no completed run{legend}."
    latex = body.style.to_latex(hrules=True, position="t", position_float="centering", caption=caption,
                                column_format="l" + "c" * width, multicol_align="c")
    lines = latex.splitlines()
    spanning_title = lines.index(r"\toprule") + 1
    lines.insert(spanning_title + 1, f"\\cmidrule(lr){{2-{len(table.cols) + 1}}}")  # Styler has no rule for a column span
    return "\n".join(lines) + "\n"


COMPARISON_COLUMNS = ["reference", "delta", "delta_std", "pairs", "p_t", "p_sign_flip", "p_t_holm", "p_sign_flip_holm"]


def to_frame(tables: list[CellTable]) -> pd.DataFrame:
    """Long format, one line per cell (empty ones too): facet axes, row, column, mean, std, the 95 % interval
    (ci_low, ci_high), n, failed, missing, `collapsed` (runs of the cell that collapsed) when the results have
    the collapse diagnostic; where the tables have a reference column, each cell's paired comparison with its
    row's reference cell (Δ of the means, std and number of the paired differences, the raw and Holm-corrected
    p of the paired t-test and of the sign-flip test); and vs_best: best | tied | differs | not enough seeds."""
    diagnosed = any_diagnosed(cell for table in tables for cell in table.cells.values())
    records = []
    for table in tables:
        for row in table.rows:
            for col in table.cols:
                cell = table.cell(row, col)
                low, high = cell.interval
                record = {axis: format_value(value) for axis, value in table.facet.values}
                record.update({table.row_axis: table.row_label(row), table.col_axis: table.col_label(col), "metric": table.metric,
                               "mean": cell.mean, "std": cell.std, "ci_low": low, "ci_high": high, "n": cell.n,
                               "failed": cell.failed, "missing": cell.missing})
                if diagnosed:
                    record["collapsed"] = cell.collapsed
                if table.reference is not None:
                    record.update(comparison_record(table, row, col))
                record["vs_best"] = table.best_mark(row, col)
                records.append(record)
    return pd.DataFrame(records)


def comparison_record(table: CellTable, row: Any, col: Any) -> dict[str, Any]:
    delta = table.delta(row, col)
    test = delta.comparison.test if delta.comparison is not None else None
    nan = float("nan")
    return {"reference": table.col_label(table.reference), "delta": delta.value, "delta_std": delta.std,
            "pairs": test.n if test else 0, "p_t": test.t_p if test else nan, "p_sign_flip": test.sign_flip_p if test else nan,
            "p_t_holm": delta.comparison.t_p_holm if test else nan,
            "p_sign_flip_holm": delta.comparison.sign_flip_p_holm if test else nan}


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


# ------------------------------------------------------------------------------ Δ from the reference


def delta_title(table: CellTable) -> str:
    facet = f" ({table.facet.label})" if table.facet.values else ""
    return f"Δ {metric_label(table.metric)} from {table.col_label(table.reference)}, per {table.row_axis}{facet}"


def delta_view(table: CellTable) -> CellTable:
    """The same rows and columns for the Δ writers (texts come from table.delta(); no cells of its own)."""
    return CellTable(delta_title(table), table.row_axis, table.col_axis, table.rows, table.cols, {}, table.metric,
                     table.facet, table.row_label, table.col_label)


def tested(tables: list[CellTable]) -> int:
    """How many comparisons with the reference the tables hold that have ≥ 2 pairs (the Holm family's size)."""
    return sum(c.testable for t in tables for c in t.versus_reference.values())


def delta_legend(family: int, collapsed: bool) -> str:
    return ("Δ: the cell's mean minus the mean of its row's reference cell, ± the std of the per-seed differences "
            "(seeds are paired); p: paired t-test, flip: exact sign-flip permutation test, both Holm-corrected over "
            f"the {family} comparisons with the reference in this report; 'not enough seeds': fewer than 2 shared seeds"
            + ("; 'collapsed': the cell or its reference has a collapsed run." if collapsed else "."))


def delta_markdown(table: CellTable, family: int) -> str:
    note = f"\n({table.reference_note})\n" if table.reference_note else ""
    legend = delta_legend(family, any_collapsed(table))
    return to_markdown(delta_view(table), lambda row, col: table.delta(row, col).text(), legend) + note


def delta_latex(table: CellTable, family: int) -> str:
    view = delta_view(table)
    caption = (f"{latex_escape(view.title)}: each row's mean minus its mean in the reference column, $\\pm$ the std "
               "over seeds of the per-seed differences; p: paired $t$-test, flip: exact sign-flip test, both "
               f"Holm-corrected over the {family} comparisons with the reference; --- no value.")
    return to_latex(view, lambda row, col: table.delta(row, col).latex(), caption)


def delta_html(table: CellTable) -> str:
    state_class = {"reference": "ok", "ok": "ok", "collapsed": "collapsed", "missing": "missing", "failed": "failed"}
    rows = [(table.row_label(row), [(table.delta(row, col).text(), state_class[table.delta(row, col).state])
                                    for col in table.cols]) for row in table.rows]
    return html_table(f"{axis_title(table.row_axis)} \\ {axis_title(table.col_axis)}",
                      [table.col_label(c) for c in table.cols], rows, delta_title(table))


def report_markdown(grid: GridFrame, header: str, paragraphs: list[str], body: str, seeds: str = "") -> str:
    """A report's Markdown file: title, header, the findings, the tables, and (when asked) the seeds needed."""
    from ablate.report.findings import findings_markdown

    return f"# {grid.grid}\n\n{header}\n\n{findings_markdown(paragraphs)}" + body + (f"\n{seeds}" if seeds else "")


# ------------------------------------------------------------------------------- the report type


class TableReport:
    """Table 1 (method × colour strength), or the pivot of any two axes given as --rows/--cols, as .md,
    .tex and .csv with a bar figure, one table per facet, each followed by every column's paired
    comparison with the reference column (--baseline LABEL, else the first).

    Chosen by `--all` for a Table 1 grid, or when --rows/--cols are given. On a grid with a method
    axis, --cols alone is the column axis of the methods report (ablate.report.methods), not half a pivot.
    """

    def applies(self, grid: GridFrame, options: ReportOptions) -> bool:
        return wants_pivot(grid, options) or table1_applies(grid)

    def tables(self, grid: GridFrame, options: ReportOptions) -> tuple[list[CellTable], str, str]:
        """(tables, file stem, section title) of the pivot or Table 1 the options ask for."""
        metric, rows, cols = options.metric, options.rows, options.cols
        if wants_pivot(grid, options):
            if not (rows and cols):
                raise ReportError("a pivot needs both --rows AXIS and --cols AXIS")
            check_axis(grid, rows, "--rows")
            check_axis(grid, cols, "--cols")
            return pivot(grid, rows, cols, metric), slug(f"pivot-{rows}-by-{cols}-{metric}"), f"{metric} by {rows} × {cols}"
        if not table1_applies(grid):
            raise ReportError(f"grid {grid.grid!r} varies neither the colour strength, AutoAugment nor the method of "
                              "colour-distorted runs (Table 1); give --rows AXIS --cols AXIS for a pivot table")
        return table1(grid, metric), "table1", "Table 1: colour distortion strength"

    def baseline_columns(self, grid: GridFrame, options: ReportOptions) -> tuple[str, list[str]]:
        """What --baseline can name here: (how the report is called, its column labels)."""
        tables, stem, _ = self.tables(grid, options)
        labels = list(dict.fromkeys(t.col_label(c) for t in tables for c in t.cols))
        name = "Table 1" if stem == "table1" else "the pivot"
        return f"{name} ({tables[0].col_axis if tables else options.cols})", labels

    def section(self, grid: GridFrame, out: Path, options: ReportOptions) -> Section:
        from ablate.report.bars import draw_bars
        from ablate.report.findings import report_findings, seeds_needed_section

        tables, stem, title = self.tables(grid, options)
        attach_comparisons(tables, options.baseline)
        section = Section(title, tables_first=True)
        header = grid.header()
        facets = [t.facet for t in tables if t.facet.values]
        if facets:
            section.note = f"One table per value of {', '.join(a for a, _ in facets[0].values)} (not averaged)."
        for table in tables:
            files = save_figure(draw_bars(table, table.title, header), out, f"{stem}{table.facet.suffix}")
            section.files += files
            section.figures.append((files[0], table.title))
        family = tested(tables)
        section.findings = report_findings(tables)
        seeds = seeds_needed_section(tables, options.seeds_needed, "reference") if options.seeds_needed else None
        body = "\n".join(to_markdown(t) + "\n" + delta_markdown(t, family) for t in tables)
        section.files.append(write_text(out / f"{stem}.md", report_markdown(grid, header, section.findings, body,
                                                                             seeds.markdown if seeds else "")))
        section.files.append(write_text(out / f"{stem}.tex", f"% {header}\n% needs \\usepackage{{booktabs}}\n"
                                        + "\n".join(to_latex(t) + "\n" + delta_latex(t, family) for t in tables)))
        section.files.append(write_text(out / f"{stem}.csv", to_frame(tables).to_csv(index=False)))
        section.tables += [html for t in tables for html in (to_html(t), delta_html(t))]
        section.seeds_needed = seeds.lines if seeds else []
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
