"""A grid of many results, as benchmarks/bench_results_scale.py generates them: every file reads back valid,
`ablate status` counts them and still names a corrupt file and a failed run among them in one line each,
and a report's frame counts the corrupt file's run as missing. Also the benchmark's own table. No timing."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from ablate import store
from ablate.cli import main
from ablate.config import load_grid
from ablate.plan import plan_grid
from ablate.report.data import load_grid_frame

REPO = Path(__file__).resolve().parent.parent
RUNS = 100  # 3 seeds of the 49 pairs: 147 planned runs, 100 results; the 97th failed


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_results_scale", REPO / "benchmarks" / "bench_results_scale.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def generated(bench, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("scale")
    return bench.generate(workdir, RUNS), workdir / "results"


def test_generated_results_are_valid_results_of_the_planned_runs(bench, generated):
    grid_file, results = generated
    planned = plan_grid(load_grid(grid_file, []))
    assert len(planned) == 3 * 49
    read = store.iter_results(results, bench.GRID_NAME)
    assert sorted(r["run_id"] for r in read) == sorted(run.run_id for run in planned[:RUNS])
    by_id = {r["run_id"]: r for r in read}
    failed = by_id[planned[96].run_id]
    assert failed["status"] == "failed" and failed["error"]["type"] == "RuntimeError"
    completed = by_id[planned[0].run_id]
    assert completed["spec"] == planned[0].spec.model_dump(mode="json") and completed["axes"] == {"pair": ["crop", "crop"], "seed": 0}
    assert len(completed["curves"]["epoch_loss"]) == bench.EPOCHS and completed["collapse"]["collapsed"] is False
    assert [r["status"] for r in read].count("failed") == 1
    assert bench.generate(grid_file.parent, RUNS) == grid_file  # a second call reuses what is there


def test_a_corrupt_file_among_many_is_named_and_counted_as_missing(bench, generated, tmp_path, capsys):
    grid_file, generated_results = generated
    results = tmp_path / "results"
    planned = plan_grid(load_grid(grid_file, []))
    for run in planned[:RUNS]:  # a copy: the module's generated set stays intact for the other tests
        source = store.run_dir(generated_results, bench.GRID_NAME, run.run_id) / store.RESULT_FILE
        target = store.run_dir(results, bench.GRID_NAME, run.run_id)
        target.mkdir(parents=True)
        (target / store.RESULT_FILE).write_bytes(source.read_bytes())
    broken = store.run_dir(results, bench.GRID_NAME, planned[10].run_id) / store.RESULT_FILE
    broken.write_text('{"run_id": "x", "status": "compl')

    assert main(["status", str(grid_file), "--results-dir", str(results)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "grid scale: 147 runs: 98 completed, 1 failed, 47 pending, 1 corrupt"
    assert (f"  corrupt {planned[10].run_id}: {broken}: not valid JSON (Unterminated string starting at at line 1) "
            "(treated as not done; it will be rerun)") in lines
    failed_folder = store.run_dir(results, bench.GRID_NAME, planned[96].run_id)
    assert (f"  failed  {planned[96].run_id}: RuntimeError: CUDA error: an illegal memory access was encountered "
            f"({failed_folder})") in lines
    assert len(lines) == 3

    frame = load_grid_frame(results, bench.GRID_NAME, [{"run_id": r.run_id, "spec": r.spec.model_dump(mode="json")} for r in planned])
    assert (frame.completed, frame.failed, frame.missing) == (98, 1, 48)
    missing = frame.frame[frame.frame["status"] == "missing"].set_index("run_id")
    # pairs vary slowest (file order: pair, then seed): run 10 is the 4th pair, crop then sobel, seed 1
    assert missing.loc[planned[10].run_id, "augment.ops"] == "crop+sobel" and missing.loc[planned[10].run_id, "seed"] == 1


def test_the_benchmark_table_gives_min_median_and_the_ratio_of_medians(bench):
    commands = [command.label for command in bench.COMMANDS]
    times = {"before": {label: [2.0, 4.0, 3.0] for label in commands}, "mine": {label: [1.0, 2.0, 1.5] for label in commands},
             "after": {label: [0.5, 0.6, 0.75] for label in commands}}
    differences = {"before": {}, "mine": {}, "after": {commands[1]: ["scale/heatmap.md"]}}
    text = bench.markdown(times, {"before": Path("/tmp/b"), "mine": Path("/tmp/m"), "after": Path("/tmp/a")}, repeats=3,
                          runs=9996, info={"cpu": "test"}, loads=("0.50", "1.00"), differences=differences)
    assert "7 × 7 pair grid × 204 seeds (9,996 planned runs): 9,996 result.json files" in text
    assert "| load average (1 min), start / end | 0.50 / 1.00 |" in text
    assert "| median, before / mine | median, before / after |" in text
    for label in commands:  # min and median of each tree, then the ratios of the medians: 3.00 / 1.50, 3.00 / 0.60
        assert f"| `{label}` | 2.00 | 3.00 | 1.00 | 1.50 | 0.50 | 0.60 | 2.0× | 5.0× |" in text
    assert "- mine: the same printed lines and report files." in text
    assert f"- after: `{commands[1]}`: scale/heatmap.md differ." in text


def test_the_benchmark_compares_every_report_file_but_pdf_and_svg(bench, tmp_path):
    for side, csv in (("a", "x,1\n"), ("b", "x,2\n")):
        (tmp_path / side / "g").mkdir(parents=True)
        (tmp_path / side / "g" / "heatmap.csv").write_text(csv)
        (tmp_path / side / "g" / "heatmap.md").write_text("same\n")
        (tmp_path / side / "g" / "heatmap.svg").write_text(f"<svg id='{side}'/>")  # ids and dates differ run to run
    (tmp_path / "b" / "g" / "index.html").write_text("only in b")
    assert bench.same_files(tmp_path / "a", tmp_path / "b") == ["g/index.html", "g/heatmap.csv"]
