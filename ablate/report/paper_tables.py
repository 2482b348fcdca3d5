"""Tables 3, 4, 5, 7 and 8 of SimCLR (Chen et al., ICML 2020) in the paper's layout, the paper's numbers beside ablate's.

Each table is a report type (registered in ablate.report.build.REPORT_TYPES) that `--all` draws when the
grid has what it lays out; each writes <stem>.{md,tex,csv}, a bar figure per facet (ablate.report.bars)
and a section of index.html. ablate's cells read mean ± std [95 % interval] (n) over seeds, as in the
other reports; a cell without a completed run reads "—" with its failed / missing runs, never left out.
The paper's numbers (ImageNet, ResNet-50, except where said) stand in their own column or rows,
labelled as the paper's, never mixed into ablate's cells; in the CSV, the column `paper` holds the
paper's number for the cell where the paper has one.

    table3  What h and g(h) know (§4.2, Table 3): rows are the transformation probes, columns the random
            guess, h and g(h) (metrics transform_probe_<name>_chance / _h / _z). Paper, random / h / g(h):
            colour vs grayscale 80 / 99.3 / 97.4; rotation 25 / 67.6 / 25.6; original vs corrupted
            50 / 99.5 / 59.6; original vs Sobel filtered 50 / 96.6 / 56.3. Each column is compared with h.
    table4  Losses (§5.1, Table 4): columns Margin, NT-Logi., Margin (sh), NT-Logi. (sh), NT-Xent
            (axes method.loss × method.semi_hard; sh = semi-hard negative mining). Paper: 50.9, 51.6,
            57.5, 57.9, 63.9. Each column is compared with NT-Xent.
    table5  ℓ2 normalisation and temperature (§5.1, Table 5): rows (ℓ2 norm?, τ), columns entropy,
            contrastive accuracy and top-1 (metrics contrastive_entropy, contrastive_top1 where the runs
            have them, and linear_top1). Paper: yes 0.05: 1.0 / 90.5 / 59.7; yes 0.1: 4.5 / 87.8 / 64.4;
            yes 0.5: 8.2 / 68.2 / 60.7; yes 1: 8.3 / 59.1 / 58.0; no 10: 0.5 / 91.7 / 57.2;
            no 100: 0.5 / 92.1 / 57.0. The findings rank the rows by top-1.
    table7  Fine-tuning with few labels (§6, Table 7): rows the supervised baseline trained from scratch on
            the same subset and each method fine-tuned, columns top-1 and top-5 per label fraction (metrics
            scratch_<p>_top1/_top5, finetune_<p>_top1/_top5). Paper, top-1 1 % / 10 %, top-5 1 % / 10 %:
            supervised baseline 25.4 / 56.4, 48.4 / 80.4; SimCLR 48.3 / 65.6, 75.5 / 87.8. Each method is
            compared with the baseline, fraction by fraction.
    table8  Transfer (§6, Table 8, Appendix B.8): rows linear evaluation and fine-tuned (per method),
            columns the grid's transfer targets (metrics transfer_<label>_linear_top1 / _finetune_top1;
            a second table for top-5 where the runs have it). Paper numbers: CIFAR-10 / CIFAR-100 of the
            ResNet-50 (1×) version of Table 8 in Appendix B.8 (Table 8 itself is ResNet-50 (4×)): SimCLR
            linear evaluation 90.6 / 71.6, fine-tuned 97.7 / 85.9, placed under the targets whose dataset
            is cifar10 / cifar100. Fine-tuning is compared with linear evaluation, target by target.

Comparisons are paired over seeds and Holm-corrected over the report (ablate.report.tables.attach_comparisons,
ablate.report.findings). The paper's numbers are quoted for the ImageNet-scale setting; a CPU-sized grid
reproduces the orderings at best, not the numbers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import pandas as pd

from ablate.report.data import (
    MISSING, Cell, Facet, GridFrame, ReportError, collect_cells, format_value, method_label, method_sort_key,
    metric_columns, metric_label, split_facets, varying_axes,
)
from ablate.report.files import save_figure, write_text
from ablate.report.html import Section
from ablate.report.tables import (
    INTERVAL_LEGEND, LATEX_INTERVAL, CellTable, attach_comparisons, delta_html, delta_latex, delta_markdown, html_table,
    latex_cell, latex_escape, report_markdown, tested, to_frame, to_latex, to_markdown,
)

if TYPE_CHECKING:
    from ablate.report.build import ReportOptions

PAPER = "paper (ImageNet, ResNet-50)"


# --------------------------------------------------------------------------------- a table with the paper


@dataclass
class PaperTable:
    """ablate's cells and the paper's numbers for the same rows and columns.

    `paper[row][col]` is the paper's number for ablate's cell (row, col). Shown as rows under ablate's
    (`paper_rows`: Tables 4, 7, 8, where the paper's table has a row per method) or as one column after
    them ("a / b / c", Tables 3 and 5, where it has a row per setting). `leading` are columns before the
    cells that describe the row (Table 5's τ)."""

    cells: CellTable
    paper: dict[Any, dict[Any, float]] = field(default_factory=dict)
    paper_rows: bool = True
    paper_label: str = PAPER
    leading: list[tuple[str, Callable[[Any], str]]] = field(default_factory=list)
    row_fields: Callable[[Any], dict[str, Any]] | None = None  # extra CSV columns from a row key (Table 5)

    def paper_value(self, row: Any, col: Any) -> float | None:
        return self.paper.get(row, {}).get(col)

    @property
    def shown_paper_rows(self) -> list[Any]:
        """ablate's rows that have a paper row (in ablate's order), when the paper is shown as rows."""
        if not self.paper_rows:
            return []
        return [row for row in self.cells.rows if any(self.paper_value(row, col) is not None for col in self.cells.cols)]

    @property
    def paper_column(self) -> bool:
        return not self.paper_rows and any(self.paper_value(r, c) is not None for r in self.cells.rows for c in self.cells.cols)

    def paper_column_title(self) -> str:
        return f"{self.paper_label}: " + " / ".join(self.cells.col_label(col) for col in self.cells.cols)

    def paper_column_text(self, row: Any) -> str:
        if not any(self.paper_value(row, col) is not None for col in self.cells.cols):
            return MISSING
        return " / ".join(number(self.paper_value(row, col)) for col in self.cells.cols)


def number(value: float | None) -> str:
    return MISSING if value is None else f"{value:.1f}"  # as the paper prints them (80.0 written 80 there)


# Layout of the written table: rows ("ablate", row) then ("paper", row); columns ("lead", i), ("cell", col), ("paper",).


def view_rows(table: PaperTable) -> list[tuple[str, Any]]:
    return [("ablate", row) for row in table.cells.rows] + [("paper", row) for row in table.shown_paper_rows]


def view_cols(table: PaperTable) -> list[tuple]:
    cols = [("lead", i) for i in range(len(table.leading))] + [("cell", col) for col in table.cells.cols]
    return cols + ([("paper",)] if table.paper_column else [])


def view(table: PaperTable) -> CellTable:
    """The rows and columns as written (for to_markdown / to_latex; the texts come from view_text)."""
    cells = table.cells

    def row_label(key: tuple[str, Any]) -> str:
        kind, row = key
        return cells.row_label(row) if kind == "ablate" else f"{table.paper_label}: {cells.row_label(row)}"

    def col_label(key: tuple) -> str:
        if key[0] == "lead":
            return table.leading[key[1]][0]
        return cells.col_label(key[1]) if key[0] == "cell" else table.paper_column_title()

    return CellTable(cells.title, cells.row_axis, cells.col_axis, view_rows(table), view_cols(table), {}, cells.metric,
                     cells.facet, row_label=row_label, col_label=col_label)


def view_text(table: PaperTable, latex: bool = False) -> Callable[[tuple, tuple], str]:
    escape = latex_escape if latex else (lambda text: text)

    def text(row_key: tuple[str, Any], col_key: tuple) -> str:
        kind, row = row_key
        if col_key[0] == "lead":
            return escape(table.leading[col_key[1]][1](row)) if kind == "ablate" else ""
        if col_key[0] == "paper":
            return escape(table.paper_column_text(row)) if kind == "ablate" else ""
        col = col_key[1]
        if kind == "paper":
            return "---" if latex and table.paper_value(row, col) is None else escape(number(table.paper_value(row, col)))
        cell = table.cells.cell(row, col)
        return latex_cell(cell) if latex else cell.text()

    return text


def paper_note(table: PaperTable) -> str:
    if table.shown_paper_rows or table.paper_column:
        return (f"Rows or columns marked '{table.paper_label}' quote the paper (its setting, not this grid's); "
                "'—' there: the paper has no number for that cell.")
    return ""


def table_markdown(table: PaperTable) -> str:
    legend = " ".join(part for part in (INTERVAL_LEGEND, paper_note(table)) if part)
    return to_markdown(view(table), view_text(table), legend)


# Symbols of these tables' labels that latex_escape leaves as they are, as math (pdfLaTeX reads no Unicode maths)
LATEX_SYMBOLS = {"ℓ": r"$\ell$", "τ": r"$\tau$", "°": r"$^\circ$"}


def table_latex(table: PaperTable) -> str:
    caption = f"{latex_escape(table.cells.title)}: {LATEX_INTERVAL}; --- no completed run (or no paper number)."
    return to_latex(view(table), view_text(table, latex=True), caption)


def table_html(table: PaperTable) -> str:
    shown = view(table)
    text = view_text(table)

    def state(row_key: tuple[str, Any], col_key: tuple) -> str:
        if row_key[0] == "paper" or col_key[0] != "cell":
            return "ok"
        return table.cells.cell(row_key[1], col_key[1]).state

    rows = [(shown.row_label(r), [(text(r, c), state(r, c)) for c in shown.cols]) for r in shown.rows]
    cells = table.cells
    return html_table(f"{cells.row_axis} \\ {cells.col_axis}", [shown.col_label(c) for c in shown.cols], rows, cells.title)


def tables_frame(tables: list[PaperTable]) -> pd.DataFrame:
    """to_frame's long format (one line per cell of ablate's, empty ones too) with the row's own fields where the
    table has them (Table 5: l2_normalize, temperature) and the paper's number for the cell (`paper`, NaN: none)."""
    frame = to_frame([t.cells for t in tables])
    extra: list[dict[str, Any]] = []
    for table in tables:
        for row in table.cells.rows:
            for col in table.cells.cols:
                fields = table.row_fields(row) if table.row_fields else {}
                value = table.paper_value(row, col)
                extra.append(fields | {"paper": float("nan") if value is None else value})
    extra_frame = pd.DataFrame(extra, index=frame.index)
    return pd.concat([frame, extra_frame], axis=1)


def write_section(grid: GridFrame, out: Path, stem: str, title: str, tables: list[PaperTable], findings: list[str],
                  note: str, deltas: list[CellTable] = (), figures: list[CellTable] | None = None) -> Section:
    """stem.{md,tex,csv}, a bar figure per table (or per table of `figures`) and the section of index.html;
    `deltas` are tables whose Δ from their reference column follows (Table 3: each column against h)."""
    from ablate.report.bars import draw_bars

    header = grid.header()
    section = Section(title, tables_first=True, note=note, findings=findings)
    for table in figures if figures is not None else [t.cells for t in tables]:
        files = save_figure(draw_bars(table, table.title, header), out, f"{stem}{table.facet.suffix}")
        section.files += files
        section.figures.append((files[0], table.title))
    family = tested(list(deltas))
    body = (f"{note}\n\n" if note else "") + "\n".join(table_markdown(t) for t in tables)
    body += "".join("\n" + delta_markdown(t, family) for t in deltas)
    section.files.append(write_text(out / f"{stem}.md", report_markdown(grid, header, findings, body)))
    latex = "\n".join(table_latex(t) for t in tables) + "".join("\n" + delta_latex(t, family) for t in deltas)
    latex = "".join(LATEX_SYMBOLS.get(ch, ch) for ch in latex)
    section.files.append(write_text(out / f"{stem}.tex", f"% {header}\n% needs \\usepackage{{booktabs}}\n" + latex))
    section.files.append(write_text(out / f"{stem}.csv", tables_frame(tables).to_csv(index=False)))
    section.tables += [table_html(t) for t in tables] + [delta_html(t) for t in deltas]
    return section


def facet_suffix(facet: Facet) -> str:
    return f" ({facet.label})" if facet.values else ""


def metric_cells(part: pd.DataFrame, layout: dict[tuple[Any, Any], str]) -> dict[tuple[Any, Any], Cell]:
    """Cells whose metric differs by cell: layout maps (row, col) to the metric read there (Tables 3, 5, 7, 8)."""
    cells = {}
    for (row, col), metric in layout.items():
        found = collect_cells(part, metric, lambda run: row, lambda run: col)
        cells[(row, col)] = found.get((row, col), Cell(planned=not part.empty))
    return cells


def completed_metrics(grid: GridFrame, pattern: re.Pattern[str]) -> list[re.Match[str]]:
    return [match for name in metric_columns(grid) if (match := pattern.fullmatch(name))]


def findings_of(tables: list[CellTable]) -> list[str]:
    """The comparisons with each table's reference column, in words (one paragraph per table)."""
    from ablate.report.findings import reference_text, sign_flip_note

    paragraphs = []
    for table in tables:
        text = " ".join(s for s in (reference_text(table), sign_flip_note(table)) if s)
        if text:
            paragraphs.append(facet_suffix(table.facet).strip(" ()") + (": " if table.facet.values else "") + text)
    return paragraphs


# ------------------------------------------------------------------------------------------- Table 3

PROBE = re.compile(r"transform_probe_(?P<probe>\w+?)_(?P<column>chance|h|z)")
PROBE_ORDER = ("color", "rotation", "noise", "sobel")  # ablate.config.specs.TRANSFORM_PROBES, the paper's rows
PROBE_LABELS = {"color": "colour vs grayscale", "rotation": "rotation (0, 90, 180, 270°)",
                "noise": "original vs noise-corrupted", "sobel": "original vs Sobel-filtered"}
PROBE_COLUMNS = ("chance", "h", "z")
PROBE_COLUMN_LABELS = {"chance": "random guess", "h": "h", "z": "g(h)"}
TABLE3_PAPER = {"color": {"chance": 80.0, "h": 99.3, "z": 97.4}, "rotation": {"chance": 25.0, "h": 67.6, "z": 25.6},
                "noise": {"chance": 50.0, "h": 99.5, "z": 59.6}, "sobel": {"chance": 50.0, "h": 96.6, "z": 56.3}}


def probe_key(probe: str) -> tuple:
    return (PROBE_ORDER.index(probe), "") if probe in PROBE_ORDER else (len(PROBE_ORDER), probe)


def table3(grid: GridFrame) -> list[PaperTable]:
    found = completed_metrics(grid, PROBE)
    probes = sorted({m["probe"] for m in found}, key=probe_key)
    columns = [c for c in PROBE_COLUMNS if any(m["column"] == c for m in found)]
    tables = []
    for facet, part in split_facets(grid.frame, ()):
        layout = {(p, c): f"transform_probe_{p}_{c}" for p in probes for c in columns}
        title = "Table 3: accuracy (%) of linear probes predicting the transformation applied" + facet_suffix(facet)
        cells = CellTable(title, "what to predict", "probe on", probes, columns, metric_cells(part, layout),
                          "transform probes", facet, row_label=lambda p: PROBE_LABELS.get(p, p),
                          col_label=lambda c: PROBE_COLUMN_LABELS[c],
                          name_of=lambda p, c: f"{PROBE_COLUMN_LABELS[c]} on {PROBE_LABELS.get(p, p)}")
        tables.append(PaperTable(cells, TABLE3_PAPER, paper_rows=False))
    attach_comparisons([t.cells for t in tables], "h")
    return tables


class Table3Report:
    """Table 3: what h and g(h) know about the transformation applied (eval.transform_probes)."""

    def applies(self, grid: GridFrame, options: ReportOptions) -> bool:
        return any(m["column"] in ("h", "z") for m in completed_metrics(grid, PROBE))

    def section(self, grid: GridFrame, out: Path, options: ReportOptions) -> Section:
        if not self.applies(grid, options):
            raise ReportError(f"grid {grid.grid!r} has no transform_probe_* metric (Table 3: set eval.transform_probes)")
        tables = table3(grid)
        note = ("Each column is compared with h: Δ of the means, paired over seeds. random guess: the share of the "
                "probe's most frequent label in its test set.")
        return write_section(grid, out, "table3", "Table 3: what h and g(h) know", tables,
                             findings_of([t.cells for t in tables]), note, deltas=[t.cells for t in tables])


# ------------------------------------------------------------------------------------------- Table 4

LOSS, SEMI_HARD = "method.loss", "method.semi_hard"
LOSS_COLUMNS = [("margin_triplet", False), ("nt_logistic", False), ("margin_triplet", True), ("nt_logistic", True),
                ("nt_xent", False), ("nt_xent", True)]  # the paper's order; NT-Xent (sh) is not in the paper
LOSS_LABELS = {"margin_triplet": "Margin", "nt_logistic": "NT-Logi.", "nt_xent": "NT-Xent"}
TABLE4_PAPER = {("margin_triplet", False): 50.9, ("nt_logistic", False): 51.6, ("margin_triplet", True): 57.5,
                ("nt_logistic", True): 57.9, ("nt_xent", False): 63.9}


def loss_label(key: tuple[str, bool]) -> str:
    loss, semi_hard = key
    return LOSS_LABELS.get(loss, loss) + (" (sh)" if semi_hard else "")


def loss_key(key: tuple[str, bool]) -> tuple:
    return (LOSS_COLUMNS.index(key), "") if key in LOSS_COLUMNS else (len(LOSS_COLUMNS), str(key))


def loss_runs(grid: GridFrame) -> pd.DataFrame:
    """The runs that have a loss setting (SimCLR's), semi_hard read as False where a result predates it."""
    frame = grid.frame
    if LOSS not in frame:
        return frame.iloc[0:0]
    frame = frame[frame[LOSS].notna()].copy()
    frame[SEMI_HARD] = frame[SEMI_HARD].where(frame[SEMI_HARD].notna(), False).astype(bool) if SEMI_HARD in frame else False
    return frame


def table4(grid: GridFrame, metric: str) -> list[PaperTable]:
    tables = []
    for facet, part in split_facets(loss_runs(grid), ("method", LOSS, SEMI_HARD)):
        cells = collect_cells(part, metric, lambda run: run["method"], lambda run: (run[LOSS], bool(run[SEMI_HARD])))
        rows = sorted({key[0] for key in cells}, key=method_sort_key)
        cols = sorted({key[1] for key in cells}, key=loss_key)
        title = f"Table 4: {metric_label(metric)} by contrastive loss" + facet_suffix(facet)
        table = CellTable(title, "method", "loss", rows, cols, cells, metric, facet, row_label=method_label,
                          col_label=loss_label, name_of=lambda row, col: f"{method_label(row)} with {loss_label(col)}")
        paper = {"simclr": TABLE4_PAPER} if metric == "linear_top1" else {}
        tables.append(PaperTable(table, paper))
    attach_comparisons([t.cells for t in tables], loss_label(("nt_xent", False)))
    return tables


class Table4Report:
    """Table 4: NT-Xent against NT-Logistic and the margin triplet loss, with and without semi-hard negatives."""

    def applies(self, grid: GridFrame, options: ReportOptions) -> bool:
        return bool({LOSS, SEMI_HARD} & set(varying_axes(loss_runs(grid), ())))

    def section(self, grid: GridFrame, out: Path, options: ReportOptions) -> Section:
        from ablate.report.findings import report_findings

        if not self.applies(grid, options):
            raise ReportError(f"grid {grid.grid!r} varies neither method.loss nor method.semi_hard (Table 4)")
        tables = table4(grid, options.metric)
        note = "sh: semi-hard negative mining. Each column is compared with NT-Xent (the first column where there is none)."
        cells = [t.cells for t in tables]
        return write_section(grid, out, "table4", "Table 4: contrastive losses", tables, report_findings(cells), note,
                             deltas=cells)


# ------------------------------------------------------------------------------------------- Table 5

L2, TEMPERATURE = "method.l2_normalize", "method.temperature"
TABLE5_METRICS = (("contrastive_entropy", "entropy"), ("contrastive_top1", "contrastive acc."))
TABLE5_PAPER = {(True, 0.05): (1.0, 90.5, 59.7), (True, 0.1): (4.5, 87.8, 64.4), (True, 0.5): (8.2, 68.2, 60.7),
                (True, 1.0): (8.3, 59.1, 58.0), (False, 10.0): (0.5, 91.7, 57.2), (False, 100.0): (0.5, 92.1, 57.0)}


def temperature_runs(grid: GridFrame) -> pd.DataFrame:
    """The runs with a temperature and an ℓ2 setting (SimCLR's), ℓ2 read as on where a result predates the field."""
    frame = grid.frame
    if TEMPERATURE not in frame or "method" not in frame:
        return frame.iloc[0:0]
    frame = frame[frame["method"].eq("simclr") & frame[TEMPERATURE].notna()].copy()
    frame[L2] = frame[L2].where(frame[L2].notna(), True).astype(bool) if L2 in frame else True
    return frame


def setting_label(key: tuple[bool, float]) -> str:
    return "yes" if key[0] else "no"


def table5(grid: GridFrame, metric: str) -> tuple[list[PaperTable], list[CellTable]]:
    """The tables as the paper lays them out, and the top-1 column alone per facet (what the findings rank)."""
    present = set(metric_columns(grid))
    columns = [(name, label) for name, label in TABLE5_METRICS if name in present] + [(metric, metric_label(metric))]
    labels = dict(columns)
    tables, top1 = [], []
    for facet, part in split_facets(temperature_runs(grid), ("method", L2, TEMPERATURE)):
        settings = sorted({(bool(l2), float(t)) for l2, t in zip(part[L2], part[TEMPERATURE])},
                          key=lambda key: (not key[0], key[1]))
        layout = {(s, name): name for s in settings for name, _ in columns}
        title = f"Table 5: ℓ2 normalisation and temperature τ{facet_suffix(facet)}"
        cells = CellTable(title, "ℓ2 norm?", "measure", settings, [name for name, _ in columns], metric_cells_by_setting(part, layout),
                          metric, facet, row_label=setting_label, col_label=lambda name: labels[name])
        paper = {}
        if metric == "linear_top1":
            for setting, numbers in TABLE5_PAPER.items():
                by_name = dict(zip(("contrastive_entropy", "contrastive_top1", "linear_top1"), numbers))
                paper[setting] = {name: by_name[name] for name, _ in columns}
        tables.append(PaperTable(cells, paper, paper_rows=False, leading=[("τ", lambda key: format_value(key[1]))],
                                 row_fields=lambda key: {"l2_normalize": key[0], "temperature": key[1]}))
        top1.append(CellTable(f"{metric_label(metric)} by ℓ2 normalisation and τ{facet_suffix(facet)}", "ℓ2, τ", "measure",
                              settings, [metric], {(s, metric): cells.cell(s, metric) for s in settings}, metric, facet,
                              row_label=lambda key: f"ℓ2 {setting_label(key)}, τ = {format_value(key[1])}",
                              col_label=lambda name: labels[name],
                              name_of=lambda key, name: f"ℓ2 {setting_label(key)}, τ = {format_value(key[1])}"))
    attach_comparisons(top1, None, versus_reference=False)
    return tables, top1


def metric_cells_by_setting(part: pd.DataFrame, layout: dict[tuple[Any, Any], str]) -> dict[tuple[Any, Any], Cell]:
    """metric_cells, each cell read from the runs of its (ℓ2, τ) setting."""
    cells = {}
    for (setting, col), metric in layout.items():
        runs = part[(part[L2].astype(bool) == setting[0]) & (part[TEMPERATURE].astype(float) == setting[1])]
        cells.update(metric_cells(runs, {(setting, col): metric}))
    return cells


class Table5Report:
    """Table 5: ℓ2 normalisation on / off × temperature, with the contrastive task's entropy and accuracy."""

    def applies(self, grid: GridFrame, options: ReportOptions) -> bool:
        return bool({L2, TEMPERATURE} & set(varying_axes(temperature_runs(grid), ())))

    def section(self, grid: GridFrame, out: Path, options: ReportOptions) -> Section:
        from ablate.report.findings import report_findings

        if not self.applies(grid, options):
            raise ReportError(f"grid {grid.grid!r} varies neither method.l2_normalize nor method.temperature (Table 5)")
        tables, top1 = table5(grid, options.metric)
        note = ("entropy: of the softmax over the other view's N embeddings; contrastive acc.: share of anchors whose "
                "positive is the most similar of them (both on test images' two views, as the paper's code measures "
                "them, where the runs measured them).")
        return write_section(grid, out, "table5", "Table 5: ℓ2 normalisation and temperature", tables,
                             report_findings(top1), note, figures=top1)


# ------------------------------------------------------------------------------------------- Table 7

FINETUNE = re.compile(r"(?P<kind>finetune|scratch)_(?P<fraction>[0-9p]+)pct_(?P<top>top1|top5)")
SCRATCH = ("scratch", None)  # the row of the supervised baseline trained from scratch on the subset
TABLE7_PAPER = {SCRATCH: {("top1", 1.0): 25.4, ("top1", 10.0): 56.4, ("top5", 1.0): 48.4, ("top5", 10.0): 80.4},
                ("finetune", "simclr"): {("top1", 1.0): 48.3, ("top1", 10.0): 65.6, ("top5", 1.0): 75.5, ("top5", 10.0): 87.8}}


def percent_of(fraction: str) -> float:
    """'1' → 1.0, '0p5' → 0.5 (the metric name's label fraction in percent, '.' written 'p')."""
    return float(fraction.replace("p", "."))


def fraction_column_label(col: tuple[str, float]) -> str:
    return f"{'top-1' if col[0] == 'top1' else 'top-5'}, {col[1]:g} %"


def table7_row_label(row: tuple[str, Any]) -> str:
    return "Supervised baseline (from scratch)" if row == SCRATCH else f"{method_label(row[1])} (fine-tuned)"


def table7(grid: GridFrame) -> tuple[list[PaperTable], list[CellTable]]:
    """The tables in the paper's layout, and per facet the same cells transposed (fractions × rows) so that each
    method is compared with the baseline column by column."""
    found = completed_metrics(grid, FINETUNE)
    names = {(m["kind"], (m["top"], percent_of(m["fraction"]))): m.string for m in found}
    cols = sorted({col for _, col in names}, key=lambda col: (col[0], col[1]))
    frame = grid.frame if "method" in grid.frame else grid.frame.assign(method="simclr")
    tables, versus = [], []
    for facet, part in split_facets(frame, ("method",)):
        methods = sorted(set(part["method"].dropna()), key=method_sort_key)
        # The baseline does not depend on the pre-training (same subset, recipe, fresh weights): read from the first
        # method's runs that have it, so that a seed is not counted once per method.
        scratch_from = next((m for m in methods if any(k == "scratch" for k, _ in names)), None)
        rows = [SCRATCH] if any(kind == "scratch" for kind, _ in names) else []
        rows += [("finetune", m) for m in methods]
        cells = {}
        for row in rows:
            runs = part[part["method"] == (scratch_from if row == SCRATCH else row[1])]
            for col in cols:
                # "": no such metric (this fraction has no value of this kind): the cell shows its runs as empty
                cells.update(metric_cells(runs, {(row, col): names.get((row[0], col), "")}))
        title = "Table 7: fine-tuning with few labels, top-1 and top-5 (%)" + facet_suffix(facet)
        table = CellTable(title, "method", "label fraction", rows, cols, cells, "fine-tuning top-1 / top-5", facet,
                          row_label=table7_row_label, col_label=fraction_column_label)
        tables.append(PaperTable(table, TABLE7_PAPER))
        versus.append(CellTable(f"Against the supervised baseline{facet_suffix(facet)}", "label fraction", "method", cols,
                                rows, {(col, row): cell for (row, col), cell in cells.items()}, table.metric, facet,
                                row_label=fraction_column_label, col_label=table7_row_label))
    attach_comparisons(versus, table7_row_label(SCRATCH))
    return tables, versus


class Table7Report:
    """Table 7: each method fine-tuned on 1 %, 10 %, 100 % of the labels against the baseline trained from scratch."""

    def applies(self, grid: GridFrame, options: ReportOptions) -> bool:
        return any(m["kind"] == "finetune" for m in completed_metrics(grid, FINETUNE))

    def section(self, grid: GridFrame, out: Path, options: ReportOptions) -> Section:
        if not self.applies(grid, options):
            raise ReportError(f"grid {grid.grid!r} has no finetune_* metric (Table 7: set eval.finetune.fractions)")
        tables, versus = table7(grid)
        note = ("The supervised baseline is trained from scratch on the same class-balanced subset with the same recipe; "
                "it does not depend on the pre-training, so it is read from one method's runs. The paper's Table 7 has "
                "no 100 % column.")
        return write_section(grid, out, "table7", "Table 7: fine-tuning with few labels", tables, findings_of(versus),
                             note, deltas=versus)


# ------------------------------------------------------------------------------------------- Table 8

TRANSFER = re.compile(r"transfer_(?P<label>[A-Za-z0-9][A-Za-z0-9_]*?)_(?P<protocol>linear|finetune)_(?P<top>top1|top5)")
PROTOCOLS = ("linear", "finetune")
PROTOCOL_LABELS = {"linear": "linear evaluation", "finetune": "fine-tuned"}
TABLE8_PAPER = {"cifar10": {"linear": 90.6, "finetune": 97.7}, "cifar100": {"linear": 71.6, "finetune": 85.9}}
TABLE8_SOURCE = "paper (ImageNet, ResNet-50 (1×), App. B.8)"


def transfer_targets(frame: pd.DataFrame) -> dict[str, str]:
    """label → dataset name of each transfer target, in the grid file's order (eval.transfer of the first run
    that has one)."""
    targets: dict[str, str] = {}
    for spec in frame.get("eval.transfer", pd.Series(dtype=object)).dropna():
        for target in spec if isinstance(spec, list) else []:
            targets.setdefault(str(target.get("label")), str((target.get("dataset") or {}).get("name")))
    return targets


def table8_row_label(row: tuple[str, Any]) -> str:
    return f"{method_label(row[1])}, {PROTOCOL_LABELS[row[0]]}"


def table8(grid: GridFrame) -> tuple[list[PaperTable], list[CellTable]]:
    found = completed_metrics(grid, TRANSFER)
    targets = transfer_targets(grid.frame)
    labels = sorted({m["label"] for m in found}, key=lambda label: (list(targets).index(label) if label in targets
                                                                    else len(targets), label))
    tops = [top for top in ("top1", "top5") if any(m["top"] == top for m in found)]
    frame = grid.frame if "method" in grid.frame else grid.frame.assign(method="simclr")
    tables, versus = [], []
    for facet, part in split_facets(frame, ("method",)):
        methods = sorted(set(part["method"].dropna()), key=method_sort_key)
        rows = [(protocol, m) for protocol in PROTOCOLS for m in methods
                if any(x["protocol"] == protocol for x in found)]
        for top in tops:
            cells = {}
            for row in rows:
                runs = part[part["method"] == row[1]]
                cells.update(metric_cells(runs, {(row, label): f"transfer_{label}_{row[0]}_{top}" for label in labels}))
            name = "top-1" if top == "top1" else "top-5"
            title = f"Table 8: transfer, {name} (%) on each target{facet_suffix(facet)}"
            table = CellTable(title, "protocol", "target", rows, labels, cells, f"transfer {name}", facet,
                              row_label=table8_row_label)
            paper = {}
            if top == "top1":
                for row in rows:
                    if row[1] == "simclr":
                        paper[row] = {label: TABLE8_PAPER[targets[label]][row[0]] for label in labels
                                      if targets.get(label) in TABLE8_PAPER}
            tables.append(PaperTable(table, paper, paper_label=TABLE8_SOURCE))
            if top == "top1" and len(PROTOCOLS) == len({row[0] for row in rows}):
                pairs = [(m, label) for m in methods for label in labels]
                versus.append(CellTable(f"Fine-tuned against linear evaluation, top-1{facet_suffix(facet)}", "target",
                                        "protocol", pairs, list(PROTOCOLS),
                                        {((m, label), protocol): cells[((protocol, m), label)]
                                         for m, label in pairs for protocol in PROTOCOLS}, table.metric, facet,
                                        row_label=lambda key: f"{method_label(key[0])} on {key[1]}",
                                        col_label=lambda protocol: PROTOCOL_LABELS[protocol]))
    attach_comparisons(versus, PROTOCOL_LABELS["linear"])
    return tables, versus


class Table8Report:
    """Table 8: transfer to the grid's targets, linear evaluation and fine-tuned."""

    def applies(self, grid: GridFrame, options: ReportOptions) -> bool:
        return bool(completed_metrics(grid, TRANSFER))

    def section(self, grid: GridFrame, out: Path, options: ReportOptions) -> Section:
        if not self.applies(grid, options):
            raise ReportError(f"grid {grid.grid!r} has no transfer_* metric (Table 8: set eval.transfer)")
        tables, versus = table8(grid)
        note = ("Columns: the grid's transfer targets (eval.transfer labels). The paper's numbers (ImageNet pre-training, "
                "the ResNet-50 (1×) version of Table 8 in Appendix B.8; Table 8 itself reports ResNet-50 (4×)) stand "
                "under the targets whose dataset is cifar10 or cifar100.")
        return write_section(grid, out, "table8", "Table 8: transfer", tables, findings_of(versus), note, deltas=versus)
