"""Writing report files: figures in three formats, text, and the per-facet tables of a section.

Every file is written atomically (a reader sees the old file or the whole new one) and with the
usual permissions; every report type (ablate.report.build.REPORT_TYPES) writes through these.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic_core import to_json  # compact JSON of the curves (NaN written as json.dumps writes it)

from ablate.report.data import Facet, GridFrame, is_spec_column, metric_columns
from ablate.report.html import Section
from ablate.store import write_bytes_atomic

FIGURE_FORMATS = ("png", "pdf", "svg")


def save_figure(figure: Any, folder: Path, stem: str, dpi: int = 150) -> list[Path]:
    """stem.{png,pdf,svg}, each written atomically; closes the figure. `dpi`: the PNG's resolution."""
    import matplotlib.pyplot as plt

    written = []
    try:
        for fmt in FIGURE_FORMATS:
            buffer = io.BytesIO()
            metadata = {"Software": None} if fmt == "png" else None
            figure.savefig(buffer, format=fmt, dpi=dpi, metadata=metadata)
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


def add_figure(section: Section, figure: Any, figure_path: Path, title: str, dpi: int = 150) -> list[Path]:
    """A figure saved as figure_path.{png,pdf,svg}, listed in the section (its PNG embedded in the page)."""
    files = save_figure(figure, figure_path.parent, figure_path.name, dpi)
    section.files += files
    section.figures.append((files[0], title.replace("\n", " · ")))
    return files


def add_facet_tables(section: Section, frames: list[pd.DataFrame], markdown: list[str], facet: Facet, frame: pd.DataFrame,
                     body_markdown: str, body_html: str) -> None:
    """One facet's CSV rows (facet columns first), Markdown and HTML table, added to the section."""
    for position, (axis, value) in enumerate(facet.values):
        frame.insert(position, axis, value)
    frames.append(frame)
    markdown.append((f"## {facet.label}\n\n" if facet.values else "") + body_markdown)
    section.tables.append(body_html)


def add_facet(section: Section, frames: list[pd.DataFrame], markdown: list[str], facet: Facet, title: str,
              figure_path: Path, figure: Any, frame: pd.DataFrame, body_markdown: str, body_html: str) -> None:
    """One facet's figure, CSV rows (facet columns first), Markdown and HTML table, added to the section."""
    add_figure(section, figure, figure_path, title)
    add_facet_tables(section, frames, markdown, facet, frame, body_markdown, body_html)


def write_section_tables(section: Section, stem: Path, frames: list[pd.DataFrame], markdown: list[str]) -> None:
    """stem.csv (every facet's rows) and stem.md, written atomically."""
    section.files.append(write_text(stem.with_suffix(".csv"), pd.concat(frames, ignore_index=True).to_csv(index=False)))
    section.files.append(write_text(stem.with_suffix(".md"), "\n".join(markdown)))


RUNS_FILE = "runs.csv"
RUN_STATUSES = ("completed", "failed")


def runs_frame(grid: GridFrame) -> pd.DataFrame:
    """One row per completed or failed run, in the plan's order (then by run id): run_id, the run's spec (every
    field some run has a value for: the axes a report lays out or splits on, and the settings they share),
    seed, status, every metric and timing (the numbers a report can show), collapsed, where it ran
    (device, colour path, training processes: the header's hardware) and its training curves (JSON). What the report's numbers are computed from, so that a
    reader can recompute them, and the committed reports can be checked against them."""
    frame = grid.frame[grid.frame["status"].isin(RUN_STATUSES)]
    frame = frame.sort_values(["plan_index", "run_id"], na_position="last", kind="stable")
    has_value = [column for column in frame.columns if frame[column].notna().any()]
    spec = sorted((c for c in has_value if is_spec_column(c) and c != "seed"), key=lambda c: (c != "method", c))
    metrics = [c for c in metric_columns(grid) if c in has_value]
    columns = ["run_id", *spec, *(["seed"] if "seed" in has_value else []), "status", *metrics, "collapsed"]
    columns += [c for c in ("device", "color", "processes") if c in has_value]
    frame = frame.reindex(columns=columns + (["curves"] if "curves" in has_value else []))
    if "curves" in frame:  # the training curves (curves report) as compact JSON, one object per run
        frame["curves"] = frame["curves"].map(lambda c: to_json(c).decode() if isinstance(c, dict) else None)
    return frame


def write_runs(grid: GridFrame, folder: Path) -> Path:
    """runs.csv beside a report's files (runs_frame), written atomically."""
    return write_text(folder / RUNS_FILE, runs_frame(grid).to_csv(index=False))
