"""The committed quickstart reports come out byte for byte from their results, whether those are files of
schema version 1 (the method a bare name, SimCLR's temperature under train) or version 2 (the method a
mapping of its settings). The results are rebuilt from the committed CSVs: each cell's runs get values
with exactly the committed mean and standard deviation, on the committed device and compute time."""

from __future__ import annotations

import json
import re
import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from ablate import store
from ablate.report.build import write_report

REPORTS = Path(__file__).resolve().parents[2] / "reports"
DEVICE = "cpu (x86_64, 2 cores, 2 threads)"
TEMPERATURE = 0.2  # grids/quickstart*.yaml
TABLE1_SETTINGS = {"1/8": (["crop", "color"], 0.125), "1/4": (["crop", "color"], 0.25), "1/2": (["crop", "color"], 0.5),
                   "1": (["crop", "color"], 1.0), "1 (+Blur)": (["crop", "color", "blur"], 1.0),
                   "AutoAug": (["crop", "autoaugment"], None)}


def values_with(mean: float, std: float, n: int) -> list[float]:
    """n numbers whose mean is `mean` and whose sample standard deviation is `std`."""
    return {1: [mean], 2: [mean - std / math.sqrt(2), mean + std / math.sqrt(2)], 3: [mean - std, mean, mean + std]}[n]


def spec(version: int, ops: list[str], seed: int, method: str, strength: float | None, protocol: str) -> dict[str, Any]:
    augment = {"protocol": protocol, "ops": ops, "crop_scale": [0.25, 1.0]} | ({"color_strength": strength} if strength else {})
    spec = {"dataset": {"name": "shapes", "image_size": 32}, "model": {"arch": "small_cnn"}, "seed": seed,
            "train": {"epochs": 10, "batch_size": 256}, "augment": augment}
    if version == 1:
        return spec | {"method": method, "train": spec["train"] | {"temperature": TEMPERATURE}}
    return spec | {"method": {"name": method} | ({"temperature": TEMPERATURE} if method == "simclr" else {})}


def write_grid(root: Path, grid: str, version: int, runs: list[tuple[dict[str, Any], float]], compute_s: float) -> list[dict]:
    """Result files as ablate of that version wrote them; returns the plan."""
    plan = []
    for index, (run_spec, value) in enumerate(runs):
        result = {"run_id": f"r{index:03d}", "grid": grid, "status": "completed", "spec": run_spec, "axes": {},
                  "metrics": {"linear_top1": value, "knn_top1": value - 3}, "timings": {"total": compute_s / len(runs)},
                  "provenance": {"device": DEVICE, "color": "eager"}, "error": None}
        folder = store.run_dir(root, grid, result["run_id"])
        if version == 1:
            folder.mkdir(parents=True)
            (folder / store.RESULT_FILE).write_text(json.dumps(result, indent=2, sort_keys=True))
        else:
            store.write_result(folder, result)
        plan.append({"run_id": result["run_id"], "spec": run_spec})
    return plan


def committed_compute_s(report: Path) -> float:
    """The compute time a committed report's header states ("; 28.4 min compute"), in seconds."""
    (minutes,) = re.findall(r"; ([0-9.]+) min compute", report.read_text())
    return float(minutes) * 60


@pytest.mark.parametrize("version", [1, 2])
def test_quickstart_heatmap_markdown_is_reproduced(tmp_path, version):
    cells = pd.read_csv(REPORTS / "quickstart" / "heatmap.csv")
    runs = [(spec(version, [c.first] if c.first == c.second else [c.first, c.second], seed, "simclr", None, "one_branch"), value)
            for c in cells.itertuples() for seed, value in enumerate(values_with(c.mean, c.std, c.n))]
    plan = write_grid(tmp_path / "results", "quickstart", version, runs, committed_compute_s(REPORTS / "quickstart" / "heatmap.md"))
    write_report(tmp_path / "results", "quickstart", tmp_path / "reports", "heatmap", planned=plan)
    written = tmp_path / "reports" / "quickstart" / "heatmap.md"
    assert written.read_text() == (REPORTS / "quickstart" / "heatmap.md").read_text()


@pytest.mark.parametrize("version", [1, 2])
def test_quickstart_color_table1_is_reproduced(tmp_path, version):
    cells = pd.read_csv(REPORTS / "quickstart-color" / "table1.csv")
    runs = []
    for cell in cells.itertuples():
        ops, strength = TABLE1_SETTINGS[cell.color_distortion]
        for seed, value in enumerate(values_with(cell.mean, cell.std, cell.n)):
            runs.append((spec(version, ops, seed, cell.method.lower(), strength, "both_branches"), value))
    plan = write_grid(tmp_path / "results", "quickstart-color", version, runs,
                      committed_compute_s(REPORTS / "quickstart-color" / "table1.md"))
    write_report(tmp_path / "results", "quickstart-color", tmp_path / "reports", "table", planned=plan)
    for name in ("table1.md", "table1.tex"):
        written = tmp_path / "reports" / "quickstart-color" / name
        assert written.read_text() == (REPORTS / "quickstart-color" / name).read_text(), name
    table = pd.read_csv(tmp_path / "reports" / "quickstart-color" / "table1.csv")
    assert list(table.columns) == list(cells.columns)  # one table: SimCLR's temperature is no facet
    assert table[["mean", "std"]].to_numpy() == pytest.approx(cells[["mean", "std"]].to_numpy(), rel=1e-12)
