"""A grid's results as one frame, with the planned-but-missing runs as rows, and what a header says.

Every report starts here. `load_grid_frame` reads results/<grid>/*/result.json (ablate.store) and,
when the plan is known, appends one row with status "missing" for every planned run that has no
result, carrying the planned spec, so that each report places it in its cell and draws it as
missing. Facets are the spec axes that vary inside a grid besides the ones a report lays out
(pairs, seeds, ...): a report draws one figure or table per facet instead of averaging over them.

Besides the store's flat row, each run carries what reports need and the store does not flatten:
its collapse diagnostic (`collapsed`: True / False, None for results written before the diagnostic
existed, which reports treat as not collapsed; `collapse.std_ratio` and `collapse.embedding_std`,
drawable as metrics) and its place in the plan (`plan_index`), the grid file's order of the values.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import pandas as pd

from ablate.config.methods import METHOD_SPECS
from ablate.store import grid_dir, iter_results, result_row

SPEC_PREFIXES = ("dataset.", "model.", "method.", "train.", "augment.", "eval.")  # method.<field>: its settings
PAIR_AXES = ("augment.ops", "ops", "first_op", "second_op")  # what a pair heatmap lays out
ALWAYS_POOLED = ("seed",)  # the axis that mean ± std is taken over
MISSING = "—"
COLLAPSE_NUMBERS = ("std_ratio", "embedding_std")  # drawable as metrics: collapse.std_ratio, collapse.embedding_std
NOT_METRICS = {"run_id", "grid", "status", "error", "device", "ops", "first_op", "second_op", "collapsed", "plan_index",
               "curves", "processes"}
METRIC_LABELS = {"linear_top1": "linear top-1 (%)", "knn_top1": "kNN top-1 (%)", "linear_top5": "linear top-5 (%)"}


class ReportError(Exception):
    """Nothing (or nothing sensible) to report; the CLI prints it and exits with status 2."""


@dataclass
class GridFrame:
    """A grid's runs: completed, failed and (when the plan is known) missing ones, one row each."""

    grid: str
    frame: pd.DataFrame
    plan_known: bool
    not_in_plan: int = 0

    @property
    def completed(self) -> int:
        return int((self.frame["status"] == "completed").sum())

    @property
    def failed(self) -> int:
        return int((self.frame["status"] == "failed").sum())

    @property
    def missing(self) -> int | None:
        return int((self.frame["status"] == "missing").sum()) if self.plan_known else None

    def devices(self) -> list[tuple[str, int]]:
        ran = self.frame[self.frame["status"] != "missing"]
        counts = Counter(str(d) for d in ran["device"].dropna())
        return sorted(counts.items(), key=lambda item: (-item[1], item[0]))

    def hardware(self) -> str:
        devices = self.devices()
        if not devices:
            return "unknown hardware"
        text = "; ".join(f"{name} × {count} runs" for name, count in devices)
        compiled = self.compiled_color_runs()
        # Said only when it happened: compiled colour rounds differently (~1e-6), which changes a run's
        # numbers as a different device would, so a reader comparing reports should know.
        if compiled:
            text += f"; colour compiled (ABLATE_COMPILE_COLOR) in {compiled} runs"
        # Likewise runs trained on several processes: the same maths, but each rank draws its own augmentations.
        for processes, count in self.multi_process_runs():
            text += f"; {count} run{'s' if count > 1 else ''} trained on {processes} processes"
        return text

    def multi_process_runs(self) -> list[tuple[int, int]]:
        """(processes, runs) for the runs trained on more than one process, fewest processes first."""
        if "processes" not in self.frame:
            return []
        ran = self.frame[self.frame["status"] != "missing"]
        counts = Counter(int(n) for n in pd.to_numeric(ran["processes"], errors="coerce").dropna() if n > 1)
        return sorted(counts.items())

    def compiled_color_runs(self) -> int:
        if "color" not in self.frame:
            return 0
        ran = self.frame[self.frame["status"] != "missing"]
        return int(ran["color"].astype(str).str.startswith("compiled").sum())

    def compute_seconds(self) -> float:
        if "time.total" not in self.frame:
            return 0.0
        return float(pd.to_numeric(self.frame["time.total"], errors="coerce").fillna(0).sum())

    def header(self) -> str:
        missing = "unknown number of" if self.missing is None else str(self.missing)
        text = f"grid {self.grid}: {self.completed} completed, {self.failed} failed, {missing} missing runs"
        if self.missing is None:
            text += " (plan unknown: give --grid GRID_FILE to count them)"
        if self.not_in_plan:
            text += f", {self.not_in_plan} of the results are not in the current plan"
        return f"{text}; {self.hardware()}; {format_duration(self.compute_seconds())} compute"


def metric_label(metric: str) -> str:
    return METRIC_LABELS.get(metric, metric)


def format_duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def latest_grid(results_root: Path) -> str:
    """The grid under results_root whose results changed most recently."""
    if not results_root.is_dir():
        raise ReportError(f"no results folder at {results_root}; run `ablate run GRID` first")
    grids = known_grids(results_root)
    if not grids:
        raise ReportError(f"no results under {results_root}; run `ablate run GRID` first")
    return max(grids, key=lambda name: max(f.stat().st_mtime for f in (results_root / name).glob("*/result.json")))


def known_grids(results_root: Path) -> list[str]:
    if not results_root.is_dir():
        return []
    return sorted(d.name for d in results_root.iterdir() if d.is_dir() and any(d.glob("*/result.json")))


def load_grid_frame(results_root: Path, grid: str, planned: Sequence[dict[str, Any]] | None = None) -> GridFrame:
    """Results of `grid` plus a "missing" row per planned run without one.

    `planned` holds one {"run_id": ..., "spec": {...}} per planned run (the spec, a mapping or a RunSpec, is
    optional: without it a missing run is counted but cannot be placed in a cell).
    """
    if not grid or grid in (".", "..") or "/" in grid or "\\" in grid:
        raise ReportError(f"grid {grid!r} is not a plain grid name (no path separators)")
    results = load_result_rows(results_root, grid)
    if results.empty and not planned:
        if not grid_dir(results_root, grid).is_dir():
            known = known_grids(results_root)
            hint = f"; grids with results: {', '.join(known)}" if known else "; run `ablate run GRID` first"
            raise ReportError(f"no results for grid {grid!r} under {results_root}{hint}")
        raise ReportError(f"grid {grid!r} has no readable result under {results_root / grid}")
    have = set(results["run_id"]) if not results.empty else set()
    rows = []
    plan_ids = set()
    for run in planned or []:
        plan_ids.add(run["run_id"])
        if run["run_id"] not in have:
            spec = run.get("spec") or {}
            spec = spec.model_dump(mode="json") if hasattr(spec, "model_dump") else spec
            rows.append(result_row({"run_id": run["run_id"], "grid": grid, "status": "missing", "spec": spec}))
    frame = pd.concat([results, pd.DataFrame(rows)], ignore_index=True) if rows else results.copy()
    not_in_plan = len(have - plan_ids) if planned is not None else 0
    for column in ("status", "device", "augment.ops", "first_op", "second_op", "collapsed"):
        if column not in frame:
            frame[column] = None
    order = {run["run_id"]: index for index, run in enumerate(planned or [])}
    frame["plan_index"] = frame["run_id"].map(order).astype(float)  # NaN: a result the plan does not name
    return GridFrame(grid, frame, planned is not None, not_in_plan)


def load_result_rows(results_root: Path, grid: str) -> pd.DataFrame:
    """The grid's results as the store's rows (ablate.store.result_row) plus their collapse diagnostic and
    their training curves (`curves`: result.json's mapping, None where a result has none)."""
    return pd.DataFrame([result_row(result) | collapse_columns(result) | {"curves": result.get("curves")}
                         for result in iter_results(results_root, grid)])


def collapse_columns(result: dict[str, Any]) -> dict[str, Any]:
    """`collapsed` and the diagnostic's numbers from result.json's "collapse" record (None where it has none)."""
    record = result.get("collapse") or {}
    columns: dict[str, Any] = {"collapsed": bool(record["collapsed"]) if record.get("collapsed") is not None else None}
    for name in COLLAPSE_NUMBERS:
        columns[f"collapse.{name}"] = record.get(name)
    return columns


def run_collapsed(run: pd.Series) -> bool | None:
    """A frame row's collapse flag: True / False, None when its result predates the diagnostic."""
    flag = run.get("collapsed")
    return None if flag is None or pd.isna(flag) else bool(flag)


def has_method_axis(frame: pd.DataFrame) -> bool:
    """Two or more methods among the grid's runs (results and planned ones)."""
    return "method" in frame and frame["method"].dropna().nunique() >= 2


# ------------------------------------------------------------------------------------------ values


def slug(text: str) -> str:
    """Text made safe as part of a file name: letters, digits and . _ - kept, anything else '_'."""
    return "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in text)


def hashable(value: Any) -> Any:
    """Spec values as group keys: lists (ranges such as crop_scale) become tuples, mappings (eval.transfer's
    targets) tuples of their (key, value) pairs, NaN becomes None."""
    if isinstance(value, list):
        return tuple(hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple((key, hashable(item)) for key, item in value.items())
    if isinstance(value, float) and np.isnan(value):
        return None
    return value


def group_keys(values: pd.Series) -> pd.Series:
    """`values` as group keys: through `hashable` where a value is a list or mapping (crop_scale, a transfer
    target) or missing (NaN and None are one missing value); text and number columns as they are, since
    mapping every value of every spec column took about a second per report of 10,000 runs."""
    if values.dtype != object:
        return values
    if not values.isna().any():
        try:
            pd.unique(values)  # raises TypeError where a value is a list or mapping
            return values
        except TypeError:
            pass
        if values.map(type).eq(list).all():
            try:
                keys = values.map(tuple)  # lists of numbers or names (ranges, probes): one C call per value
                pd.unique(keys)
                return keys
            except TypeError:  # a list holding lists or mappings (transfer targets)
                pass
    return values.map(hashable)


def is_spec_column(column: str) -> bool:
    return column == "method" or column == "seed" or column.startswith(SPEC_PREFIXES)


def method_label(method: Any) -> str:
    """How reports call a method: its spec's label ('SimCLR'); an unknown method by its name."""
    spec = METHOD_SPECS.get(str(method))
    return spec.label if spec is not None else str(method)


def method_sort_key(method: Any) -> tuple[int, int, str]:
    """Known methods in the order of METHOD_SPECS, then unknown ones by name."""
    names = list(METHOD_SPECS)
    return (0, names.index(str(method)), "") if str(method) in METHOD_SPECS else (1, 0, str(method))


def format_value(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, tuple):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    return str(value)


def fraction_label(value: float) -> str:
    """0.125 → 1/8, 0.75 → 3/4, 1/3 → 1/3, 1.0 → 1, 0.3 → 0.3, 1.5 → 1.5: fractions below 1 as in the paper."""
    fraction = Fraction(value).limit_denominator(64)
    power_of_two = fraction.denominator & (fraction.denominator - 1) == 0
    simple = fraction.denominator == 1 or (value < 1 and (power_of_two or (fraction.numerator == 1 and fraction.denominator <= 8)))
    if abs(float(fraction) - value) > 1e-9 or not simple:
        return f"{value:g}"
    return str(fraction.numerator) if fraction.denominator == 1 else f"{fraction.numerator}/{fraction.denominator}"


def numeric_metric(frame: pd.DataFrame, metric: str) -> pd.Series:
    return pd.to_numeric(frame[metric], errors="coerce") if metric in frame else pd.Series(np.nan, index=frame.index)


def metric_columns(grid: GridFrame) -> list[str]:
    """Numeric result columns of the completed runs (metrics and timings), the things a report can show."""
    ran = grid.frame[grid.frame["status"] == "completed"]
    names = []
    for column in ran.columns:
        if is_spec_column(column) or column in NOT_METRICS:
            continue
        values = pd.to_numeric(ran[column], errors="coerce")
        if values.notna().any():
            names.append(column)
    return sorted(names)


def check_metric(grid: GridFrame, metric: str) -> None:
    """A clear error for a metric no completed run has (any metric is accepted when none completed)."""
    if not (grid.frame["status"] == "completed").any():
        return
    names = metric_columns(grid)
    if metric not in names:
        raise ReportError(f"unknown metric {metric!r} for grid {grid.grid}; available: {', '.join(names)}")


def check_axis(grid: GridFrame, axis: str, flag: str) -> None:
    if axis not in grid.frame.columns:
        axes = sorted(c for c in grid.frame.columns if is_spec_column(c) or c in ("ops", "first_op", "second_op", "device"))
        raise ReportError(f"{flag} {axis!r}: no such axis in grid {grid.grid}; available: {', '.join(axes)}")


# ------------------------------------------------------------------------------------------ facets


@dataclass(frozen=True)
class Facet:
    """One combination of the varying axes a report does not lay out; empty when nothing else varies."""

    values: tuple[tuple[str, Any], ...] = ()

    @property
    def label(self) -> str:
        return ", ".join(f"{axis}={format_value(value)}" for axis, value in self.values)

    @property
    def suffix(self) -> str:
        """File-name suffix, e.g. '--method-simclr--color_strength-0.5' ('' when there is no facet)."""
        return "".join(f"--{slug(axis.split('.')[-1] + '-' + format_value(value))}" for axis, value in self.values)


def varying_axes(frame: pd.DataFrame, laid_out: Sequence[str]) -> list[str]:
    """Spec columns with more than one value in the frame, minus the laid-out axes and the seed.

    A method's own setting (method.<field>) varies only if it takes two values for one method: that
    SimCLR has a temperature and the supervised baseline none is the method varying, not a facet.
    """
    skip = set(laid_out) | set(ALWAYS_POOLED)
    axes = []
    for column in frame.columns:
        if not is_spec_column(column) or column in skip:
            continue
        values = group_keys(frame[column])
        if column.startswith("method.") and "method" in frame:
            varies = bool((values.groupby(frame["method"].map(hashable), dropna=False).nunique(dropna=False) > 1).any())
        else:
            varies = values.nunique(dropna=False) > 1
        if varies:
            axes.append(column)
    return axes


def sort_key(value: Any) -> tuple:
    if value is None:
        return (2, "")
    if isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
        return (0, float(value), "")
    return (1, 0.0, str(value))


def axis_value_key(axis: str, value: Any) -> tuple:
    """Methods in the registry's order (METHOD_SPECS), any other axis's values as sort_key orders them."""
    return method_sort_key(value) if axis == "method" else sort_key(value)


@dataclass
class FacetSplit:
    axes: list[str]
    parts: list[tuple[Facet, pd.DataFrame]] = field(default_factory=list)

    def __iter__(self) -> Iterator[tuple[Facet, pd.DataFrame]]:
        return iter(self.parts)


def split_facets(frame: pd.DataFrame, laid_out: Sequence[str]) -> FacetSplit:
    """One (facet, rows) part per combination of the varying axes that are not laid out."""
    return split_on(frame, varying_axes(frame, laid_out))


def facet_keys(frame: pd.DataFrame, axes: Sequence[str]) -> pd.Series:
    """Each row's values on `axes` as a tuple (an axis the frame lacks reads None)."""
    columns = [frame[a].map(hashable) if a in frame else pd.Series(None, index=frame.index) for a in axes]
    return pd.Series(list(zip(*columns)) if columns else [()] * len(frame), index=frame.index, dtype=object)


def split_on(frame: pd.DataFrame, axes: Sequence[str]) -> FacetSplit:
    if not axes:
        return FacetSplit([], [(Facet(), frame)])
    keys = facet_keys(frame, axes)
    parts = []
    for key in sorted(set(keys), key=lambda k: tuple(axis_value_key(a, v) for a, v in zip(axes, k))):
        parts.append((Facet(tuple(zip(axes, key))), frame[keys == key]))
    return FacetSplit(list(axes), parts)


# ------------------------------------------------------------------------------------------- cells


@dataclass
class Cell:
    """One cell of a figure or table: statistics over its completed runs and its run counts.

    A cell any of whose runs collapsed (ablate.evaluate.collapse) has the state "collapsed": its
    number is a linear probe on a collapsed representation, which reports mark instead of showing it
    as merely low.
    """

    values: list[float] = field(default_factory=list)
    failed: int = 0
    missing: int = 0
    planned: bool = False  # the cell has at least one run (result or plan); False: nobody asked for it
    collapsed: int = 0  # runs among `values` whose representation collapsed
    diagnosed: int = 0  # runs among `values` whose result has the collapse diagnostic (older ones do not)
    seeds: list[Any] = field(default_factory=list)  # the seed of each of `values` (None: unknown), for pairing

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def interval(self) -> tuple[float, float]:
        """The 95 % Student t interval of the mean (ablate.report.stats.t_interval); NaNs when n < 2."""
        from ablate.report.stats import t_interval  # scipy: loaded when a report computes, not at import

        return t_interval(self.values)

    def by_seed(self) -> dict[Any, float]:
        """The cell's value per known seed (the mean where a seed ran twice): what paired tests pair on."""
        found: dict[Any, list[float]] = {}
        for seed, value in zip(self.seeds, self.values):
            if seed is not None:
                found.setdefault(seed, []).append(value)
        return {seed: float(np.mean(values)) for seed, values in found.items()}

    @property
    def mean(self) -> float:
        return float(np.mean(self.values)) if self.values else float("nan")

    @property
    def std(self) -> float:
        return float(np.std(self.values, ddof=1)) if len(self.values) > 1 else float("nan")

    @property
    def state(self) -> str:
        if self.n:
            return "collapsed" if self.collapsed else "ok"
        return "failed" if self.failed else "missing"

    @property
    def collapsed_note(self) -> str:
        """'collapsed 1/2' (1 of the cell's 2 runs), '' when none collapsed."""
        return f"collapsed {self.collapsed}/{self.n}" if self.collapsed else ""

    def notes(self) -> list[str]:
        """What the cell's runs did besides completing: 'collapsed 1/2', '1 failed', '2 missing'."""
        notes = [self.collapsed_note] if self.collapsed else []
        if self.failed:
            notes.append(f"{self.failed} failed")
        if self.missing:
            notes.append(f"{self.missing} missing")
        return notes

    def interval_text(self, digits: int = 1) -> str:
        """'[82.6, 89.0]': the 95 % interval of the mean; '' when n < 2."""
        low, high = self.interval
        return f"[{low:.{digits}f}, {high:.{digits}f}]" if self.n > 1 else ""

    def text(self, digits: int = 1, show_n: bool = True) -> str:
        """'62.6 ± 0.4 [61.6, 63.6] (n=3)' (mean ± std [95 % interval]), '59.1 (n=1)',
        '12.0 ± 0.3 [9.3, 14.7] (n=2, collapsed 1/2)', '— (2 failed)', '—'."""
        notes = self.notes()
        if not self.n:
            return MISSING + (f" ({', '.join(notes)})" if notes else "")
        number = f"{self.mean:.{digits}f}" + (f" ± {self.std:.{digits}f} {self.interval_text(digits)}" if self.n > 1 else "")
        counts = [f"n={self.n}"] if show_n else []
        inside = ", ".join(counts + notes)
        return number + (f" ({inside})" if inside else "")


def collect_cells(frame: pd.DataFrame, metric: str, row_of, col_of) -> dict[tuple[Any, Any], Cell]:
    """Cells keyed by (row, column) from each run's row and column value (functions of a frame row, given
    as a mapping of column to value: `run["first_op"]`, `run.get("seed")`, `"x" in run`)."""
    cells: dict[tuple[Any, Any], Cell] = {}
    values = numeric_metric(frame, metric).to_numpy()
    # Rows as plain dicts: iterrows builds a Series per row, a second on 10,000 runs.
    for position, run in enumerate(frame.to_dict(orient="records")):
        key = (row_of(run), col_of(run))
        cell = cells.setdefault(key, Cell(planned=True))
        status = run["status"]
        if status == "completed":
            value = values[position]
            if np.isfinite(value):
                cell.values.append(float(value))
                cell.seeds.append(hashable(run.get("seed")))
                collapsed = run_collapsed(run)
                cell.diagnosed += collapsed is not None
                cell.collapsed += bool(collapsed)
        elif status == "failed":
            cell.failed += 1
        elif status == "missing":
            cell.missing += 1
    return cells


def any_diagnosed(cells: Iterable[Cell]) -> bool:
    """Whether any of these cells' runs has the collapse diagnostic: then tables get a `collapsed` column."""
    return any(cell.diagnosed for cell in cells)


COLLAPSE_LEGEND = ("collapsed k/n: k of the cell's n completed runs collapsed (mean per-dimension std of the "
                   "l2-normalised embeddings below the threshold × 1/√d; ablate.evaluate.collapse)")
