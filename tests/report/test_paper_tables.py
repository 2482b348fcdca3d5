"""Tables 3, 4, 5, 7 and 8 in the paper's layout (ablate.report.paper_tables): results with known numbers are
written, the report is run through the CLI, and the CSV / Markdown are read back against means, stds and paired
differences computed here in float64, and against the paper's numbers typed in from the paper."""

import statistics

import pandas as pd
import pytest
from report_helpers import cell_text, make_result, make_spec, markdown_table, ordered_pairs, pair_value, write_results

from ablate.cli import main
from ablate.report.data import load_grid_frame
from ablate.report.paper_tables import Table3Report, Table4Report, Table5Report, Table7Report, Table8Report

SEEDS = (0, 1, 2)
WOBBLE = [0.0, 0.8, -0.5]  # per seed


def result_with(spec, grid, metrics, status="completed"):
    result = make_result(spec, grid, 60.0 if status == "completed" else None, status=status)
    if status == "completed":
        result["metrics"].update(metrics)
    return result


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def report(root, grid, *flags):
    assert main(["report", "--grid", grid, *flags]) == 0
    folder = root / "reports" / grid
    return folder


# ------------------------------------------------------------------------------------------- Table 3


def test_table3_rows_columns_paper_column_and_deltas(root, capsys):
    values = {}
    results = []
    for seed in SEEDS:
        spec = make_spec(["crop", "color"], seed)
        metrics = {}
        for probe, h, z, chance in (("rotation", 60.0, 27.0, 25.0), ("color", 98.0, 90.0, 80.0)):  # written out of order
            for column, base in (("h", h), ("z", z), ("chance", chance)):
                metrics[f"transform_probe_{probe}_{column}"] = base + (WOBBLE[seed] if column != "chance" else 0.0) * (2 if column == "z" else 1)
                values.setdefault((probe, column), []).append(metrics[f"transform_probe_{probe}_{column}"])
        results.append(result_with(spec, "t3", metrics))
    write_results(root / "results", "t3", results)
    folder = report(root, "t3")
    markdown = (folder / "table3.md").read_text()
    rows, head = markdown_table(markdown, "### Table 3")
    assert head == ("| what to predict \\ probe on | random guess | h | g(h) | "
                    "paper (ImageNet, ResNet-50): random guess / h / g(h) |")
    assert list(rows) == ["colour vs grayscale", "rotation (0, 90, 180, 270°)"]  # the paper's order
    assert rows["colour vs grayscale"][1].startswith(cell_text(values[("color", "h")]))
    assert rows["colour vs grayscale"][3] == "80.0 / 99.3 / 97.4"
    assert rows["rotation (0, 90, 180, 270°)"][3] == "25.0 / 67.6 / 25.6"
    csv = pd.read_csv(folder / "table3.csv").set_index(["what to predict", "probe on"])
    g_h = csv.loc[("rotation (0, 90, 180, 270°)", "g(h)")]
    assert g_h["mean"] == pytest.approx(statistics.fmean(values[("rotation", "z")]), abs=1e-9)
    assert g_h["std"] == pytest.approx(statistics.stdev(values[("rotation", "z")]), abs=1e-9)
    assert (g_h["n"], g_h["paper"], g_h["reference"]) == (3, 25.6, "h")
    differences = [z - h for z, h in zip(values[("rotation", "z")], values[("rotation", "h")])]
    assert g_h["delta"] == pytest.approx(statistics.fmean(differences), abs=1e-9)
    assert g_h["delta_std"] == pytest.approx(statistics.stdev(differences), abs=1e-9)
    assert "Against h" in markdown.split("### Table 3")[0]  # the findings open the file


# ------------------------------------------------------------------------------------------- Table 4


def loss_spec(loss, semi_hard, seed):
    return make_spec(["crop", "color"], seed) | {"method": {"name": "simclr", "loss": loss, "semi_hard": semi_hard,
                                                            "temperature": 0.5}}


def test_table4_columns_in_the_papers_order_with_the_paper_row_and_a_failed_cell(root, capsys):
    base = {"nt_xent": 64.0, "nt_logistic": 52.0, "margin_triplet": 51.0}
    values, results = {}, []
    for loss in ("nt_xent", "nt_logistic", "margin_triplet"):
        for semi_hard in (True, False):
            for seed in SEEDS:
                spec = loss_spec(loss, semi_hard, seed)
                if (loss, semi_hard) == ("margin_triplet", True):
                    results.append(result_with(spec, "t4", {}, status="failed"))
                    continue
                value = base[loss] + (6.0 if semi_hard else 0.0) + WOBBLE[seed] * (1 + len(loss) % 3)
                values.setdefault((loss, semi_hard), []).append(value)
                results.append(make_result(spec, "t4", value))
    write_results(root / "results", "t4", results)
    folder = report(root, "t4")
    rows, head = markdown_table((folder / "table4.md").read_text(), "### Table 4")
    assert head == "| Method \\ loss | Margin | NT-Logi. | Margin (sh) | NT-Logi. (sh) | NT-Xent | NT-Xent (sh) |"
    assert list(rows) == ["SimCLR", "paper (ImageNet, ResNet-50): SimCLR"]
    assert rows["paper (ImageNet, ResNet-50): SimCLR"] == ["50.9", "51.6", "57.5", "57.9", "63.9", "—"]
    assert rows["SimCLR"][2] == "— (3 failed)"  # Margin (sh): every run failed, drawn as such
    assert rows["SimCLR"][1].startswith(cell_text(values[("nt_logistic", False)]))
    csv = pd.read_csv(folder / "table4.csv").set_index("loss")
    logistic = csv.loc["NT-Logi."]
    differences = [a - b for a, b in zip(values[("nt_logistic", False)], values[("nt_xent", False)])]
    assert (logistic["reference"], logistic["paper"], logistic["n"]) == ("NT-Xent", 51.6, 3)
    assert logistic["delta"] == pytest.approx(statistics.fmean(differences), abs=1e-9)
    assert (csv.loc["Margin (sh)", "n"], csv.loc["Margin (sh)", "failed"]) == (0, 3)
    assert pd.isna(csv.loc["NT-Xent (sh)", "paper"])


def test_table4_has_no_paper_row_for_another_metric(root, capsys):
    results = [make_result(loss_spec(loss, False, seed), "t4k", 50.0 + seed) for loss in ("nt_xent", "nt_logistic")
               for seed in (0, 1)]
    write_results(root / "results", "t4k", results)
    folder = report(root, "t4k", "--kind", "table4", "--metric", "knn_top1")
    rows, _ = markdown_table((folder / "table4.md").read_text(), "### Table 4")
    assert list(rows) == ["SimCLR"]  # the paper's numbers are linear top-1


# ------------------------------------------------------------------------------------------- Table 5


def test_table5_rows_by_l2_then_temperature_with_the_papers_numbers(root, capsys):
    values, results = {}, []
    for l2, tau in ((False, 10.0), (True, 0.5), (True, 0.1), (True, 0.05)):
        for seed in SEEDS:
            spec = make_spec(["crop", "color"], seed) | {"method": {"name": "simclr", "l2_normalize": l2, "temperature": tau}}
            top1 = 60.0 + 3 * tau / (tau + 1) + WOBBLE[seed]
            metrics = {"contrastive_top1": 90.0 - tau + seed, "contrastive_entropy": 0.1 * tau + 0.01 * seed}
            values[(l2, tau)] = values.get((l2, tau), []) + [(top1, metrics["contrastive_top1"], metrics["contrastive_entropy"])]
            results.append(result_with(spec, "t5", metrics) | {"metrics": {"linear_top1": top1} | metrics})
    write_results(root / "results", "t5", results)
    folder = report(root, "t5")
    rows, head = markdown_table((folder / "table5.md").read_text(), "### Table 5")
    assert head == ("| ℓ2 norm? \\ measure | τ | entropy | contrastive acc. | linear top-1 (%) | "
                    "paper (ImageNet, ResNet-50): entropy / contrastive acc. / linear top-1 (%) |")
    lines = [line for line in (folder / "table5.md").read_text().splitlines() if line.startswith(("| yes", "| no"))]
    assert [line.split(" | ")[1] for line in lines] == ["0.05", "0.1", "0.5", "10"]  # ℓ2 on first, τ ascending
    assert lines[0].endswith("| 1.0 / 90.5 / 59.7 |") and lines[3].endswith("| 0.5 / 91.7 / 57.2 |")
    csv = pd.read_csv(folder / "table5.csv")
    top1 = csv[csv["measure"] == "linear top-1 (%)"].set_index("temperature")
    for (l2, tau), runs in values.items():
        assert top1.loc[tau, "mean"] == pytest.approx(statistics.fmean(r[0] for r in runs), abs=1e-9)
        assert bool(top1.loc[tau, "l2_normalize"]) == l2
    assert top1.loc[0.1, "paper"] == 64.4
    entropy = csv[csv["measure"] == "entropy"].set_index("temperature")
    assert entropy.loc[0.5, "mean"] == pytest.approx(statistics.fmean(r[2] for r in values[(True, 0.5)]), abs=1e-12)
    assert entropy.loc[0.5, "paper"] == 8.2


def test_table5_without_contrastive_metrics_shows_top1_only(root, capsys):
    results = [make_result(make_spec(["crop", "color"], seed) | {"method": {"name": "simclr", "temperature": tau}}, "t5b",
                           50.0 + tau + seed) for tau in (0.1, 0.5) for seed in (0, 1)]
    write_results(root / "results", "t5b", results)
    folder = report(root, "t5b", "--kind", "table5")
    _, head = markdown_table((folder / "table5.md").read_text(), "### Table 5")
    assert head == "| ℓ2 norm? \\ measure | τ | linear top-1 (%) | paper (ImageNet, ResNet-50): linear top-1 (%) |"


# ------------------------------------------------------------------------------------------- Table 7


def test_table7_baseline_row_counts_each_seed_once_and_methods_are_compared_with_it(root, capsys):
    results, finetuned, scratch = [], {}, {}
    for method in ("simclr", "supervised"):
        for seed in SEEDS:
            metrics = {}
            for name, percent in (("1pct", 1), ("10pct", 10)):
                metrics[f"finetune_{name}_top1"] = 40 + percent + (5 if method == "simclr" else 0) + WOBBLE[seed]
                metrics[f"finetune_{name}_top5"] = 70 + percent + seed
                metrics[f"scratch_{name}_top1"] = 20 + percent + 2 * WOBBLE[seed]
                metrics[f"scratch_{name}_top5"] = 45 + percent + seed
                finetuned.setdefault((method, name), []).append(metrics[f"finetune_{name}_top1"])
                scratch.setdefault(name, []).append(metrics[f"scratch_{name}_top1"])
            results.append(result_with(make_spec(["crop", "color"], seed, method=method), "t7", metrics))
    write_results(root / "results", "t7", results)
    folder = report(root, "t7")
    rows, head = markdown_table((folder / "table7.md").read_text(), "### Table 7")
    assert head == "| Method \\ label fraction | top-1, 1 % | top-1, 10 % | top-5, 1 % | top-5, 10 % |"
    assert list(rows) == ["Supervised baseline (from scratch)", "SimCLR (fine-tuned)", "Supervised (fine-tuned)",
                          "paper (ImageNet, ResNet-50): Supervised baseline (from scratch)",
                          "paper (ImageNet, ResNet-50): SimCLR (fine-tuned)"]
    assert rows["paper (ImageNet, ResNet-50): Supervised baseline (from scratch)"] == ["25.4", "56.4", "48.4", "80.4"]
    assert rows["paper (ImageNet, ResNet-50): SimCLR (fine-tuned)"] == ["48.3", "65.6", "75.5", "87.8"]
    csv = pd.read_csv(folder / "table7.csv").set_index(["method", "label fraction"])
    baseline = csv.loc[("Supervised baseline (from scratch)", "top-1, 1 %")]
    assert baseline["n"] == 3  # one value per seed, not one per seed and method
    assert baseline["mean"] == pytest.approx(statistics.fmean(scratch["1pct"][:3]), abs=1e-9)
    simclr = csv.loc[("SimCLR (fine-tuned)", "top-1, 10 %")]
    assert simclr["mean"] == pytest.approx(statistics.fmean(finetuned[("simclr", "10pct")]), abs=1e-9)
    assert simclr["paper"] == 65.6
    delta_rows, _ = markdown_table((folder / "table7.md").read_text(), "### Δ")
    expected = statistics.fmean(a - b for a, b in zip(finetuned[("simclr", "1pct")], scratch["1pct"][:3]))
    assert delta_rows["top-1, 1 %"][1].startswith(f"{expected:+.1f} ± ")


# ------------------------------------------------------------------------------------------- Table 8


def test_table8_targets_in_the_grids_order_with_the_paper_under_cifar(root, capsys):
    targets = [{"label": "small", "dataset": {"name": "cifar100"}}, {"label": "ten", "dataset": {"name": "cifar10"}},
               {"label": "pics", "dataset": {"name": "folder", "root": "/data/pics"}}]
    results, values = [], {}
    for seed in SEEDS:
        spec = make_spec(["crop", "color"], seed)
        spec["eval"]["transfer"] = targets
        metrics = {}
        for index, target in enumerate(("small", "ten", "pics")):
            metrics[f"transfer_{target}_linear_top1"] = 50.0 + index + WOBBLE[seed]
            metrics[f"transfer_{target}_finetune_top1"] = 60.0 + index + 2 * WOBBLE[seed]
            for protocol in ("linear", "finetune"):
                values.setdefault((target, protocol), []).append(metrics[f"transfer_{target}_{protocol}_top1"])
        results.append(result_with(spec, "t8", metrics))
    write_results(root / "results", "t8", results)
    folder = report(root, "t8")
    rows, head = markdown_table((folder / "table8.md").read_text(), "### Table 8")
    assert head == "| protocol \\ target | small | ten | pics |"  # eval.transfer's order, not the alphabet
    source = "paper (ImageNet, ResNet-50 (1×), App. B.8)"
    assert list(rows) == ["SimCLR, linear evaluation", "SimCLR, fine-tuned", f"{source}: SimCLR, linear evaluation",
                          f"{source}: SimCLR, fine-tuned"]
    assert rows[f"{source}: SimCLR, linear evaluation"] == ["71.6", "90.6", "—"]  # under the cifar100 / cifar10 targets
    assert rows[f"{source}: SimCLR, fine-tuned"] == ["85.9", "97.7", "—"]
    assert rows["SimCLR, fine-tuned"][2].startswith(cell_text(values[("pics", "finetune")]))
    assert "top-5" not in (folder / "table8.md").read_text()  # no top-5 metric, no top-5 table
    csv = pd.read_csv(folder / "table8.csv")
    linear = csv[csv["protocol"] == "SimCLR, linear evaluation"]
    assert linear["target"].tolist() == ["small", "ten", "pics"]
    assert linear["paper"].tolist()[:2] == [71.6, 90.6] and pd.isna(linear["paper"].tolist()[2])
    assert linear["mean"].tolist() == pytest.approx([statistics.fmean(values[(t, "linear")]) for t in ("small", "ten", "pics")])
    delta_rows, _ = markdown_table((folder / "table8.md").read_text(), "### Δ")
    expected = statistics.fmean(a - b for a, b in zip(values[("ten", "finetune")], values[("ten", "linear")]))
    assert delta_rows["SimCLR on ten"][1].startswith(f"{expected:+.1f} ± ")


# --------------------------------------------------------------------------------------- where they apply


def test_none_applies_to_a_pair_grid_and_asking_for_one_is_a_clear_error(root, capsys):
    results = [make_result(make_spec(list(pair), seed), "pairs", pair_value(pair[0], pair[-1], seed))
               for pair in ordered_pairs(["crop", "color"]) for seed in (0, 1)]
    write_results(root / "results", "pairs", results)
    grid = load_grid_frame(root / "results", "pairs")
    for kind in (Table3Report, Table4Report, Table5Report, Table7Report, Table8Report):
        assert not kind().applies(grid, None)
    report(root, "pairs")
    assert not list((root / "reports" / "pairs").glob("table[34578].*"))
    for name, words in (("table3", "no transform_probe_"), ("table4", "varies neither method.loss"),
                        ("table5", "varies neither method.l2_normalize"), ("table7", "no finetune_"),
                        ("table8", "no transfer_")):
        assert main(["report", "--grid", "pairs", "--kind", name]) == 2
        error = capsys.readouterr().err.strip()
        assert error.startswith("ablate: grid 'pairs' ") and words in error and "\n" not in error
