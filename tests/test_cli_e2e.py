"""End to end through the CLI: a tiny grid runs, stores one result per run, reports, and is not rerun."""

import json

import pytest
from cli_helpers import run_ablate as ablate
from PIL import Image

TINY_GRID = """\
name: tiny
dataset: {name: shapes, train_size: 400, test_size: 200, image_size: 16}
model: {arch: small_cnn}
train: {epochs: 2, batch_size: 64, lr: 0.5, warmup_epochs: 0.5}
augment: {protocol: one_branch}
eval: {linear_epochs: 10, knn_k: 20}
grid:
  pair: [crop, color]
"""


@pytest.fixture(scope="module")
def finished_grid(tmp_path_factory):
    folder = tmp_path_factory.mktemp("e2e")
    (folder / "tiny.yaml").write_text(TINY_GRID)
    first = ablate("run", "tiny.yaml", "--quiet", cwd=folder)
    return folder, first


@pytest.mark.slow
def test_run_writes_one_completed_result_per_run(finished_grid):
    folder, first = finished_grid
    assert first.returncode == 0, first.stderr
    assert "4 runs: 4 completed now, 0 already done, 0 failed" in first.stdout
    results = [json.loads(p.read_text()) for p in sorted((folder / "results" / "tiny").glob("*/result.json"))]
    assert len(results) == 4
    assert {tuple(r["spec"]["augment"]["ops"]) for r in results} == {("crop",), ("crop", "color"), ("color", "crop"), ("color",)}
    for result in results:
        assert result["status"] == "completed" and result["grid"] == "tiny" and result["error"] is None
        assert (folder / "results" / "tiny" / result["run_id"] / "result.json").exists()
        assert 0.0 <= result["metrics"]["linear_top1"] <= 100.0
        assert result["metrics"]["linear_top5"] >= result["metrics"]["linear_top1"]
        assert result["spec"]["seed"] == 0 and result["spec"]["method"] == {
            "name": "simclr", "temperature": 0.5, "loss": "nt_xent", "semi_hard": False, "l2_normalize": True, "margin": 1.0}
        assert result["timings"]["total"] >= result["timings"]["train"] > 0
        assert result["provenance"]["torch_version"] and result["provenance"]["device"].startswith("cpu")
        assert result["provenance"]["color"] == "eager"  # ABLATE_COMPILE_COLOR unset
        assert len(result["curves"]["epoch_loss"]) == 2
        assert not (folder / "results" / "tiny" / result["run_id"] / "checkpoint.pt").exists()


@pytest.mark.slow
def test_second_run_trains_nothing(finished_grid):
    folder, _ = finished_grid
    again = ablate("run", "tiny.yaml", "--quiet", cwd=folder)
    assert again.returncode == 0
    assert "all 4 runs are already done; nothing to train" in again.stdout
    dry = ablate("run", "tiny.yaml", "--dry-run", cwd=folder)
    assert dry.stdout.count("completed") == 4


@pytest.mark.slow
def test_status_counts(finished_grid):
    folder, _ = finished_grid
    status = ablate("status", "tiny.yaml", cwd=folder)
    assert "grid tiny: 4 runs: 4 completed, 0 failed, 0 pending" in status.stdout


@pytest.mark.slow
def test_report_writes_heatmap_and_numbers(finished_grid):
    folder, _ = finished_grid
    report = ablate("report", "--heatmap", cwd=folder)
    assert report.returncode == 0, report.stderr
    out = folder / "reports" / "tiny"
    image = Image.open(out / "heatmap.png")
    assert image.size[0] > 300 and len(set(image.convert("L").tobytes())) > 20  # a drawn figure, not blank
    csv = (out / "heatmap.csv").read_text().splitlines()
    assert csv[0] == ("first,second,mean,std,ci_low,ci_high,n,collapsed,vs_best,diff_from_best,pairs,p_t,p_sign_flip,"
                      "p_t_holm,p_sign_flip_holm") and len(csv) == 1 + 4  # intervals, tests against the best cell, collapse
    results = {tuple(json.loads(p.read_text())["spec"]["augment"]["ops"]): json.loads(p.read_text())["metrics"]["linear_top1"]
               for p in (folder / "results" / "tiny").glob("*/result.json")}
    row = [line for line in csv if line.startswith("crop,color,")][0]
    assert float(row.split(",")[2]) == pytest.approx(results[("crop", "color")])
    assert "| crop |" in (out / "heatmap.md").read_text()


@pytest.mark.parametrize("content, expected", [
    (None, "no such file"),
    ("name: x\ngrid: {pair: [crop\n", "broken YAML"),
    ("name: x\ngrid: {pair: [crop, zoom]}\n", "grid.pair[1]: got 'zoom'; expected one of 'crop'"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, content, expected):
    path = tmp_path / "bad.yaml"
    if content is not None:
        path.write_text(content)
    result = ablate("run", str(path), cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0]


@pytest.mark.slow
def test_preview_writes_one_column_per_operator_and_pair(tmp_path):
    (tmp_path / "tiny.yaml").write_text(TINY_GRID)
    result = ablate("preview", "tiny.yaml", "--images", "3", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    image = Image.open(tmp_path / "reports" / "tiny" / "preview.png")
    # original, base crop, crop, color, crop→color, color→crop: 6 columns of 3 rows, wider than tall
    assert image.size[0] > 1.5 * image.size[1] and len(set(image.convert("L").tobytes())) > 50
    bad = ablate("preview", "tiny.yaml", "--ops", "crop,zoom", cwd=tmp_path)
    assert bad.returncode == 2 and "unknown operator 'zoom'" in bad.stderr


@pytest.mark.parametrize("args, expected", [
    (["run", "g.yaml", "--jobs", "0"], "argument --jobs: expected at least 1, got 0"),
    (["preview", "g.yaml", "--images", "0"], "argument --images: expected at least 1, got 0"),
    (["bench", "train", "--batch", "-3"], "argument --batch: expected at least 1, got -3"),
    (["bench", "augment", "--repeats", "x"], "argument --repeats: expected a whole number, got 'x'"),
])
def test_bad_counts_on_the_command_line_exit_2(tmp_path, args, expected):
    result = ablate(*args, cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].endswith(expected)
