"""Result files with known numbers, written through ablate.store exactly as a real run writes them."""

from __future__ import annotations

import hashlib
import itertools
from pathlib import Path
from collections.abc import Callable
from typing import Any

import numpy as np

from ablate import store

PAPER_OPS = ["crop", "cutout", "color", "sobel", "noise", "blur", "rotate"]


def make_spec(ops: list[str], seed: int = 0, method: str = "simclr", strength: float = 1.0,
              dataset: str = "shapes", batch_size: int = 256) -> dict[str, Any]:
    return {"dataset": {"name": dataset, "image_size": 32}, "model": {"arch": "small_cnn"}, "method": method,
            "train": {"epochs": 1, "batch_size": batch_size}, "eval": {"knn_k": 20},
            "augment": {"protocol": "one_branch", "ops": list(ops), "color_strength": strength, "crop_scale": [0.08, 1.0]},
            "seed": seed}


def run_id(spec: dict[str, Any]) -> str:
    return hashlib.sha256(repr(sorted(str(spec).split())).encode()).hexdigest()[:12]


def make_result(spec: dict[str, Any], grid: str, value: float | None, status: str = "completed",
                seconds: float = 30.0, device: str = "cpu (test, 2 cores)") -> dict[str, Any]:
    metrics = {} if status != "completed" else {"linear_top1": value, "linear_top5": min(100.0, value + 20), "knn_top1": value - 5}
    return {"run_id": run_id(spec), "grid": grid, "status": status, "spec": spec, "axes": {}, "metrics": metrics,
            "timings": {"total": seconds}, "provenance": {"device": device},
            "error": None if status == "completed" else {"type": "RuntimeError", "message": "boom", "traceback": ""}}


def with_collapse(result: dict[str, Any], collapsed: bool, dim: int = 128) -> dict[str, Any]:
    """The result with the collapse record a run of this version writes (ablate.evaluate.collapse):
    std_ratio 0.01 when collapsed, 0.8 when healthy, against the threshold 0.1."""
    ratio = 0.01 if collapsed else 0.8
    record = {"embedding_std": ratio / dim**0.5, "embedding_dim": dim, "std_ratio": ratio, "threshold": 0.1, "collapsed": collapsed}
    return result | {"collapse": record}


def write_results(root: Path, grid: str, results: list[dict[str, Any]]) -> None:
    for result in results:
        store.write_result(store.run_dir(root, grid, result["run_id"]), result)


def pair_value(first: str, second: str, seed: int, offset: float = 0.0) -> float:
    """A known, seed-dependent number for each ordered pair (crop+color highest, as in the paper)."""
    base = 20.0 + 3.0 * PAPER_OPS.index(first) + 1.0 * PAPER_OPS.index(second) + offset
    if (first, second) == ("crop", "color"):
        base = 60.0 + offset
    return round(base + [0.0, 1.5, -0.7, 2.2][seed], 3)


def ordered_pairs(ops: list[str]) -> list[list[str]]:
    return [[a] if a == b else [a, b] for a, b in itertools.product(ops, ops)]


def pair_grid(
    root: Path, grid: str, ops: list[str], seeds: tuple[int, ...], absent: tuple[tuple[str, str], ...] = (),
    failed: Callable[[tuple[str, str], int], bool] = lambda key, seed: False,
    value: Callable[[str, str, int], float] = pair_value, seconds: float = 30.0, **spec_options: Any,
) -> tuple[list[dict[str, Any]], dict[tuple[str, str], list[float]]]:
    """Every ordered pair of `ops` × `seeds` planned; pairs in `absent` never ran, runs where `failed` failed,
    the others completed with `value`. Returns (the plan, the values written per (first, second) cell)."""
    plan, written, results = [], {}, []
    for pair in ordered_pairs(ops):
        key = (pair[0], pair[-1])
        for seed in seeds:
            spec = make_spec(pair, seed, **spec_options)
            plan.append({"run_id": run_id(spec), "spec": spec})
            if key in absent:
                continue
            if failed(key, seed):
                results.append(make_result(spec, grid, None, status="failed"))
                continue
            number = value(*key, seed)
            written.setdefault(key, []).append(number)
            results.append(make_result(spec, grid, number, seconds=seconds))
    write_results(root, grid, results)
    return plan, written


def distinct_colours(pixels: np.ndarray) -> int:
    """Number of distinct RGB colours in an (..., 3) uint8 array."""
    flat = pixels.reshape(-1, 3).astype(np.int32)
    return len(np.unique((flat[:, 0] << 16) | (flat[:, 1] << 8) | flat[:, 2]))


# Student t quantiles t(0.975, df) as published to 15 significant digits (R: qt(0.975, df)); t tables give 12.706,
# 4.303, 3.182, 2.776, 2.262.
T_975 = {1: 12.7062047361747, 2: 4.30265272974946, 3: 3.18244630528371, 4: 2.77644510519779, 9: 2.26215716279820}


def interval(values: list[float]) -> tuple[float, float]:
    """The 95 % t interval of the mean, by hand: mean ± t(0.975, n−1) · s/√n."""
    import statistics

    mean, half = statistics.mean(values), T_975[len(values) - 1] * statistics.stdev(values) / len(values) ** 0.5
    return mean - half, mean + half


def cell_text(values: list[float]) -> str:
    """How a table cell with these values starts: '85.8 ± 1.3 [82.6, 89.0] (n=3' (its notes may follow)."""
    import statistics

    low, high = interval(values)
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f} [{low:.1f}, {high:.1f}] (n={len(values)}"


def markdown_table(text: str, heading: str | None = None) -> tuple[dict[str, list[str]], str]:
    """({row label: [cell texts]}, header line) of the first Markdown table after the line starting with `heading`
    (after the start of the text when None)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(heading)) if heading else 0
    head = next(i for i in range(start, len(lines)) if lines[i].startswith("| "))
    rows = {}
    for line in lines[head + 2:]:
        if not line.startswith("| "):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        rows[cells[0]] = cells[1:]
    return rows, lines[head]


def holm_by_hand(pvalues):
    """Holm's step-down adjustment: sort, multiply the i-th smallest (from 0) by m − i, keep the running maximum, cap at 1."""
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    adjusted, running = [0.0] * len(pvalues), 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(pvalues) - rank) * pvalues[index]))
        adjusted[index] = running
    return adjusted


def p_text(p):
    return "p<0.001" if p < 0.001 else f"p={p:.3f}"
