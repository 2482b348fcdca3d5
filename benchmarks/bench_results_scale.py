"""Benchmark: `ablate status` and `ablate report` on a grid of 10,000 results, each as a fresh process.

Generates a Figure 5 grid (the 7 operators of grids/pairwise.yaml as ordered pairs, 49 cells) with
as many seeds as it takes to plan `--runs` runs (10,000: 205 seeds, 10,045 planned runs) and writes
the first `--runs` of them as result.json files through ablate's own writer
(ablate.store.write_result), shaped as `ablate run` writes them (ablate.run.run_and_store): the
resolved spec, axes, metrics, a 100-epoch loss curve, timings, fast_path, the collapse diagnostic
and provenance. One run in 97 is failed (with an error record); the planned runs past `--runs`
have no result and show as pending / missing. Then it times, wall clock from start to exit of
`python -m ablate ...` (interpreter start-up included):

  ablate status GRID.yaml                          reads every result, prints the counts and the failures
  ablate report --heatmap --grid GRID.yaml         Figure 5: the heatmap, its CSV and Markdown
  ablate report --grid GRID.yaml                   everything the grid allows and index.html

Each command runs once untimed (Python compiles the tree's .pyc files then, the page cache fills),
then `--repeats` times; the minimum and the median are reported. With `--before TREE` the same
commands also run against another copy of ablate (for example the last commit:
`git archive HEAD | tar -x -C TREE`; repeatable), through PYTHONPATH, alternating with this tree so
that all see the same load; what each tree prints and the report files it writes are compared with
the first tree's, and the result file says which differ (a speed-up changes none of them). Run:

    python benchmarks/bench_results_scale.py [--runs 10000] [--repeats 5] [--before /tmp/before
        --before-label "before (HEAD)" ...] [--workdir DIR] [--out FILE.md]

`--workdir DIR` keeps the generated results there and reuses them when run again with the same
`--runs` (each generated file is written with an fsync, as ablate writes results).
"""

from __future__ import annotations

import argparse
import filecmp
import math
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parents[1]  # this checkout: the "after" tree
sys.path.insert(0, str(HERE))  # run as a script from anywhere: this tree's ablate writes the results
DEFAULT_OUT = HERE / "benchmarks" / "results" / "results-scale-cpu-2core.md"
GRID_NAME = "scale"
OPERATORS = ["crop", "cutout", "color", "sobel", "noise", "blur", "rotate"]  # grids/pairwise.yaml's order
EPOCHS = 100
FAILED_EVERY = 97  # one run in 97 failed: `ablate status` lists each, reports count them per cell
MARKER = "generated.txt"  # in the work folder: how many results it holds


def grid_yaml(seeds: int) -> str:
    """A Figure 5 grid on CIFAR-10 (grids/pairwise.yaml's settings) with `seeds` seeds."""
    return (f"name: {GRID_NAME}\n"
            "dataset: {name: cifar10, image_size: 32}\n"
            "model: {arch: resnet18, width: 1, stem: cifar, proj_dim: 128}\n"
            "method: {name: simclr, temperature: 0.5}\n"
            f"train: {{epochs: {EPOCHS}, batch_size: 512, lr: 1.0, optimizer: lars, weight_decay: 1.0e-6, "
            "momentum: 0.9, warmup_epochs: 10}\n"
            "augment: {protocol: one_branch, color_strength: 0.5}\n"
            f"grid:\n  pair: [{', '.join(OPERATORS)}]\n  seed: [{', '.join(str(s) for s in range(seeds))}]\n")


# ------------------------------------------------------------------------------------- generating


def cell_accuracy(ops: list[str]) -> float:
    """A plausible mean linear top-1 for a pair: crop + color best, as in the paper's Figure 5."""
    strength = {"crop": 18.0, "color": 16.0, "cutout": 6.0, "blur": 4.0, "rotate": 5.0, "sobel": 7.0, "noise": 3.0}
    bonus = 20.0 if set(ops) == {"crop", "color"} else 0.0
    return 30.0 + sum(strength[op] for op in ops) + bonus


def fake_result(run: Any, grid: str, failed: bool, rng: random.Random) -> dict[str, Any]:
    """The result `ablate run` would write for a planned run (ablate.run.run_and_store's shape)."""
    ops = run.spec.augment.ops
    result: dict[str, Any] = {
        "run_id": run.run_id, "grid": grid, "spec": run.spec.model_dump(mode="json"), "axes": run.axes,
        "metrics": {}, "timings": {}, "error": None,
    }
    train_seconds = rng.uniform(200.0, 260.0)
    if failed:
        result["status"] = "failed"
        result["error"] = {"type": "RuntimeError", "message": "CUDA error: an illegal memory access was encountered",
                           "traceback": "Traceback (most recent call last):\n  File \"ablate/run.py\", line 224, in "
                                        "execute_run\nRuntimeError: CUDA error: an illegal memory access was encountered\n"}
        result["timings"]["total"] = rng.uniform(5.0, 60.0)
    else:
        top1 = cell_accuracy(ops) + rng.gauss(0.0, 0.6)
        loss = [6.2 * math.exp(-epoch / 30.0) + 0.9 + rng.gauss(0.0, 0.01) for epoch in range(EPOCHS)]
        std_ratio = rng.uniform(0.6, 0.95)
        result.update({
            "status": "completed",
            "metrics": {"linear_top1": top1, "linear_top5": min(100.0, top1 + 20.0), "linear_train_top1": top1 + 3.0,
                        "knn_top1": top1 - 4.0, "label_fraction": 1.0, "labelled_examples": 50000, "final_loss": loss[-1],
                        "images_per_second": rng.uniform(24000.0, 26000.0), "encoder_gflops_per_view": 0.5566,
                        "achieved_tflops": rng.uniform(150.0, 170.0), "mfu": rng.uniform(0.19, 0.22)},
            "curves": {"epoch_loss": loss},
            "timings": {"data": rng.uniform(0.5, 1.0), "train": train_seconds, "eval": rng.uniform(8.0, 12.0),
                        "total": train_seconds + 12.0},
            "resumed_from_epoch": None,
            "fast_path": {"bf16": True, "channels_last": True, "compile": True},
            "collapse": {"embedding_std": std_ratio / math.sqrt(512), "embedding_dim": 512, "std_ratio": std_ratio,
                         "threshold": 0.1, "collapsed": False},
        })
    result["provenance"] = {
        "ablate_version": "0.1.0", "git_commit": "870c09fd402e89aeb001fb227edc1181e2909884",
        "torch_version": "2.14.1+cu130", "kornia_version": "0.9.0", "python_version": "3.11.7",
        "device": "NVIDIA H200", "color": "eager", "host": f"gpu{rng.randrange(1, 17):02d}",
        "slurm_job_id": str(rng.randrange(10**6, 10**7)),
        "start_time": "2026-12-01T10:00:00+00:00", "end_time": "2026-12-01T10:04:10+00:00",
    }
    return result


def generate(workdir: Path, runs: int) -> Path:
    """Write the grid file and `runs` results under workdir (reused if already there); the grid file's path."""
    from ablate.config import load_grid
    from ablate.plan import plan_grid
    from ablate.store import run_dir, write_result

    grid_file = workdir / f"{GRID_NAME}.yaml"
    marker = workdir / MARKER
    if marker.is_file() and marker.read_text().strip() == str(runs) and grid_file.is_file():
        return grid_file
    shutil.rmtree(workdir / "results", ignore_errors=True)
    workdir.mkdir(parents=True, exist_ok=True)
    grid_file.write_text(grid_yaml(seeds=math.ceil(runs / len(OPERATORS) ** 2)))
    planned = plan_grid(load_grid(grid_file, []))
    rng = random.Random(0)
    clock = time.perf_counter()
    for index, run in enumerate(planned[:runs]):
        write_result(run_dir(workdir / "results", GRID_NAME, run.run_id),
                     fake_result(run, GRID_NAME, failed=index % FAILED_EVERY == FAILED_EVERY - 1, rng=rng))
        if (index + 1) % 1000 == 0:
            print(f"  {index + 1} results written ({time.perf_counter() - clock:.0f} s)", file=sys.stderr)
    marker.write_text(f"{runs}\n")
    return grid_file


# ---------------------------------------------------------------------------------------- timing


@dataclass
class Command:
    label: str
    argv: list[str]  # {grid} (the grid file), {results} and {out} are filled in per run


COMMANDS = [
    Command("ablate status GRID.yaml", ["status", "{grid}", "--results-dir", "{results}"]),
    Command("ablate report --heatmap --grid GRID.yaml",
            ["report", "--heatmap", "--grid", "{grid}", "--results-dir", "{results}", "--out", "{out}"]),
    Command("ablate report --grid GRID.yaml (everything)",
            ["report", "--grid", "{grid}", "--results-dir", "{results}", "--out", "{out}"]),
]


def time_once(tree: Path, command: Command, workdir: Path, out: Path) -> tuple[float, str]:
    """Seconds for one fresh `python -m ablate` process of `command` against `tree`, and its stdout (exit 0 checked)."""
    shutil.rmtree(out, ignore_errors=True)
    argv = [part.format(grid=workdir / f"{GRID_NAME}.yaml", results=workdir / "results", out=out) for part in command.argv]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "ablate", *argv], cwd=workdir, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{command.label} against {tree}: exit {done.returncode}:\n{done.stderr}")
    return seconds, done.stdout.replace(str(out), "OUT")


def same_files(a: Path, b: Path) -> list[str]:
    """Files under a and b that differ or exist on one side only (PDF and SVG skipped: they embed dates and ids)."""
    names_a = {p.relative_to(a) for p in a.rglob("*") if p.is_file()}
    names_b = {p.relative_to(b) for p in b.rglob("*") if p.is_file()}
    differ = sorted(str(n) for n in names_a ^ names_b)
    for name in sorted(names_a & names_b):
        if name.suffix not in (".pdf", ".svg") and not filecmp.cmp(a / name, b / name, shallow=False):
            differ.append(str(name))
    return differ


def measure(trees: dict[str, Path], workdir: Path, repeats: int) -> tuple[dict[str, dict[str, list[float]]], dict[str, dict[str, list[str]]]]:
    """({tree label: {command label: seconds of each repeat}}, {tree label: {command label: what differs}}).

    Trees alternate command by command. The untimed first run of each command also compares what
    each tree prints and the report files it writes (PNG, CSV, Markdown, LaTeX, HTML) with the first
    tree's: a speed-up must not change them, but trees may differ by more than speed-ups, so the
    differences are listed in the result file rather than stopping the benchmark.
    """
    times: dict[str, dict[str, list[float]]] = {label: {c.label: [] for c in COMMANDS} for label in trees}
    differences: dict[str, dict[str, list[str]]] = {label: {} for label in trees}
    for command in COMMANDS:
        outputs = {}
        for label, tree in trees.items():
            out = workdir / f"reports-{len(outputs)}"
            outputs[label] = time_once(tree, command, workdir, out)[1], out
        (_, (first_text, first_out)), *others = outputs.items()
        for label, (text, out) in others:
            differ = ["the printed lines"] if text != first_text else []
            differ += same_files(first_out, out) if out.exists() or first_out.exists() else []
            if differ:
                differences[label][command.label] = differ
                print(f"{command.label}: {label} differs from {next(iter(trees))}: {', '.join(differ)}", file=sys.stderr)
    for _ in range(repeats):
        for command in COMMANDS:
            for label, tree in trees.items():
                times[label][command.label].append(time_once(tree, command, workdir, workdir / "reports-timed")[0])
    return times, differences


def machine() -> dict[str, str]:
    """CPU and cores as the other benchmarks describe them, plus the Python and libraries that ran the commands."""
    import pandas
    import pydantic

    from ablate.bench_common import core_count, cpu_model

    return {"cpu": cpu_model(), "cores": str(core_count()), "python": platform.python_version(),
            "pydantic": pydantic.VERSION, "pandas": pandas.__version__, "os": f"{platform.system()} {platform.release()}"}


def markdown(times: dict[str, dict[str, list[float]]], trees: dict[str, Path], repeats: int, runs: int,
             info: dict[str, str], loads: tuple[str, str], differences: dict[str, dict[str, list[str]]] | None = None,
             note: str | None = None) -> str:
    labels = list(trees)
    seeds = math.ceil(runs / len(OPERATORS) ** 2)
    planned = seeds * len(OPERATORS) ** 2
    failed = runs // FAILED_EVERY
    lines = [f"# Scale benchmark: `ablate status` and `ablate report` on {runs:,} results", "",
             f"A {len(OPERATORS)} × {len(OPERATORS)} pair grid × {seeds} seeds ({planned:,} planned runs): {runs:,} "
             f"result.json files written by `ablate.store.write_result` ({runs - failed:,} completed, {failed} failed, "
             f"each with a {EPOCHS}-epoch loss curve), {planned - runs} runs without a result. "
             f"Wall clock of a fresh `python -m ablate ...` process (interpreter start-up included), min and median of "
             f"{repeats} runs after one untimed run; trees alternate command by command.", "",
             "| machine | |", "|---|---|"]
    lines += [f"| {key} | {value} |" for key, value in info.items()]
    lines += [f"| load average (1 min), start / end | {loads[0]} / {loads[1]} |", "",
              "The machine is shared with other sessions, whose tests may run on its 2 cores during the measurement; "
              "the load average shows how busy it was (the benchmark itself keeps about one core busy). Other "
              "processes only ever add time.", ""]
    lines += [f"- **{label}**: `{trees[label]}`" for label in labels]
    first, others = labels[0], labels[1:]
    header = "| command | " + " | ".join(f"{label}: min s | {label}: median s" for label in labels)
    header += "".join(f" | median, {first} / {label}" for label in others)
    lines += ["", header + " |", "|---|" + "---:|" * (2 * len(labels) + len(others))]
    for command in COMMANDS:
        medians = {label: statistics.median(times[label][command.label]) for label in labels}
        cells = [f"{number:.2f}" for label in labels for number in (min(times[label][command.label]), medians[label])]
        cells += [f"{medians[first] / medians[label]:.1f}×" for label in others]
        lines.append(f"| `{command.label}` | " + " | ".join(cells) + " |")
    if others:
        lines += ["", f"Outputs, compared with {first}'s on the untimed runs (PDF and SVG left out: they embed dates and "
                  "random ids):", ""]
        for label in others:
            differ = (differences or {}).get(label) or {}
            lines.append(f"- {label}: " + ("the same printed lines and report files." if not differ else
                                           "; ".join(f"`{command}`: {', '.join(names)} differ" for command, names in differ.items()) + "."))
    if note:
        lines += ["", f"Note: {note}"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000, help="results to generate (default 10000)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per command and tree (default 5)")
    parser.add_argument("--before", type=Path, action="append", default=[],
                        help="another ablate tree to time alongside this one (repeatable; outputs are compared with the first)")
    parser.add_argument("--before-label", action="append", default=[],
                        help="its name in the table, one per --before (default: before, then the folder's name)")
    parser.add_argument("--label", default="after", help="this tree's name in the table (default: after)")
    parser.add_argument("--note", help="a sentence for the end of the result file (what the trees hold, say)")
    parser.add_argument("--workdir", type=Path, help="keep the generated results here (default: a temporary folder)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"Markdown file (default: {DEFAULT_OUT.relative_to(HERE)})")
    args = parser.parse_args()
    from ablate.bench_common import load_average

    trees = {}
    for index, tree in enumerate(args.before):
        label = args.before_label[index] if index < len(args.before_label) else ("before" if index == 0 else tree.name)
        trees[label] = tree.resolve()
    trees[args.label] = HERE
    with tempfile.TemporaryDirectory(prefix="ablate-scale-") as temp:
        workdir = (args.workdir or Path(temp)).resolve()
        generate(workdir, args.runs)
        start_load = load_average()
        times, differences = measure(trees, workdir, args.repeats)
        end_load = load_average()
    text = markdown(times, trees, args.repeats, args.runs, machine(), (start_load, end_load), differences, args.note)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    temp_out = args.out.with_name(f".{args.out.name}.tmp")
    temp_out.write_text(text)
    os.replace(temp_out, args.out)


if __name__ == "__main__":
    main()
