"""Turn a grid's results into report files under reports/<grid>/ (figures, CSV, Markdown, LaTeX, HTML).

    heatmap[--facet].{png,pdf,svg}, heatmap.csv, heatmap.md      Figure 5 (one figure per facet)
    heatmap-methods[--facet].{png,pdf,svg}                       Figure 5 of several methods, side by side
    table1.{md,tex,csv}                                          Table 1 (method × colour strength)
    pivot-<rows>-by-<cols>-<metric>.{md,tex,csv}                 any two axes, any metric
    methods[--facet].{png,pdf,svg}, methods.{md,tex,csv}         methods × augmentation, Δ from a reference
    heatmap.tex                                                  Figure 5's numbers and marks as a booktabs table
    figure8[--facet].{png,pdf,svg}, figure8.{md,tex,csv}         Figure 8: head × output size, on h and z (head.py)
    table3.md, table4.md, table5.md, table7.md, table8.md        Tables 3, 4, 5, 7, 8 in the paper's layout, with
      (and .tex, .csv each)                                      the paper's numbers beside ablate's (paper_tables.py)
    runs.csv                                                     every completed or failed run the report reads
    index.html                                                   all of it on one self-contained page
    reports/compare-<A>-vs-<B>/difference*.{png,pdf,svg,csv,md}, index.html

Each kind of report is one module with a report-type class, registered in REPORT_TYPES below:
heatmap.HeatmapReport (Figure 5), tables.TableReport (Table 1, pivots) and methods.MethodsReport
(methods × augmentation, with each cell's change from a reference column). `--all` writes every
type that applies to the grid and index.html; the comparison of two grids is write_compare_report.

A facet is one combination of the axes that vary in the grid besides the ones a report lays out
(e.g. method, augment.color_strength in a pair grid): each gets its own figure or table, named by a
suffix, so that numbers from different settings are never averaged together.

Every cell with two or more seeds shows its 95 % interval; cells are compared by paired tests over
the seeds they share (ablate.report.stats), Holm-corrected over each report's comparisons, and each
report opens with its findings in words (ablate.report.findings). `--baseline LABEL` names the
reference column of every report that has columns (Table 1, pivots, the methods report); under
`--all`, a report without a column of that label keeps its first column and says so, and a label no
report has is an error. `--seeds-needed DIFF` adds how many seeds each comparison would need.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import pandas as pd

from ablate.report.data import (  # noqa: F401  (ReportError and latest_grid are part of this module's interface)
    PAIR_AXES, Facet, GridFrame, ReportError, check_metric, facet_keys, latest_grid, load_grid_frame, varying_axes,
)
from ablate.report.files import add_facet, write_runs, write_section_tables, write_text
from ablate.report.html import Section, render_page
from ablate.report.tables import html_table

WHAT_ALL = "all"

# The registry of report types: name -> "module:class" (imported when used: each draws with matplotlib).
# A report type is a class with `applies(grid, options)` (whether `--all` includes it) and
# `section(grid, out, options)` (writes its files, returns its part of index.html). A new one is one
# file in ablate/report/ and one line here; `ablate report --kind NAME` draws it. Optional: a class
# attribute `supplementary = True` (it accompanies the others: --all still writes the fallback pivot
# when only such types apply) and `baseline_columns(grid, options)` (the column labels --baseline
# may name in it).
REPORT_TYPES: dict[str, str] = {
    "heatmap": "ablate.report.heatmap:HeatmapReport",
    "table": "ablate.report.tables:TableReport",
    "methods": "ablate.report.methods:MethodsReport",
    "curves": "ablate.report.curves:CurvesReport",
    "figure8": "ablate.report.head:HeadReport",
    "table3": "ablate.report.paper_tables:Table3Report",
    "table4": "ablate.report.paper_tables:Table4Report",
    "table5": "ablate.report.paper_tables:Table5Report",
    "table7": "ablate.report.paper_tables:Table7Report",
    "table8": "ablate.report.paper_tables:Table8Report",
}


@dataclass(frozen=True)
class ReportOptions:
    """What the command line says about a report, passed to every report type."""

    metric: str = "linear_top1"
    rows: str | None = None
    cols: str | None = None
    operators: list[str] | None = None
    baseline: str | None = None  # the reference column (its label) of Table 1, pivots and the methods report
    seeds_needed: float | None = None  # --seeds-needed DIFF: the difference (points) the seeds should tell apart


class ReportType(Protocol):
    def applies(self, grid: GridFrame, options: ReportOptions) -> bool: ...

    def section(self, grid: GridFrame, out: Path, options: ReportOptions) -> Section: ...


def report_type(name: str) -> ReportType:
    """The registered report type `name`; ReportError naming the known ones otherwise."""
    if name not in REPORT_TYPES:
        raise ReportError(f"unknown report {name!r}; expected one of {', '.join([*REPORT_TYPES, WHAT_ALL])}")
    module, cls = REPORT_TYPES[name].split(":")
    return getattr(importlib.import_module(module), cls)()


def counts_of(grid: GridFrame) -> dict[str, str]:
    missing = "?" if grid.missing is None else str(grid.missing)
    return {"completed": str(grid.completed), "failed": str(grid.failed), "missing": missing}


# ---------------------------------------------------------------------------------------------- all


def write_html(grid: GridFrame, sections: list[Section], out: Path) -> Path:
    page = render_page(f"ablate report: {grid.grid}", grid.header(), counts_of(grid), sections, out)
    return write_text(out / "index.html", page)


def write_report(results_root: Path, grid: str, out_root: Path, what: str = "all", metric: str = "linear_top1",
                 planned: Sequence[dict[str, Any]] | None = None, rows: str | None = None, cols: str | None = None,
                 operators: list[str] | None = None, baseline: str | None = None, seeds_needed: float | None = None,
                 say: Callable[[str], None] | None = None) -> list[Path]:
    """The files of one report under out_root/<grid>/: what = a name of REPORT_TYPES, or all (every type
    that applies, else a pivot of the axes the grid varies, plus index.html), and runs.csv; `say` gets the
    lines of --seeds-needed."""
    frame = load_grid_frame(results_root, grid, planned)
    check_metric(frame, metric)
    options = ReportOptions(metric, rows, cols, operators, baseline, seeds_needed)
    if what != WHAT_ALL:
        kinds = [report_type(what)]
    else:
        kinds = [kind for kind in map(report_type, REPORT_TYPES) if kind.applies(frame, options)]
        if all(getattr(kind, "supplementary", False) for kind in kinds):  # none, or only ones that accompany others
            from ablate.report.tables import fallback_pivot_axes

            rows, cols = fallback_pivot_axes(frame)
            options = replace(options, rows=rows, cols=cols)
            kinds = [report_type("table"), *kinds]
    check_baseline(frame, kinds, options)
    out = out_root / grid
    out.mkdir(parents=True, exist_ok=True)
    sections = [kind.section(frame, out, options) for kind in kinds]
    for line in (line for section in sections for line in section.seeds_needed):
        if say is not None:
            say(line)
    files = [path for section in sections for path in section.files] + [write_runs(frame, out)]
    return files + ([write_html(frame, sections, out)] if what == WHAT_ALL else [])


def check_baseline(grid: GridFrame, kinds: list[ReportType], options: ReportOptions) -> None:
    """--baseline must name a column of at least one of the reports to be written (those with columns say which
    they have: `baseline_columns`); ReportError listing them otherwise."""
    if options.baseline is None:
        return
    known = [kind.baseline_columns(grid, options) for kind in kinds if hasattr(kind, "baseline_columns")]
    if any(options.baseline in labels for _, labels in known):
        return
    if not known:
        raise ReportError(f"--baseline {options.baseline!r}: no report of grid {grid.grid!r} has columns to take it from "
                          "(Table 1, pivots and the methods report do; the heatmap compares each cell with the best)")
    raise ReportError(f"--baseline {options.baseline!r}: " + "; ".join(
        f"no column of {name} is labelled so; columns: " + ", ".join(repr(label) for label in labels) for name, labels in known))


# ------------------------------------------------------------------------------------------ compare


def write_compare_report(results_root: Path, grid_a: str, grid_b: str, out_root: Path, metric: str = "linear_top1",
                         planned_a: Sequence[dict[str, Any]] | None = None,
                         planned_b: Sequence[dict[str, Any]] | None = None) -> list[Path]:
    """reports/compare-<A>-vs-<B>/: the pair heatmap of B − A cell by cell, per shared facet."""
    from ablate.report.heatmap import (diff_csv, diff_markdown, diff_table, draw_difference, metric_label, pair_frame,
                                       pair_operators, pair_table)

    if grid_a == grid_b:
        raise ReportError(f"--compare needs two different grids, got {grid_a!r} twice")
    a, b = load_grid_frame(results_root, grid_a, planned_a), load_grid_frame(results_root, grid_b, planned_b)
    check_metric(a, metric)
    check_metric(b, metric)
    pairs_a, pairs_b = pair_frame(a.frame), pair_frame(b.frame)
    for grid, pairs in ((a, pairs_a), (b, pairs_b)):
        if pairs.empty:
            raise ReportError(f"grid {grid.grid!r} has no run of one operator or an ordered pair to compare")
    axes = sorted(set(varying_axes(pairs_a, PAIR_AXES)) | set(varying_axes(pairs_b, PAIR_AXES)))
    keys_a, keys_b = facet_keys(pairs_a, axes), facet_keys(pairs_b, axes)
    order = pair_operators(pd.concat([pairs_a, pairs_b], ignore_index=True))
    out = out_root / f"compare-{grid_a}-vs-{grid_b}"
    out.mkdir(parents=True, exist_ok=True)
    header = f"A = {a.header()}  |  B = {b.header()}"
    section = Section(f"Difference B − A: {grid_b} − {grid_a}")
    section.note = ("Each cell: mean of B minus mean of A, ± the standard error of that difference where both have n > 1; "
                    "cells with a result in one grid only are hatched and labelled 'only A' / 'only B'.")
    frames, markdown = [], [f"# {metric}: {grid_b} − {grid_a}\n\n{header}\n"]
    from ablate.report.data import sort_key

    for key in sorted(set(keys_a) | set(keys_b), key=lambda k: tuple(sort_key(v) for v in k)):
        facet = Facet(tuple(zip(axes, key)))
        table = diff_table(pair_table(pairs_a[keys_a == key], order, metric), pair_table(pairs_b[keys_b == key], order, metric))
        title = f"Δ {metric_label(metric)}: B ({grid_b}) − A ({grid_a})" + (f"\n{facet.label}" if facet.values else "")
        add_facet(section, frames, markdown, facet, title, out / f"difference{facet.suffix}",
                  draw_difference(table, title, header, metric, (grid_a, grid_b)), diff_csv(table), diff_markdown(table),
                  diff_html(table, title.replace("\n", " · ")))
    write_section_tables(section, out / "difference", frames, markdown)
    counts = {f"{k} (A)": v for k, v in counts_of(a).items()} | {f"{k} (B)": v for k, v in counts_of(b).items()}
    page = render_page(f"ablate compare: {grid_b} − {grid_a}", header, counts, [section], out)
    return section.files + [write_text(out / "index.html", page)]


def diff_html(table: Any, caption: str) -> str:
    rows = []
    for first in table.operators:
        cells = []
        for second in table.operators:
            cell = table.cells[(first, second)]
            if cell.state == "both":
                cells.append((cell.diff_text(" ± "), "ok"))
            else:
                cells.append((cell.state if cell.state != "neither" else "—", "only" if cell.state.startswith("only") else "missing"))
        mean = table.row_mean_text(first)
        cells.append(("—", "missing") if mean is None else (mean, "ok"))
        rows.append((first, cells))
    return html_table("1st \\ 2nd", table.operators + ["row mean"], rows, caption)
