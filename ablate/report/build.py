"""Turn a grid's results into report files under reports/<grid>/ (figures, CSV, Markdown, LaTeX, HTML).

    heatmap[--facet].{png,pdf,svg}, heatmap.csv, heatmap.md      Figure 5 (one figure per facet)
    heatmap-methods[--facet].{png,pdf,svg}                       Figure 5 of several methods, side by side
    table1.{md,tex,csv}                                          Table 1 (method × colour strength)
    pivot-<rows>-by-<cols>-<metric>.{md,tex,csv}                 any two axes, any metric
    methods[--facet].{png,pdf,svg}, methods.{md,tex,csv}         methods × augmentation, Δ from a reference
    index.html                                                   all of it on one self-contained page
    reports/compare-<A>-vs-<B>/difference*.{png,pdf,svg,csv,md}, index.html

Each kind of report is one module with a report-type class, registered in REPORT_TYPES below:
heatmap.HeatmapReport (Figure 5), tables.TableReport (Table 1, pivots) and methods.MethodsReport
(methods × augmentation, with each cell's change from a reference column). `--all` writes every
type that applies to the grid and index.html; the comparison of two grids is write_compare_report.

A facet is one combination of the axes that vary in the grid besides the ones a report lays out
(e.g. method, augment.color_strength in a pair grid): each gets its own figure or table, named by a
suffix, so that numbers from different settings are never averaged together.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol, Sequence

import pandas as pd

from ablate.report.data import (  # noqa: F401  (ReportError and latest_grid are part of this module's interface)
    PAIR_AXES, Facet, GridFrame, ReportError, check_metric, facet_keys, latest_grid, load_grid_frame, varying_axes,
)
from ablate.report.files import add_facet, write_section_tables, write_text
from ablate.report.html import Section, render_page
from ablate.report.tables import html_table

WHAT_ALL = "all"

# The registry of report types: name -> "module:class" (imported when used: each draws with matplotlib).
# A report type is a class with `applies(grid, options)` (whether `--all` includes it) and
# `section(grid, out, options)` (writes its files, returns its part of index.html). A new one is one
# file in ablate/report/ and one line here; `ablate report --kind NAME` draws it.
REPORT_TYPES: dict[str, str] = {
    "heatmap": "ablate.report.heatmap:HeatmapReport",
    "table": "ablate.report.tables:TableReport",
    "methods": "ablate.report.methods:MethodsReport",
}


@dataclass(frozen=True)
class ReportOptions:
    """What the command line says about a report, passed to every report type."""

    metric: str = "linear_top1"
    rows: str | None = None
    cols: str | None = None
    operators: list[str] | None = None
    baseline: str | None = None  # the methods report's reference column (its label)


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
                 operators: list[str] | None = None, baseline: str | None = None) -> list[Path]:
    """The files of one report under out_root/<grid>/: what = a name of REPORT_TYPES, or all (every type
    that applies, else a pivot of the axes the grid varies, plus index.html)."""
    kinds = {what: report_type(what)} if what != WHAT_ALL else {}
    frame = load_grid_frame(results_root, grid, planned)
    check_metric(frame, metric)
    out = out_root / grid
    out.mkdir(parents=True, exist_ok=True)
    options = ReportOptions(metric, rows, cols, operators, baseline)
    if kinds:
        return kinds[what].section(frame, out, options).files
    sections = [kind.section(frame, out, options) for kind in map(report_type, REPORT_TYPES) if kind.applies(frame, options)]
    if not sections:
        from ablate.report.tables import fallback_pivot_axes

        rows, cols = fallback_pivot_axes(frame)
        sections.append(report_type("table").section(frame, out, replace(options, rows=rows, cols=cols)))
    html = write_html(frame, sections, out)
    return [path for section in sections for path in section.files] + [html]


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
