"""Benchmark: how long `ablate` commands that train nothing take, each as a fresh process.

Times, wall clock from start to exit of `python -m ablate ...` (interpreter start-up included):

  ablate --help
  ablate run bad.yaml                         a grid with a typo (`pair: [crop, zoom]`): one line, exit 2
  ablate run grids/quickstart.yaml --dry-run  on an empty results folder
  ablate status grids/quickstart.yaml         on an empty results folder

Each command runs once untimed (Python compiles the tree's .pyc files then), then `--repeats` times;
the minimum and the median are reported. With `--before TREE` the same commands also run against
another copy of ablate (for example an earlier commit: `git archive <commit> | tar -x -C TREE`),
through PYTHONPATH, alternating with this tree so that both see the same load. Run:

    python benchmarks/bench_startup.py [--repeats 10] [--before /tmp/before --before-label "before (HEAD)"] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]  # this checkout: the "after" tree
DEFAULT_OUT = HERE / "benchmarks" / "results" / "startup-cpu-2core.md"
TYPO_GRID = "name: x\ngrid: {pair: [crop, zoom]}\n"


@dataclass
class Command:
    label: str
    argv: list[str]  # {grid} and {empty} are filled in per tree
    exit_code: int


COMMANDS = [
    Command("ablate --help", ["--help"], 0),
    Command("ablate run bad.yaml (typo in the grid)", ["run", "bad.yaml"], 2),
    Command("ablate run grids/quickstart.yaml --dry-run", ["run", "{grid}", "--dry-run", "--results-dir", "{empty}"], 0),
    Command("ablate status grids/quickstart.yaml (empty results)", ["status", "{grid}", "--results-dir", "{empty}"], 0),
]


def time_once(tree: Path, command: Command, workdir: Path) -> float:
    """Seconds for one fresh `python -m ablate` process of `command` against `tree`; its exit code is checked."""
    argv = [part.format(grid=tree / "grids" / "quickstart.yaml", empty=workdir / "empty-results") for part in command.argv]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "ablate", *argv], cwd=workdir, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != command.exit_code:
        raise SystemExit(f"{command.label} against {tree}: exit {done.returncode}, expected {command.exit_code}:\n{done.stderr}")
    return seconds


def measure(trees: dict[str, Path], repeats: int) -> dict[str, dict[str, list[float]]]:
    """{tree label: {command label: seconds of each repeat}}; trees alternate command by command."""
    times: dict[str, dict[str, list[float]]] = {label: {c.label: [] for c in COMMANDS} for label in trees}
    with tempfile.TemporaryDirectory(prefix="ablate-startup-") as folder:
        workdir = Path(folder)
        (workdir / "bad.yaml").write_text(TYPO_GRID)
        (workdir / "empty-results").mkdir()
        for command in COMMANDS:
            for tree in trees.values():
                time_once(tree, command, workdir)  # warm-up: .pyc files, page cache
        for _ in range(repeats):
            for command in COMMANDS:
                for label, tree in trees.items():
                    times[label][command.label].append(time_once(tree, command, workdir))
    return times


def machine() -> dict[str, str]:
    """CPU and cores as the other benchmarks describe them, plus the Python that ran the commands."""
    from ablate.bench_common import core_count, cpu_model

    return {"cpu": cpu_model(), "cores": str(core_count()), "python": platform.python_version(),
            "os": f"{platform.system()} {platform.release()}"}


def markdown(times: dict[str, dict[str, list[float]]], trees: dict[str, Path], repeats: int,
             info: dict[str, str], loads: tuple[str, str]) -> str:
    labels = list(trees)
    lines = ["# Start-up benchmark: `ablate` commands that train nothing", "",
             f"Wall clock of a fresh `python -m ablate ...` process (interpreter start-up included), min and median of "
             f"{repeats} runs after one untimed run; trees alternate command by command.", "",
             "| machine | |", "|---|---|"]
    lines += [f"| {key} | {value} |" for key, value in info.items()]
    lines += [f"| load average (1 min), start / end | {loads[0]} / {loads[1]} |", ""]
    lines += [f"- **{label}**: `{trees[label]}`" for label in labels]
    header = "| command | " + " | ".join(f"{label}: min s | {label}: median s" for label in labels)
    if len(labels) == 2:
        header += f" | median, {labels[0]} / {labels[1]}"
    lines += ["", header + " |", "|---|" + "---:|" * (2 * len(labels) + (len(labels) == 2))]
    for command in COMMANDS:
        cells = []
        medians = []
        for label in labels:
            seconds = times[label][command.label]
            medians.append(statistics.median(seconds))
            cells += [f"{min(seconds):.3f}", f"{medians[-1]:.3f}"]
        if len(labels) == 2:
            cells.append(f"{medians[0] / medians[1]:.1f}×")
        lines.append(f"| `{command.label}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10, help="timed runs per command and tree (default 10)")
    parser.add_argument("--before", type=Path, help="another ablate tree to time alongside this one")
    parser.add_argument("--before-label", default="before", help="its name in the table (default: before)")
    parser.add_argument("--label", default="after", help="this tree's name in the table (default: after)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"Markdown file (default: {DEFAULT_OUT.relative_to(HERE)})")
    args = parser.parse_args()
    from ablate.bench_common import load_average  # imports torch, here in the parent only, before any timing

    trees = {args.before_label: args.before.resolve()} if args.before else {}
    trees[args.label] = HERE
    start_load = load_average()
    times = measure(trees, args.repeats)
    text = markdown(times, trees, args.repeats, machine(), (start_load, load_average()))
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    temp = args.out.with_name(f".{args.out.name}.tmp")
    temp.write_text(text)
    os.replace(temp, args.out)


if __name__ == "__main__":
    main()
