"""Turn a grid's results into report files under reports/<grid>/ (figures, CSV, Markdown)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ablate.report.heatmap import draw_heatmap, operator_order, pair_frame, pair_table, table_csv, table_markdown
from ablate.store import grid_dir, load_results, write_bytes_atomic

FIGURE_FORMATS = ("png", "pdf", "svg")


class ReportError(Exception):
    """Nothing to report (no such grid, no results); the CLI prints it and exits with status 2."""


@dataclass
class RunCounts:
    completed: int
    failed: int
    missing: int | None  # None when the plan is unknown (no grid file given)


def latest_grid(results_root: Path) -> str:
    """The grid under results_root whose results changed most recently."""
    if not results_root.is_dir():
        raise ReportError(f"no results folder at {results_root}; run `ablate run GRID` first")
    grids = [d for d in results_root.iterdir() if d.is_dir() and any(d.glob("*/result.json"))]
    if not grids:
        raise ReportError(f"no results under {results_root}; run `ablate run GRID` first")
    newest = max(grids, key=lambda d: max(f.stat().st_mtime for f in d.glob("*/result.json")))
    return newest.name


def count_runs(results: pd.DataFrame, planned_ids: list[str] | None) -> RunCounts:
    completed = int((results["status"] == "completed").sum()) if not results.empty else 0
    failed = int((results["status"] == "failed").sum()) if not results.empty else 0
    missing = None
    if planned_ids is not None:
        have = set(results["run_id"]) if not results.empty else set()
        missing = len([run_id for run_id in planned_ids if run_id not in have])
    return RunCounts(completed, failed, missing)


def hardware_and_compute(results: pd.DataFrame) -> tuple[str, float]:
    """The devices the runs used and their total wall time in hours."""
    if results.empty:
        return "unknown", 0.0
    devices = sorted(set(results["device"].dropna()))
    total = float(results.get("time.total", pd.Series(dtype=float)).fillna(0).sum())
    return ", ".join(devices) or "unknown", total / 3600


def header_line(grid: str, counts: RunCounts, hardware: str, hours: float) -> str:
    missing = "?" if counts.missing is None else str(counts.missing)
    return (f"grid {grid}: {counts.completed} completed, {counts.failed} failed, {missing} missing; "
            f"{hardware}; {hours * 60:.1f} min compute")


def write_heatmap_report(results_root: Path, grid: str, out_root: Path, metric: str = "linear_top1",
                         planned_ids: list[str] | None = None, operators: list[str] | None = None) -> list[Path]:
    """reports/<grid>/heatmap.{png,pdf,svg}, heatmap.csv and heatmap.md; returns the paths written."""
    if not grid_dir(results_root, grid).is_dir():
        raise ReportError(f"no results for grid {grid!r} under {results_root}")
    results = load_results(results_root, grid)
    pairs = pair_frame(results)
    if pairs.empty and not operators:
        raise ReportError(f"grid {grid!r} has no completed run of one operator or an ordered pair to draw")
    if metric not in results.columns:
        raise ReportError(f"metric {metric!r} is not in the results; available: {', '.join(m for m in results.columns if m.endswith('top1'))}")
    names = set(pairs["first_op"]) | set(pairs["second_op"]) if not pairs.empty else set()
    order = operators or operator_order(names)
    table = pair_table(pairs, order, metric)
    counts = count_runs(results, planned_ids)
    hardware, hours = hardware_and_compute(results)
    header = header_line(grid, counts, hardware, hours)
    out = out_root / grid
    out.mkdir(parents=True, exist_ok=True)
    figure = draw_heatmap(table, f"{metric} by 1st × 2nd transformation\n{header}", metric)
    written = []
    for fmt in FIGURE_FORMATS:
        path = out / f"heatmap.{fmt}"
        temp = out / f".heatmap.tmp.{fmt}"
        figure.savefig(temp, dpi=150, format=fmt)
        temp.replace(path)
        written.append(path)
    import matplotlib.pyplot as plt

    plt.close(figure)
    csv_path = out / "heatmap.csv"
    write_bytes_atomic(csv_path, table_csv(table).to_csv(index=False).encode())
    md_path = out / "heatmap.md"
    write_bytes_atomic(md_path, (f"# {grid}: {metric}\n\n{header}\n\n" + table_markdown(table)).encode())
    return written + [csv_path, md_path]
