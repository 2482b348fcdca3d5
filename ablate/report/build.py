"""Turn a grid's results into report files under reports/<grid>/ (figures, CSV, Markdown, LaTeX, HTML).

    heatmap[--facet].{png,pdf,svg}, heatmap.csv, heatmap.md      Figure 5 (one figure per facet)
    table1.{md,tex,csv}                                          Table 1 (method × colour strength)
    pivot-<rows>-by-<cols>-<metric>.{md,tex,csv}                 any two axes, any metric
    index.html                                                   all of it on one self-contained page
    reports/compare-<A>-vs-<B>/difference*.{png,pdf,svg,csv,md}, index.html

A facet is one combination of the axes that vary in the grid besides the ones a report lays out
(e.g. method, augment.color_strength in a pair grid): each gets its own figure or table, named by a
suffix, so that numbers from different settings are never averaged together.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from ablate.report.data import (  # noqa: F401  (ReportError and latest_grid are part of this module's interface)
    PAIR_AXES, Facet, GridFrame, ReportError, check_axis, check_metric, facet_keys, latest_grid, load_grid_frame,
    slug, split_on, varying_axes,
)
from ablate.report.html import Section, render_page
from ablate.report.tables import html_table
from ablate.store import write_bytes_atomic

FIGURE_FORMATS = ("png", "pdf", "svg")
WHAT = ("heatmap", "table", "all")


def save_figure(figure: Any, folder: Path, stem: str) -> list[Path]:
    """stem.{png,pdf,svg}, each written atomically; closes the figure."""
    import matplotlib.pyplot as plt

    written = []
    try:
        for fmt in FIGURE_FORMATS:
            buffer = io.BytesIO()
            metadata = {"Software": None} if fmt == "png" else None
            figure.savefig(buffer, format=fmt, dpi=150, metadata=metadata)
            written.append(write_file(folder / f"{stem}.{fmt}", buffer.getvalue()))
    finally:
        plt.close(figure)
    return written


def write_file(path: Path, payload: bytes) -> Path:
    """Atomic write, then the usual permissions (rw-r--r-- under umask 022): reports are for sharing."""
    write_bytes_atomic(path, payload)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)
    return path


def write_text(path: Path, text: str) -> Path:
    return write_file(path, text.encode("utf-8"))


def seed_note(part: pd.DataFrame) -> str:
    seeds = sorted(set(part.loc[part["status"] == "completed", "seed"].dropna())) if "seed" in part else []
    if len(seeds) > 1:
        return f"mean ± std over {len(seeds)} seeds"
    return "1 seed" if seeds else "no completed run"


def counts_of(grid: GridFrame) -> dict[str, str]:
    missing = "?" if grid.missing is None else str(grid.missing)
    return {"completed": str(grid.completed), "failed": str(grid.failed), "missing": missing}


# ------------------------------------------------------------------------------------------ heatmap


def heatmap_section(grid: GridFrame, out: Path, metric: str = "linear_top1", operators: list[str] | None = None) -> Section:
    """Figure 5 per facet; heatmap.csv (facet columns first when there are facets) and heatmap.md."""
    from ablate.report.heatmap import (draw_heatmap, metric_label, pair_frame, pair_operators, pair_table, table_csv,
                                       table_markdown, value_range)

    pairs = pair_frame(grid.frame)
    if pairs.empty and not operators:
        raise ReportError(f"grid {grid.grid!r} has no run of one operator or an ordered pair to draw")
    order = operators or pair_operators(pairs)
    split = split_on(pairs, varying_axes(pairs, PAIR_AXES))
    tables = [(facet, part, pair_table(part, order, metric)) for facet, part in split]
    vrange = value_range([table for _, _, table in tables])
    header = grid.header()
    section = Section("Figure 5: pairs of transformations")
    if split.axes:
        section.note = f"One heatmap per value of {', '.join(split.axes)} (these vary in the grid and are not averaged)."
    frames, markdown = [], [f"# {grid.grid}: {metric}\n\n{header}\n"]
    for facet, part, table in tables:
        title = f"{metric_label(metric)}: 1st × 2nd transformation ({seed_note(part)})"
        if facet.values:
            title += f"\n{facet.label}"
        add_facet(section, frames, markdown, facet, title, out / f"heatmap{facet.suffix}",
                  draw_heatmap(table, title, header, metric, vrange), table_csv(table), table_markdown(table),
                  pair_html(table, title.replace("\n", " · ")))
    write_section_tables(section, out / "heatmap", frames, markdown)
    return section


def add_facet(section: Section, frames: list[pd.DataFrame], markdown: list[str], facet: Facet, title: str,
              figure_path: Path, figure: Any, frame: pd.DataFrame, body_markdown: str, body_html: str) -> None:
    """One facet's figure, CSV rows (facet columns first), Markdown and HTML table, added to the section."""
    files = save_figure(figure, figure_path.parent, figure_path.name)
    section.files += files
    section.figures.append((files[0], title.replace("\n", " · ")))
    for position, (axis, value) in enumerate(facet.values):
        frame.insert(position, axis, value)
    frames.append(frame)
    markdown.append((f"## {facet.label}\n\n" if facet.values else "") + body_markdown)
    section.tables.append(body_html)


def write_section_tables(section: Section, stem: Path, frames: list[pd.DataFrame], markdown: list[str]) -> None:
    """stem.csv (every facet's rows) and stem.md, written atomically."""
    section.files.append(write_text(stem.with_suffix(".csv"), pd.concat(frames, ignore_index=True).to_csv(index=False)))
    section.files.append(write_text(stem.with_suffix(".md"), "\n".join(markdown)))


def pair_html(table: Any, caption: str) -> str:
    rows = []
    for first in table.operators:
        cells = [(table.cell(first, second).text(), table.cell(first, second).state) for second in table.operators]
        mean = table.row_mean_text(first)
        cells.append(("—", "missing") if mean is None else (mean, "ok"))
        rows.append((first, cells))
    return html_table("1st \\ 2nd", table.operators + ["row mean"], rows, caption)


# ------------------------------------------------------------------------------------------- tables


def tables_section(grid: GridFrame, out: Path, metric: str = "linear_top1", rows: str | None = None,
                   cols: str | None = None) -> Section:
    """Table 1 (or the pivot rows × cols) as .md, .tex and .csv, one table per facet."""
    from ablate.report.tables import pivot, table1, table1_applies, to_frame, to_html, to_latex, to_markdown

    if rows or cols:
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
    from ablate.report.bars import draw_bars

    for table in tables:
        files = save_figure(draw_bars(table, table.title, header), out, f"{stem}{table.facet.suffix}")
        section.files += files
        section.figures.append((files[0], table.title))
    section.files.append(write_text(out / f"{stem}.md", f"# {grid.grid}\n\n{header}\n\n" + "\n".join(to_markdown(t) for t in tables)))
    section.files.append(write_text(out / f"{stem}.tex", f"% {header}\n% needs \\usepackage{{booktabs}}\n" + "\n".join(to_latex(t) for t in tables)))
    section.files.append(write_text(out / f"{stem}.csv", to_frame(tables).to_csv(index=False)))
    section.tables += [to_html(t) for t in tables]
    return section


def fallback_pivot_axes(grid: GridFrame) -> tuple[str, str]:
    """For --all on a grid that is neither a pair grid nor a Table 1 grid: the axes it varies."""
    axes = varying_axes(grid.frame, ())
    if len(axes) >= 2:
        return axes[0], axes[1]
    if axes:
        return "method", axes[0]
    return "method", "augment.ops"


# ---------------------------------------------------------------------------------------------- all


def write_html(grid: GridFrame, sections: list[Section], out: Path) -> Path:
    page = render_page(f"ablate report: {grid.grid}", grid.header(), counts_of(grid), sections, out)
    return write_text(out / "index.html", page)


def write_report(results_root: Path, grid: str, out_root: Path, what: str = "all", metric: str = "linear_top1",
                 planned: Sequence[dict[str, Any]] | None = None, rows: str | None = None, cols: str | None = None,
                 operators: list[str] | None = None) -> list[Path]:
    """The files of one report under out_root/<grid>/: what = heatmap | table | all (all adds index.html)."""
    if what not in WHAT:
        raise ReportError(f"unknown report {what!r}; expected one of {', '.join(WHAT)}")
    frame = load_grid_frame(results_root, grid, planned)
    check_metric(frame, metric)
    out = out_root / grid
    out.mkdir(parents=True, exist_ok=True)
    if what == "heatmap":
        return heatmap_section(frame, out, metric, operators).files
    if what == "table":
        return tables_section(frame, out, metric, rows, cols).files
    from ablate.report.heatmap import pair_frame
    from ablate.report.tables import table1_applies

    sections = []
    is_table1 = table1_applies(frame)
    if not pair_frame(frame.frame).empty and not is_table1:
        sections.append(heatmap_section(frame, out, metric, operators))
    if rows or cols:
        sections.append(tables_section(frame, out, metric, rows, cols))
    elif is_table1:
        sections.append(tables_section(frame, out, metric))
    elif not sections:
        sections.append(tables_section(frame, out, metric, *fallback_pivot_axes(frame)))
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
