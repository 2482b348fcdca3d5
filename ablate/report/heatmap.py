"""Figure 5 style heatmap: linear top-1 for every ordered pair of operators.

Rows are the first operator, columns the second, the diagonal is the operator alone, and an
extra column holds each row's mean (as in the paper). Cells show mean (± std over seeds when
n > 1); a cell with no completed run is hatched and labelled, never dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from ablate.config import OPERATORS  # noqa: E402

PAPER_ORDER = ["crop", "cutout", "color", "sobel", "noise", "blur", "rotate"]
METRIC_LABELS = {"linear_top1": "linear top-1 (%)", "knn_top1": "kNN top-1 (%)", "linear_top5": "linear top-5 (%)"}


@dataclass
class PairTable:
    mean: pd.DataFrame  # first × second operator
    std: pd.DataFrame
    count: pd.DataFrame
    row_mean: pd.Series  # mean over the row's cells that have a value


def operator_order(names: set[str]) -> list[str]:
    """The paper's order first, then any other operator in the vocabulary's order, then the rest."""
    known = [op for op in PAPER_ORDER if op in names]
    known += [op for op in OPERATORS if op in names and op not in known]
    return known + sorted(names - set(known))


def pair_frame(results: pd.DataFrame) -> pd.DataFrame:
    """Completed runs whose pipeline is one operator or an ordered pair."""
    if results.empty:
        return results
    done = results[results["status"] == "completed"].copy()
    return done[done["augment.ops"].str.count(r"\+") <= 1]


def pair_table(pairs: pd.DataFrame, operators: list[str], metric: str = "linear_top1") -> PairTable:
    stats = pairs.groupby(["first_op", "second_op"])[metric].agg(["mean", "std", "count"]) if not pairs.empty else None
    shape = pd.DataFrame(np.nan, index=operators, columns=operators)
    mean, std, count = shape.copy(), shape.copy(), shape.copy().fillna(0)
    if stats is not None:
        for (first, second), row in stats.iterrows():
            if first in operators and second in operators:
                mean.loc[first, second] = row["mean"]
                std.loc[first, second] = row["std"]
                count.loc[first, second] = row["count"]
    return PairTable(mean, std, count, mean.mean(axis=1, skipna=True))


def cell_label(mean: float, std: float, count: float) -> str:
    if np.isnan(mean):
        return "missing"
    if count > 1 and not np.isnan(std):
        return f"{mean:.1f}\n±{std:.1f}"
    return f"{mean:.1f}"


def draw_heatmap(table: PairTable, title: str, metric: str = "linear_top1") -> plt.Figure:
    operators = list(table.mean.index)
    values = table.mean.copy()
    values["mean"] = table.row_mean
    labels = np.empty(values.shape, dtype=object)
    for i, first in enumerate(operators):
        for j, second in enumerate(operators):
            labels[i, j] = cell_label(table.mean.loc[first, second], table.std.loc[first, second], table.count.loc[first, second])
        labels[i, -1] = "—" if np.isnan(table.row_mean[first]) else f"{table.row_mean[first]:.1f}"
    side = 1.0 + 0.95 * (len(operators) + 1)
    figure, axes = plt.subplots(figsize=(side + 1.5, side * 0.85 + 0.8))
    finite = values.to_numpy()[np.isfinite(values.to_numpy())]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 100.0)
    sns.heatmap(values, annot=labels, fmt="", cmap="viridis", vmin=low, vmax=high, ax=axes, linewidths=0.5,
                linecolor="white", cbar_kws={"label": METRIC_LABELS.get(metric, metric)}, annot_kws={"fontsize": 9})
    # Missing cells: hatched, so that an absent run can never be mistaken for a low number.
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            if np.isnan(values.iat[i, j]):
                axes.add_patch(plt.Rectangle((j, i), 1, 1, fill=False, hatch="///", edgecolor="0.6", linewidth=0))
    axes.axvline(len(operators), color="white", linewidth=4)
    axes.set_xlabel("2nd transformation")
    axes.set_ylabel("1st transformation")
    axes.set_title(title, fontsize=10)
    axes.tick_params(axis="x", rotation=0)
    axes.tick_params(axis="y", rotation=0)
    figure.tight_layout()
    return figure


def table_markdown(table: PairTable) -> str:
    operators = list(table.mean.index)
    lines = ["| 1st \\ 2nd | " + " | ".join(operators) + " | row mean |", "|---" * (len(operators) + 2) + "|"]
    for first in operators:
        cells = []
        for second in operators:
            m, s, n = table.mean.loc[first, second], table.std.loc[first, second], table.count.loc[first, second]
            cells.append("—" if np.isnan(m) else (f"{m:.1f} ± {s:.1f} (n={int(n)})" if n > 1 else f"{m:.1f} (n=1)"))
        row_mean = table.row_mean[first]
        cells.append("—" if np.isnan(row_mean) else f"{row_mean:.1f}")
        lines.append(f"| {first} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def table_csv(table: PairTable) -> pd.DataFrame:
    """Long format: one row per cell with mean, std and n (missing cells included with n = 0)."""
    rows = []
    for first in table.mean.index:
        for second in table.mean.columns:
            rows.append({"first": first, "second": second, "mean": table.mean.loc[first, second],
                         "std": table.std.loc[first, second], "n": int(table.count.loc[first, second])})
    return pd.DataFrame(rows)
