"""The paragraph that opens each report, in words, and the seeds a comparison would need (--seeds-needed).

A paragraph per table (per facet) says only what the paired tests support (ablate.report.stats; the
comparisons are attached by ablate.report.tables.attach_comparisons):

* the best cell, with its 95 % interval, and the cells not told apart from it (paired t-test over the
  seeds both have, Holm-corrected over the report's comparisons with the best cell, p ≥ 0.05);
  cells sharing fewer than 2 seeds with it are "not enough seeds to tell";
* the rows ordered by their mean, each neighbour pair joined by ">" where a paired t-test on the
  per-seed row means tells them apart (Holm-corrected over the report's neighbour pairs), by "≈"
  where it does not, by "?" where fewer than 2 seeds are shared;
* where the table has a reference column (--baseline): per row, the columns told apart from it;
* on a strength axis (Table 1: the colour strength of colour alone; a pivot's numeric column axis),
  each row's trend: Spearman's ρ over the runs (strength, value), Holm-corrected over the rows.

Seeds needed: for each comparison of interest (each cell against the best in a heatmap, each column
against the reference in a table), the least number of paired seeds whose paired t-test would tell a
difference of DIFF points with power 0.8 at α 0.05, from the std of that comparison's observed paired
differences (ablate.report.stats.seeds_needed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ablate.report.data import sort_key
from ablate.report.stats import ALPHA, MAX_SEEDS, POWER, holm, paired_test, seeds_needed, spearman
from ablate.report.tables import CellTable, Comparison, axis_title, correct, format_p

MAX_NAMED = 6  # cells named in one list of the paragraph; the rest are counted


def findings_markdown(paragraphs: list[str]) -> str:
    """The paragraphs as the Markdown file's opening ('' when there are none)."""
    return "".join(f"**Findings.** {text}\n\n" for text in paragraphs)


def named(names: list[str]) -> str:
    """'a, b and c'; past MAX_NAMED: 'a, ..., f and 4 more'; names that hold a comma ('crop+color, color_strength=0.5')
    are separated by '; '."""
    separator = "; " if any(", " in name for name in names) else ", "
    if len(names) > MAX_NAMED:
        return separator.join(names[:MAX_NAMED]) + f" and {len(names) - MAX_NAMED} more"
    return names[0] if len(names) == 1 else separator.join(names[:-1]) + " and " + names[-1]


# ------------------------------------------------------------------------------------------- rows


@dataclass
class RowMean:
    row: Any
    mean: float  # the mean of the row's cell means (the cells with a value), as the heatmap's row-mean column
    complete: bool  # every column of the row has a value
    per_seed: dict[Any, float]  # the mean over those cells for each seed all of them have


def row_means(table: CellTable) -> list[RowMean]:
    """The rows with a value, highest mean first."""
    found = []
    for row in table.rows:
        cells = [table.cell(row, col) for col in table.cols if table.cell(row, col).n]
        if not cells:
            continue
        values = [cell.by_seed() for cell in cells]
        shared = set.intersection(*(set(v) for v in values))
        per_seed = {seed: float(np.mean([v[seed] for v in values])) for seed in shared}
        found.append(RowMean(row, float(np.mean([cell.mean for cell in cells])), len(cells) == len(table.cols), per_seed))
    return sorted(found, key=lambda r: -r.mean)


def neighbour_comparisons(order: list[RowMean]) -> list[Comparison]:
    """Each row against the next lower one, paired over the seeds both per-seed means have."""
    comparisons = []
    for high, low in zip(order, order[1:]):
        shared = sorted(set(high.per_seed) & set(low.per_seed), key=sort_key)
        comparisons.append(Comparison(paired_test([high.per_seed[s] for s in shared], [low.per_seed[s] for s in shared])))
    return comparisons


def ranking_text(table: CellTable, order: list[RowMean], comparisons: list[Comparison]) -> str:
    if len(order) < 2:
        return ""
    text = f"{table.row_label(order[0].row)} {order[0].mean:.1f}" + ("*" if not order[0].complete else "")
    for row, comparison in zip(order[1:], comparisons):
        sign = "?" if not comparison.testable else (">" if comparison.told_apart else "≈")
        text += f" {sign} {table.row_label(row.row)} {row.mean:.1f}" + ("*" if not row.complete else "")
    symbols = {"?" if not c.testable else (">" if c.told_apart else "≈") for c in comparisons}
    legend = [part for symbol, part in ((">", "'>' told apart"), ("≈", "'≈' not told apart"),
                                        ("?", "'?' not enough seeds to tell")) if symbol in symbols]
    incomplete = " * over the row's cells with a result." if not all(r.complete for r in order) else ""
    return (f"Rows ({axis_title(table.row_axis)}) by mean: {text} (neighbours compared by a paired t-test on per-seed "
            f"row means, Holm-corrected: {', '.join(legend)}).{incomplete}")


# ------------------------------------------------------------------------------------------- best


def best_text(table: CellTable, family: int) -> str:
    if table.best is None:
        return "No cell has a completed run on the colour scale."
    cell = table.cell(*table.best)
    number = f"{cell.mean:.1f}, 95 % interval {cell.interval_text()}, n={cell.n}" if cell.n > 1 else f"{cell.mean:.1f}, n=1"
    text = f"Best: {table.cell_name(*table.best)} ({number})."
    comparisons = table.versus_best
    tied = [key for key, c in comparisons.items() if c.testable and not c.told_apart]
    apart = [key for key, c in comparisons.items() if c.told_apart]
    untested = [key for key, c in comparisons.items() if not c.testable]
    collapsed = [key for key, c in table.cells.items() if key != table.best and c.n and c.state == "collapsed"]
    if collapsed:  # a probe on a collapsed representation is not compared (tables.compare_with_best)
        text += f" Not compared: {len(collapsed)} cell{'s' if len(collapsed) > 1 else ''} with a collapsed run."
    if not comparisons:
        return text + " No other cell has a value to compare." if collapsed else text + " No other cell has a value."
    if not tied and not apart:
        return text + " Not enough seeds to tell which cells are tied with it (fewer than 2 seeds shared with it)."
    test = f"paired t-test over shared seeds, Holm-corrected over the report's {family} comparisons with the best cell"
    if tied:
        names = [f"{table.cell_name(*key)} ({table.cell(*key).mean:.1f}, {format_p(comparisons[key].t_p_holm)})" for key in tied]
        text += f" Not told apart from it ({test}, p ≥ {ALPHA:g}): {named(names)}."
        if apart:
            text += f" The other {len(apart)} cells with 2 or more shared seeds are lower (p < {ALPHA:g})."
    else:
        text += f" Every other cell with 2 or more shared seeds is lower ({test}, p < {ALPHA:g})."
    if untested:
        text += f" Not enough seeds to tell for {named([table.cell_name(*key) for key in untested])}."
    return text


# -------------------------------------------------------------------------------------- reference


def reference_text(table: CellTable) -> str:
    if table.reference is None or not table.versus_reference:
        return ""
    reference = table.col_label(table.reference)
    if not any(c.testable for c in table.versus_reference.values()):
        return f"Not enough seeds to tell any column from {reference} (fewer than 2 seeds shared with it)."
    parts = []
    for row in table.rows:
        mine = [(col, table.versus_reference[(row, col)]) for col in table.cols if (row, col) in table.versus_reference]
        if not mine:
            continue
        apart = [f"{table.col_label(col)} ({c.test.mean:+.1f}, {format_p(c.t_p_holm)})" for col, c in mine if c.told_apart]
        tied = [table.col_label(col) for col, c in mine if c.testable and not c.told_apart]
        untested = [table.col_label(col) for col, c in mine if not c.testable]
        words = []
        if apart:
            words.append(f"told apart: {named(apart)}")
        if tied:
            words.append(f"not told apart: {named(tied)}")
        if untested:
            words.append(f"not enough seeds: {named(untested)}")
        parts.append(f"{table.row_label(row)}: {'; '.join(words)}")
    return (f"Against {reference} (each row's own reference cell; paired t-test, Holm-corrected, p < {ALPHA:g}): "
            + ". ".join(parts) + ".")


def sign_flip_note(table: CellTable) -> str:
    """Where the comparisons have so few seeds that the exact sign-flip test cannot reach p < α (its least p is
    2/2^n), say so: its p-values in the tables are then no evidence either way."""
    counts = {c.test.n for c in [*table.versus_best.values(), *table.versus_reference.values()] if c.testable}
    if not counts or 2 / 2 ** max(counts) < ALPHA:
        return ""
    return (f"With {max(counts)} or fewer shared seeds the exact sign-flip test cannot reach p < {ALPHA:g} "
            f"(its least p is 2/2^n = {2 / 2 ** max(counts):g}); the t-test's p-values assume normal differences.")


# ------------------------------------------------------------------------------------------ trend


@dataclass
class Trend:
    row: Any
    rho: float
    p: float
    runs: int
    levels: int
    p_holm: float = math.nan


def trends(table: CellTable) -> list[Trend]:
    """Each row's Spearman ρ of value against the column's strength, over the runs (rows with 3+ strengths)."""
    if table.trend_x is None:
        return []
    found = []
    for row in table.rows:
        x, y = [], []
        for col in table.cols:
            strength = table.trend_x(col)
            if strength is not None:
                x += [strength] * table.cell(row, col).n
                y += table.cell(row, col).values
        levels = len(set(x))
        if levels >= 3:
            rho, p = spearman(x, y)
            found.append(Trend(row, rho, p, len(x), levels))
    return found


def strength_levels(table: CellTable) -> int:
    return len({x for col in table.cols if (x := table.trend_x(col)) is not None}) if table.trend_x else 0


def trend_text(table: CellTable, found: list[Trend], family: int) -> str:
    axis = axis_title(table.col_axis).lower() if table.col_axis == "color_distortion" else table.col_axis
    levels = strength_levels(table)
    if levels < 2:
        return ""
    if not found:
        return f"Too few values of {axis} ({levels}; 3 needed) to tell a trend."
    parts = []
    for trend in found:
        if math.isnan(trend.p):
            verdict = "no spread to rank"
        elif trend.p_holm < ALPHA:
            verdict = "rises with it" if trend.rho > 0 else "falls with it"
        else:
            verdict = "no trend the runs support"
        number = "" if math.isnan(trend.rho) else f"ρ = {trend.rho:+.2f}, {format_p(trend.p_holm)}, "
        parts.append(f"{table.row_label(trend.row)} {number}{verdict} ({trend.runs} runs, {trend.levels} values)")
    return (f"Trend along {axis} (Spearman's ρ over the runs, Holm-corrected over the report's {family} rows): "
            + "; ".join(parts) + ".")


# -------------------------------------------------------------------------------------- paragraphs


def report_findings(tables: list[CellTable]) -> list[str]:
    """One paragraph per table (prefixed with its facet where there are several), each family of tests
    (neighbouring rows, trends) Holm-corrected over the whole report as the cells' comparisons are."""
    orders = [row_means(table) for table in tables]
    neighbours = [neighbour_comparisons(order) for order in orders]
    correct([c for found in neighbours for c in found])
    found_trends = [trends(table) for table in tables]
    flat = [trend for found in found_trends for trend in found]
    for trend, adjusted in zip(flat, holm([t.p for t in flat])):
        trend.p_holm = float(adjusted)
    best_family = sum(c.testable for table in tables for c in table.versus_best.values())
    trend_family = sum(not math.isnan(t.p) for t in flat)
    paragraphs = []
    for table, order, comparisons, found in zip(tables, orders, neighbours, found_trends):
        sentences = [best_text(table, best_family), ranking_text(table, order, comparisons), reference_text(table),
                     trend_text(table, found, trend_family), sign_flip_note(table)]
        text = " ".join(sentence for sentence in sentences if sentence)
        paragraphs.append((f"{table.facet.label}: " if table.facet.values else "") + text)
    return paragraphs


# ---------------------------------------------------------------------------------- seeds needed


@dataclass
class SeedsNeeded:
    """--seeds-needed DIFF: one line per comparison of interest, as Markdown and as printed lines."""

    difference: float
    rows: list[tuple[str, int, float, str]] = field(default_factory=list)  # (comparison, pairs, std, seeds needed)

    @property
    def title(self) -> str:
        points = "point" if self.difference == 1 else "points"
        return (f"Seeds needed to tell {self.difference:g} {points} apart (paired t-test, power {POWER:g}, "
                f"α {ALPHA:g} two-sided; from the std of each comparison's paired differences)")

    @property
    def markdown(self) -> str:
        lines = [f"## {self.title}", "", "| comparison | seeds shared now | std of the differences | seeds needed |",
                 "|---|---|---|---|"]
        lines += [f"| {name} | {pairs} | {'—' if math.isnan(std) else f'{std:.2f}'} | {needed} |"
                  for name, pairs, std, needed in self.rows]
        return "\n".join(lines) + "\n"

    @property
    def lines(self) -> list[str]:
        return [self.title + ":"] + [f"  {name}: {needed}" + ("" if math.isnan(std) else f" (std {std:.2f} over {pairs} seeds)")
                                     for name, pairs, std, needed in self.rows]


def needed_text(comparison: Comparison, difference: float) -> str:
    test = comparison.test
    if not test.testable:
        return "not enough seeds to estimate the spread"
    if test.std == 0:
        return "no spread in the differences to estimate from"
    needed = seeds_needed(difference, test.std)
    return f"more than {MAX_SEEDS}" if needed is None else str(needed)


def seeds_needed_section(tables: list[CellTable], difference: float, family: str) -> SeedsNeeded:
    """family 'best': each cell against the best cell; 'reference': each column against its row's reference."""
    found = SeedsNeeded(difference)
    for table in tables:
        prefix = f"{table.facet.label}: " if table.facet.values else ""
        if family == "best":
            if table.best is None:
                continue
            pairs = [(f"{table.cell_name(*key)} vs {table.cell_name(*table.best)} (best)", c) for key, c in table.versus_best.items()]
        else:
            pairs = [(f"{table.row_label(row)}: {table.col_label(col)} vs {table.col_label(table.reference)}", c)
                     for (row, col), c in table.versus_reference.items()]
        for name, comparison in pairs:
            found.rows.append((prefix + name, comparison.test.n, comparison.test.std, needed_text(comparison, difference)))
    return found

