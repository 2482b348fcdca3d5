"""The `ablate` command: a thin layer over config → plan → execute → store → report.

Exit status: 0 success, 1 when a run failed, 2 for bad input (one clear line per problem, never a
traceback), 130 when interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

# Every other import is made where it is needed: `ablate --help` then loads neither pydantic nor the
# grid stages, and no command loads torch, kornia or submitit unless it trains, previews or submits.
if TYPE_CHECKING:
    from ablate.config import GridSpec
    from ablate.plan import PlannedRun
    from ablate.settings import Settings

DEFAULT_RESULTS = Path("results")
DEFAULT_REPORTS = Path("reports")
EXECUTORS = ("auto", "local", "slurm")  # ablate.settings.EXECUTORS, repeated so that --help needs no pydantic
LOG_KINDS = ("tensorboard",)  # ablate.log.LOG_KINDS, repeated like EXECUTORS
FETCHABLE = ("cifar10", "cifar100", "stl10", "imagenette", "tiny-imagenet")  # ablate.data.fetch.SOURCES, likewise


class UsageError(Exception):
    """Bad input found by the CLI itself (not by the grid validator); exit status 2."""


def _say(message: str) -> None:
    print(message, file=sys.stderr)


def load_and_plan(path: str, overrides: list[str]) -> tuple[GridSpec, list[PlannedRun]]:
    from ablate.config import load_grid

    grid = load_grid(Path(path), overrides)
    from ablate.plan import plan_grid  # after the grid is read: a grid with a typo never needs it

    return grid, plan_grid(grid)


def preflight(planned: list[PlannedRun]) -> None:
    """Fail before any training when a dataset's files are missing."""
    from ablate.data import DatasetUnavailable, load_dataset

    seen = set()
    for run in planned:
        key = run.spec.dataset.model_dump_json()
        if key in seen:
            continue
        seen.add(key)
        try:
            load_dataset(run.spec.dataset)
        except DatasetUnavailable as err:
            raise UsageError(str(err)) from None
        except (OSError, ValueError) as err:  # e.g. dataset.root is a file, unreadable, or holds a NUL byte
            raise UsageError(f"dataset {run.spec.dataset.name} (root {run.spec.dataset.root!r}) cannot be read: {err}") from None


# ------------------------------------------------------------------------------------------- run


def check_environment() -> Settings:
    """Every ABLATE_* variable, validated before any work: a bad value is bad input, said now (one line)."""
    from ablate.settings import SettingsError, load_settings

    try:
        return load_settings()
    except SettingsError as err:
        raise UsageError(str(err)) from None


def check_device() -> None:
    """The device ABLATE_DEVICE names must exist on this machine: for commands that train or preview.

    Needs torch, so the other commands (--dry-run, status, report) leave it out and start fast.
    """
    device = check_environment().device
    if device is None:
        return
    from ablate.run import parse_device

    try:
        parse_device(device)
    except ValueError as err:
        raise UsageError(f"ABLATE_DEVICE: {err}") from None


def device_argument(text: str):
    """argparse type for --device: a device this machine has (argparse makes the error one line, exit 2)."""
    from ablate.run import parse_device

    try:
        return parse_device(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def adopt_earlier_results(planned: list[PlannedRun], results_root: Path, grid: str, dry_run: bool) -> None:
    """Results of an earlier ablate (older run ids) moved to their runs' current ids, so they are not trained again."""
    from ablate.upgrade import adopt, earlier_results

    earlier = earlier_results(planned, results_root, grid)
    if not earlier:
        return
    if dry_run:
        print(f"grid {grid}: {len(earlier)} results written by an earlier ablate will be adopted under their new run ids "
              "by `ablate run` (listed as pending below)")
        return
    try:
        for adoption in earlier:
            adopt(adoption)
    except OSError as err:
        raise UsageError(f"cannot adopt the results of an earlier ablate in {results_root / grid} "
                         f"({err.strerror or err}); nothing was trained") from None
    print(f"grid {grid}: adopted {len(earlier)} results written by an earlier ablate (moved to their new run ids)")


def check_run_logs(kinds: list[str]) -> None:
    """--log: each log's package must be installed here (e.g. tensorboard), said before any work (one line)."""
    from ablate.log import LogUnavailable, check_logs

    try:
        check_logs(kinds)
    except LogUnavailable as err:
        raise UsageError(str(err)) from None


def command_run(args: argparse.Namespace) -> int:
    check_run_logs(args.log)
    grid, planned = load_and_plan(args.grid, args.set)
    from ablate.execute import make_executor, run_states, runs_to_do

    results_root = Path(args.results_dir)
    adopt_earlier_results(planned, results_root, grid.name, dry_run=args.dry_run)
    states = run_states(planned, results_root, grid.name)  # every result file read once, here
    todo = runs_to_do(planned, states, args.retry_failed)
    if args.dry_run:
        for run in planned:
            axes = " ".join(f"{k}={'+'.join(v) if isinstance(v, list) else v}" for k, v in run.axes.items())
            print(f"{run.run_id}  {states[run.run_id]:<9}  {axes}")
        print(f"grid {grid.name}: {len(planned)} runs, {len(planned) - len(todo)} done or skipped, {len(todo)} to run")
        return 0
    check_device()
    wanted = args.executor or check_environment().executor or "auto"
    executor = make_executor(wanted, grid, results_root, jobs=args.jobs, retry_failed=args.retry_failed, processes=args.devices)
    earlier_failures = [r for r in planned if states[r.run_id] == "failed"]
    if not todo:
        print(f"grid {grid.name}: all {len(planned)} runs are already done; nothing to train{executor.idle_note}. "
              f"Results in {results_root / grid.name}")
        if earlier_failures:
            print(f"{len(earlier_failures)} of them failed earlier; rerun them with --retry-failed")
            return 1
        return 0
    from ablate.store import check_writable

    check_writable(results_root)  # after the grid is read, before any training: a full or read-only disk is bad input
    from ablate.log import logging_to

    with logging_to(args.log):  # every executor hands the choice to its runs (ablate.log)
        started = executor.submit(todo, len(planned), check=preflight, say=print)
    if not started.runs:
        return 1  # nothing started nor in flight: every run was found lost (the executor said so)
    if args.no_wait and executor.keeps_running:
        print(f"not waiting; follow the runs with `ablate status {args.grid}`")
        return 0
    try:
        with logging_to(args.log):
            summary = executor.follow(started, say=print, show_progress=not args.quiet)
    except KeyboardInterrupt:
        if not executor.keeps_running:
            raise  # the runs stop with us: main's message
        _say(f"\nablate: stopped waiting; the jobs keep running {executor.keeps_running}. "
             f"Follow them with `ablate status {args.grid}`")
        return 130
    failed = len(summary.failed) + summary.lost
    print(f"grid {grid.name}: {summary.total} runs: {summary.completed} completed now, {summary.skipped} already done, "
          f"{failed} failed. Results in {results_root / grid.name}")
    for run_id, message in summary.failed:
        print(f"  failed {run_id}: {message}")
    if failed:
        print(f"see `ablate status {args.grid}`; rerun failed runs with --retry-failed")
        return 1
    return 0


# ---------------------------------------------------------------------------------------- status


def command_status(args: argparse.Namespace) -> int:
    """Counts from the result files and, for runs submitted to SLURM, from the scheduler (jobs recorded
    in the run folders). A job that ended without a result is recorded as failed, with its log's tail."""
    from ablate.execute import describe_failure, look
    from ablate.store import run_dir

    grid, planned = load_and_plan(args.grid, args.set)
    results_root = Path(args.results_dir)
    views = look(planned, grid.name, results_root)
    counts = {"completed": 0, "failed": 0, "pending": 0, "corrupt": 0, "running": 0, "queued": 0}
    problems = []
    for view in views:
        if view.state == "corrupt":
            counts["corrupt"] += 1
            problems.append(f"  corrupt {view.run.run_id}: {view.note} (treated as not done; it will be rerun)")
        elif view.state in ("completed", "failed"):
            counts[view.state] += 1
            if view.state == "failed":
                error = (view.result or {}).get("error") or {}
                folder = run_dir(results_root, grid.name, view.run.run_id)
                problems.append(f"  failed  {view.run.run_id}: {error.get('type', 'Error')}: {error.get('message', '')} ({folder})")
                if view.log is not None:
                    problems += ["  " + line for line in describe_failure(view, tail_lines=10)[1:]]
        else:
            counts["pending"] += 1
            if view.state in ("running", "queued"):
                counts[view.state] += 1
                job = view.job.state if view.job else "?"
                requeued = f", requeued {view.job.requeues}x" if view.job and view.job.requeues else ""
                problems.append(f"  {view.state:<7} {view.run.run_id}: SLURM job {view.job_id} {job}{requeued}; log: {view.log}")
    on_slurm = f" ({counts['running']} running, {counts['queued']} queued on SLURM)" if counts["running"] or counts["queued"] else ""
    print(f"grid {grid.name}: {len(planned)} runs: {counts['completed']} completed, {counts['failed']} failed, "
          f"{counts['pending']} pending{on_slurm}" + (f", {counts['corrupt']} corrupt" if counts["corrupt"] else ""))
    for line in problems:
        print(line)
    return 0


# ---------------------------------------------------------------------------------------- report


def command_report(args: argparse.Namespace) -> int:
    from ablate.config import GridError
    from ablate.report.build import latest_grid, write_compare_report, write_report
    from ablate.store import check_writable

    results_root = Path(args.results_dir)

    def resolve(given: str | None) -> tuple[str, list[dict] | None]:
        """Grid name and its planned runs ({run_id, spec}) when the grid file is known, else None."""
        path = None
        if given and (given.endswith((".yaml", ".yml")) or Path(given).is_file()):
            path = given
        else:
            given = given or latest_grid(results_root)
            candidate = Path("grids") / f"{given}.yaml"
            path = str(candidate) if candidate.is_file() else None
        if path is None:
            return given, None
        try:
            grid, planned = load_and_plan(path, args.set)
        except GridError:
            if path == given:
                raise
            return given, None  # an unrelated or broken grids/<name>.yaml: report without the plan
        if path != given and grid.name != given:
            return given, None
        # The RunSpec itself: load_grid_frame dumps only the specs of runs without a result (0.3 s at 10,000 runs).
        return grid.name, [{"run_id": r.run_id, "spec": r.spec} for r in planned]

    out = Path(args.out)
    check_writable(out, min_free_bytes=0, what="report folder", option="--out")
    if args.compare:
        (name_a, plan_a), (name_b, plan_b) = resolve(args.compare[0]), resolve(args.compare[1])
        written = write_compare_report(results_root, name_a, name_b, out, args.metric, plan_a, plan_b)
    else:
        name, planned = resolve(args.grid)
        # --cols alone is no pivot (that needs --rows): on a grid of several methods it lays out the methods report
        chosen = [w for w, on in (("heatmap", args.heatmap), ("table", args.table or bool(args.rows))) if on]
        chosen += [kind for kind in args.kind if kind not in chosen]
        if args.all or not chosen:
            chosen = ["all"]
        written = []
        for what in chosen:
            written += write_report(results_root, name, out, what, args.metric, planned, args.rows, args.cols,
                                    baseline=args.baseline, seeds_needed=args.seeds_needed, say=print)
    for path in written:
        print(path)
    return 0


# --------------------------------------------------------------------------------------- preview


def command_preview(args: argparse.Namespace) -> int:
    """Sample images of the grid's dataset under each operator alone and each ordered pair."""
    from ablate.config import OPERATORS as OPERATOR_NAMES
    from ablate.config import load_grid
    from ablate.data import DatasetUnavailable, load_dataset
    from ablate.preview import write_preview
    from ablate.store import check_writable

    check_device()
    grid = load_grid(Path(args.grid), args.set)
    out = Path(args.out) if args.out else Path(DEFAULT_REPORTS) / grid.name / "preview.png"
    check_writable(out.parent, min_free_bytes=0, what="preview folder", option="--out")
    ops = args.ops.split(",") if args.ops else (grid.grid.get("pair") or list(grid.augment.ops))
    unknown = [op for op in ops if op not in OPERATOR_NAMES]
    if unknown:
        raise UsageError(f"--ops: unknown operator {unknown[0]!r}; expected one of {', '.join(OPERATOR_NAMES)}")
    try:
        data = load_dataset(grid.dataset)
    except DatasetUnavailable as err:
        raise UsageError(str(err)) from None
    print(write_preview(data.train.images, ops, grid.augment, out, seed=args.seed, n_images=args.images))
    return 0


# ------------------------------------------------------------------------------------------ data


def command_data_fetch(args: argparse.Namespace) -> int:
    """Download, check and extract one dataset into --root (default: where dataset.name NAME is read from)."""
    from ablate.config import DatasetSpec
    from ablate.data import DatasetUnavailable, data_root
    from ablate.data.fetch import fetch, is_fetched

    root = data_root(DatasetSpec(name=args.name, root=args.root))
    try:
        target = fetch(args.name, root)
    except DatasetUnavailable as err:  # offline, dropped connection, bad checksum, damaged archive
        raise UsageError(str(err)) from None
    except OSError as err:  # e.g. --root is a file or not writable
        raise UsageError(f"cannot fetch {args.name} into {root}: {err.strerror or err}") from None
    how = "fetched" if is_fetched(args.name, root) else "already there, not fetched by ablate; remove it to fetch again"
    print(f"{args.name}: {target} ({how})")
    return 0


# ----------------------------------------------------------------------------------------- bench


def command_bench(args: argparse.Namespace) -> int:
    from ablate.bench import BenchmarkUnavailable, bench_command

    check_device()
    try:
        return bench_command(args)
    except BenchmarkUnavailable as err:  # bench augment outside a checkout: benchmarks/ is not installed
        raise UsageError(str(err)) from None


# ------------------------------------------------------------------------------------------ main


def positive_int(text: str) -> int:
    """argparse type: a whole number ≥ 1 (argparse turns the error into one usage line and exit 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1, got {value}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0 (argparse turns the error into one usage line and exit 2)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (value > 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ablate", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    def grid_options(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--set", action="append", default=[], metavar="PATH=VALUE",
                         help="override a field of the grid file, e.g. --set train.epochs=1 (repeatable)")
        sub.add_argument("--results-dir", default=str(DEFAULT_RESULTS), help="where results live (default: results)")

    run = commands.add_parser("run", help="run every pending run of a grid file")
    run.add_argument("grid", help="grid file, e.g. grids/quickstart.yaml")
    run.add_argument("--dry-run", action="store_true", help="print the runs, their ids and which are done; train nothing")
    run.add_argument("--jobs", type=positive_int, default=1, help="runs at once in worker processes (local executor)")
    run.add_argument("--devices", type=positive_int, default=1, metavar="N",
                     help="train each run on N devices at once, one process each (local executor): N GPUs, or N "
                          "processes on the CPU where there is none; train.batch_size stays the global batch. On "
                          "SLURM: the grid's slurm.gpus_per_node and slurm.nodes")
    run.add_argument("--retry-failed", action="store_true", help="also rerun runs that failed before")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    run.add_argument("--executor", choices=EXECUTORS, default=None,
                     help="auto (default, or $ABLATE_EXECUTOR): slurm where sbatch is on the PATH and the controller "
                          "answers (outside a SLURM job), else local; SLURM settings from the grid's slurm: section, "
                          "e.g. --set slurm.partition=gpu")
    run.add_argument("--no-wait", action="store_true", help="slurm: return right after submission (see `ablate status`)")
    run.add_argument("--log", action="append", default=[], choices=LOG_KINDS,
                     help="also write each run's training scalars live: tensorboard = results/<grid>/<run_id>/tensorboard/ "
                          "(needs pip install -e '.[tensorboard]'); not part of the run's spec or id")
    grid_options(run)
    run.set_defaults(handler=command_run)

    status = commands.add_parser("status", help="completed / failed / pending runs of a grid")
    status.add_argument("grid", help="grid file")
    grid_options(status)
    status.set_defaults(handler=command_status)

    report = commands.add_parser("report", help="draw a grid's heatmap, tables and HTML page (default: all of them)")
    report.add_argument("--heatmap", action="store_true", help="Figure 5 style heatmap of first × second operator")
    report.add_argument("--table", action="store_true", help="Table 1 (method × colour strength), or a pivot with --rows/--cols")
    report.add_argument("--all", action="store_true", help="everything the grid allows plus index.html (the default)")
    report.add_argument("--kind", action="append", default=[], metavar="NAME",
                        help="a report type by name (ablate.report.build.REPORT_TYPES: heatmap, table, methods, ...); "
                             "repeatable")
    report.add_argument("--rows", metavar="AXIS", help="pivot table rows: any result column, e.g. method")
    report.add_argument("--cols", metavar="AXIS",
                        help="pivot table columns (with --rows): any result column, e.g. train.batch_size; alone, on a "
                             "grid of several methods: the methods report's columns (default: the augment axis)")
    report.add_argument("--baseline", metavar="LABEL",
                        help="the reference column each row's cells are compared with (paired tests, Δ) in Table 1, "
                             "pivots and the methods report, by its label as the report prints it, e.g. 1/2 or "
                             "crop+color+blur (default: the first column; the methods report's in the grid file's order)")
    report.add_argument("--seeds-needed", type=positive_float, metavar="DIFF",
                        help="also estimate, from the observed spread of the paired differences, how many seeds would "
                             "tell two cells DIFF points apart (paired t-test, power 0.8, α 0.05): each cell against "
                             "the best (heatmap), each column against the reference (tables); printed and in the .md")
    report.add_argument("--compare", nargs=2, metavar=("GRID_A", "GRID_B"),
                        help="heatmap of B − A, cell by cell, under reports/compare-A-vs-B/")
    report.add_argument("--grid", help="grid name or file (default: the grid with the newest results)")
    report.add_argument("--metric", default="linear_top1", help="metric to draw (default: linear_top1)")
    report.add_argument("--out", default=str(DEFAULT_REPORTS), help="output folder (default: reports)")
    grid_options(report)
    report.set_defaults(handler=command_report)

    preview = commands.add_parser("preview", help="picture of sample images under each operator and ordered pair")
    preview.add_argument("grid", help="grid file: its dataset, augment settings and (unless --ops) its pair axis")
    preview.add_argument("--ops", help="comma-separated operators (default: the grid's pair axis, else augment.ops)")
    preview.add_argument("--images", type=positive_int, default=6, help="rows: images shown (default 6)")
    preview.add_argument("--seed", type=int, default=0, help="seed of the augmentation parameters")
    preview.add_argument("--out", help="PNG path (default: reports/<grid>/preview.png)")
    preview.add_argument("--set", action="append", default=[], metavar="PATH=VALUE", help="override a field of the grid")
    preview.set_defaults(handler=command_preview)

    bench = commands.add_parser("bench", help="speed benchmarks: `train` (a SimCLR training step) or `augment` (the views)")
    bench.add_argument("what", choices=("train", "augment"))
    bench.add_argument("--device", type=device_argument, help="cuda or cpu (default: cuda when present)")
    bench.add_argument("--mode", choices=("auto", "device", "cpu"), default="auto",
                       help="train: device = ResNet-18 step on data preloaded on the device (default on CUDA); "
                            "cpu = ablate vs a torchvision DataLoader (default on a CPU)")
    bench.add_argument("--batch", type=positive_int, help="batch size (train device mode: 512; cpu mode: 256; augment: 256)")
    bench.add_argument("--steps", type=positive_int, help="train cpu mode: timed steps (default 12)")
    bench.add_argument("--repeats", type=positive_int, default=20, help="augment: repeats per pipeline")
    bench.add_argument("--no-compile", action="store_true", help="train device mode: without torch.compile")
    bench.add_argument("--keep-freed-memory", action="store_true",
                       help="augment on CPU: every pipeline with the allocator setting of ablate's runs (ablate.cpu_memory); "
                       "train applies it always")
    bench.add_argument("--out", help="Markdown file (default: benchmarks/results/<what>-<device>.md)")
    bench.set_defaults(handler=command_bench)

    data = commands.add_parser("data", help="datasets: `fetch NAME` downloads one (md5 checked)")
    data_commands = data.add_subparsers(dest="data_command", required=True)
    fetch = data_commands.add_parser("fetch", help="download, check and extract a dataset into $ABLATE_DATA/NAME "
                                     "(or --root), where dataset.name NAME reads it; nothing else downloads")
    fetch.add_argument("name", choices=FETCHABLE)
    fetch.add_argument("--root", help="folder to fetch into, as dataset.root (default: $ABLATE_DATA/NAME, else ./data/NAME)")
    fetch.set_defaults(handler=command_data_fetch)
    return parser


MAX_PROBLEMS_SHOWN = 50

# Errors that mean bad input (exit 2, "ablate: <message>"), by module and name. They are looked up,
# not imported: importing every stage (pydantic models, the store, pandas and matplotlib for the
# report) would slow every command down, and only a stage that was imported can raise its errors.
BAD_INPUT_ERRORS = (("ablate.store", "ResultsUnwritable"), ("ablate.store", "ResultTooNew"), ("ablate.execute.base", "ExecutorError"),
                    ("ablate.report.data", "ReportError"))


def _raised(err: BaseException, module: str, name: str) -> bool:
    """True when err is an instance of module.name, a module this process has imported."""
    kind = getattr(sys.modules.get(module), name, None)
    return kind is not None and isinstance(err, kind)


def main(argv: list[str] | None = None) -> int:
    if hasattr(sys.stderr, "reconfigure"):
        sys.stderr.reconfigure(errors="backslashreplace")  # odd characters in a message never crash it
    args = build_parser().parse_args(argv)
    try:
        check_environment()  # every command: a bad variable is one line and exit 2, wherever it is read later
        return args.handler(args)
    except UsageError as err:
        _say(f"ablate: {err}")
        return 2
    except KeyboardInterrupt:
        _say("ablate: interrupted; completed runs are kept, rerun the same command to finish the rest")
        return 130
    except BrokenPipeError:
        # The reader went away (`ablate run GRID --dry-run | head`): not an error of ours. Point stdout
        # at /dev/null so that Python's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as err:
        if _raised(err, "ablate.config", "GridError"):
            for problem in err.problems[:MAX_PROBLEMS_SHOWN]:
                _say(str(problem))
            if len(err.problems) > MAX_PROBLEMS_SHOWN:
                _say(f"... and {len(err.problems) - MAX_PROBLEMS_SHOWN} more problems")
            return 2
        if any(_raised(err, module, name) for module, name in BAD_INPUT_ERRORS):
            _say(f"ablate: {err}")
            return 2
        if _raised(err, "ablate.store", "StoreWriteError"):  # mid-run: the disk filled up or the folder went away
            _say(f"ablate: {err.strerror}. Completed results are untouched; rerun the same command to finish the rest")
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
