"""Table 1 and pivots: columns, rows, mean ± std (n) equal to what is computed here; "—" for empty cells."""

import statistics

import pandas as pd
import pytest
from report_helpers import cell_text, interval, make_result, make_spec, markdown_table, run_id, with_collapse, write_results

from ablate.report.build import write_report
from ablate.report.data import ReportError
from ablate.report.tables import strength_column, strength_label

# The paper's Table 1 (ResNet-50, ImageNet) as the centre of each cell; seeds add known offsets.
PAPER = {"simclr": [59.6, 61.0, 62.6, 63.2, 64.5, 61.1], "supervised": [77.0, 76.7, 76.5, 75.7, 75.4, 77.1]}
SETTINGS = [(["crop", "color"], 0.125), (["crop", "color"], 0.25), (["crop", "color"], 0.5), (["crop", "color"], 1.0),
            (["crop", "color", "blur"], 1.0), (["crop", "autoaugment"], 1.0)]
COLUMNS = ["1/8", "1/4", "1/2", "1", "1 (+Blur)", "AutoAug"]
OFFSETS = [0.0, 0.4, -0.3]


def build_table_grid(root):
    """SimCLR × 6 settings × 3 seeds; supervised AutoAug planned but never run; one SimCLR 1/4 run failed."""
    plan, results, written = [], [], {}
    for method, centres in PAPER.items():
        for (ops, strength), centre, column in zip(SETTINGS, centres, COLUMNS):
            for seed, offset in enumerate(OFFSETS):
                spec = make_spec(ops, seed, method, strength)
                plan.append({"run_id": run_id(spec), "spec": spec})
                if method == "supervised" and column == "AutoAug":
                    continue
                if method == "simclr" and column == "1/4" and seed == 2:
                    results.append(make_result(spec, "t1", None, status="failed"))
                    continue
                written.setdefault((method, column), []).append(centre + offset)
                results.append(make_result(spec, "t1", centre + offset))
    write_results(root, "t1", results)
    return plan, written


@pytest.fixture(scope="module")
def table_report(tmp_path_factory):
    folder = tmp_path_factory.mktemp("t1")
    plan, written = build_table_grid(folder / "results")
    paths = write_report(folder / "results", "t1", folder / "reports", "table", planned=plan)
    return folder / "reports" / "t1", written, paths


expected_text = cell_text  # "mean ± std [95 % interval] (n=" computed by hand (report_helpers)


def test_markdown_has_paper_columns_rows_and_cells(table_report):
    out, written, _ = table_report
    text = (out / "table1.md").read_text()
    lines = text.splitlines()
    rows, head = markdown_table(text, "### linear top-1 (%) by method")
    assert [c.strip() for c in head.strip("|").split("|")][1:] == COLUMNS
    assert list(rows) == ["SimCLR", "Supervised"]
    for (method, column), values in written.items():
        cell = rows["SimCLR" if method == "simclr" else "Supervised"][COLUMNS.index(column)]
        assert cell.startswith(expected_text(values)), (method, column, cell)
    assert rows["SimCLR"][1] == expected_text(written[("simclr", "1/4")]) + ", 1 failed)"
    assert rows["Supervised"][5] == "— (3 missing)"
    assert "grid t1: 32 completed, 1 failed, 3 missing runs" in lines[2]


def test_csv_numbers_equal_independent_computation(table_report):
    out, written, _ = table_report
    table = pd.read_csv(out / "table1.csv")
    assert list(table.columns) == ["method", "color_distortion", "metric", "mean", "std", "ci_low", "ci_high", "n", "failed",
                                   "missing", "reference", "delta", "delta_std", "pairs", "p_t", "p_sign_flip", "p_t_holm",
                                   "p_sign_flip_holm", "vs_best"]
    assert len(table) == 12
    for row in table.itertuples():
        method = row.method.lower()
        values = written.get((method, row.color_distortion), [])
        assert row.n == len(values)
        if values:
            assert row.mean == pytest.approx(statistics.mean(values))
            assert row.std == pytest.approx(statistics.stdev(values))
            assert (row.ci_low, row.ci_high) == pytest.approx(interval(values))
        assert row.reference == "1/8"
    autoaug = table[(table["method"] == "Supervised") & (table["color_distortion"] == "AutoAug")]
    assert autoaug["n"].item() == 0 and autoaug["missing"].item() == 3 and autoaug["mean"].isna().item()
    quarter = table[(table["method"] == "SimCLR") & (table["color_distortion"] == "1/4")]
    assert quarter["failed"].item() == 1 and quarter["n"].item() == 2


def test_latex_is_booktabs_with_pm_and_dashes(table_report):
    out, written, _ = table_report
    tex = (out / "table1.tex").read_text()
    for rule in (r"\toprule", r"\midrule", r"\bottomrule", r"\begin{tabular}{lcccccc}"):
        assert rule in tex
    assert tex.index(r"\toprule") < tex.index(r"\midrule") < tex.index(r"\bottomrule")
    values = written[("simclr", "1")]
    low, high = interval(values)
    assert f"${statistics.mean(values):.1f} \\pm {statistics.stdev(values):.1f}$ {{\\scriptsize [{low:.1f}, {high:.1f}] (n=3)}}" in tex
    assert tex.count(r"\begin{table}") == 2 and "$\\Delta$ linear top-1 (\\%) from 1/8, per method" in tex
    assert "--- (3 missing)" in tex and "linear top-1 (\\%)" in tex
    assert "1 (+Blur) & AutoAug" in tex


def test_table_figure_is_written(table_report):
    out, _, paths = table_report
    assert {"table1.png", "table1.pdf", "table1.svg", "table1.md", "table1.tex", "table1.csv"} <= {p.name for p in paths}
    assert (out / "table1.png").stat().st_size > 10_000


@pytest.mark.parametrize("ops, strength, label", [
    ("crop+color", 0.125, "1/8"), ("crop+color", 0.25, "1/4"), ("crop+color", 0.5, "1/2"), ("crop+color", 1.0, "1"),
    ("crop+color", 2.0, "2"), ("crop+color", 0.3, "0.3"), ("crop+color+blur", 1.0, "1 (+Blur)"),
    ("crop+color+blur", 0.5, "1/2 (+Blur)"), ("crop+autoaugment", 0.5, "AutoAug"), ("crop", 1.0, "no colour"),
])
def test_column_of_a_run(ops, strength, label):
    assert strength_label(strength_column(ops, strength)) == label


def test_column_order_follows_the_paper():
    keys = [strength_column(o, s) for o, s in [("crop+autoaugment", 1), ("crop+color+blur", 1), ("crop+color", 1),
                                                ("crop+color", 0.125), ("crop+color", 0.5)]]
    assert [strength_label(k) for k in sorted(keys)] == ["1/8", "1/2", "1", "1 (+Blur)", "AutoAug"]


def test_pivot_any_two_axes_and_metric(tmp_path):
    root = tmp_path / "results"
    results, expected = [], {}
    for method in ("simclr", "supervised"):
        for batch in (128, 256, 512):
            for seed in (0, 1, 2):
                value = 40 + batch / 64 + (20 if method == "supervised" else 0) + seed
                expected.setdefault((method, batch), []).append(value - 5)  # knn_top1 = linear - 5
                results.append(make_result(make_spec(["crop", "color"], seed, method, batch_size=batch), "bs", value))
    write_results(root, "bs", results)
    paths = write_report(root, "bs", tmp_path / "reports", "table", rows="method", cols="train.batch_size", metric="knn_top1")
    stem = "pivot-method-by-train.batch_size-knn_top1"
    assert {f"{stem}.md", f"{stem}.tex", f"{stem}.csv", f"{stem}.png"} <= {p.name for p in paths}
    table = pd.read_csv(tmp_path / "reports" / "bs" / f"{stem}.csv")
    assert list(table["train.batch_size"][:3]) == [128, 256, 512]
    for row in table.itertuples():
        values = expected[(row.method.lower(), row._2)]
        assert row.mean == pytest.approx(statistics.mean(values)) and row.std == pytest.approx(statistics.stdev(values))
    markdown = (tmp_path / "reports" / "bs" / f"{stem}.md").read_text()
    assert "| Method \\ train.batch_size | 128 | 256 | 512 |" in markdown
    assert f"| Supervised | {expected_text(expected[('supervised', 128)])})" in markdown


def test_pivot_splits_other_varying_axes(tmp_path):
    root = tmp_path / "results"
    results = [make_result(make_spec(["crop", "color"], 0, method, dataset=dataset), "ds", value)
               for dataset, value in (("shapes", 50.0), ("cifar10", 70.0)) for method in ("simclr", "supervised")]
    write_results(root, "ds", results)
    write_report(root, "ds", tmp_path / "reports", "table", rows="method", cols="seed")
    table = pd.read_csv(tmp_path / "reports" / "ds" / "pivot-method-by-seed-linear_top1.csv")
    assert list(table.columns[:1]) == ["dataset.name"]
    assert dict(zip(table["dataset.name"], table["mean"])) == {"cifar10": 70.0, "shapes": 50.0}


def test_bad_axes_and_grids_without_table1(tmp_path):
    root = tmp_path / "results"
    build_table_grid(root)
    with pytest.raises(ReportError, match="--rows 'methd': no such axis.*available: .*method"):
        write_report(root, "t1", tmp_path / "reports", "table", rows="methd", cols="seed")
    with pytest.raises(ReportError, match="needs both --rows AXIS and --cols AXIS"):
        write_report(root, "t1", tmp_path / "reports", "table", rows="method")
    write_results(root, "pairs", [make_result(make_spec(o, 0), "pairs", 50.0) for o in (["crop"], ["crop", "color"])])
    with pytest.raises(ReportError, match="give --rows AXIS --cols AXIS"):
        write_report(root, "pairs", tmp_path / "reports", "table")


def test_pipelines_sort_in_the_paper_order():
    from ablate.report.tables import axis_sort_key

    values = ["rotate", "color+crop", "crop+color", "crop", "color", "cutout+blur"]
    assert sorted(values, key=axis_sort_key("ops")) == ["crop", "crop+color", "cutout+blur", "color", "color+crop", "rotate"]


def test_methods_are_named_and_ordered_by_the_registry_unknown_ones_last(tmp_path):
    from ablate.config.methods import METHOD_SPECS

    root = tmp_path / "results"
    methods = ["byol", "supervised", "zzz", "aaa", "simclr"]
    write_results(root, "m", [make_result(make_spec(["crop", "color"], 0, method, strength), "m", 50.0 + index)
                              for index, method in enumerate(methods) for strength in (0.5, 1.0)])
    write_report(root, "m", tmp_path / "reports", "table")
    rows, _ = markdown_table((tmp_path / "reports" / "m" / "table1.md").read_text(), "### linear top-1")
    known = [METHOD_SPECS[name].label for name in ("simclr", "byol", "supervised")]
    assert list(rows) == known + ["aaa", "zzz"]
    assert known == ["SimCLR", "BYOL", "Supervised"]
    assert list(METHOD_SPECS).index("byol") < list(METHOD_SPECS).index("supervised")  # the registry's order, not the names'
    tex = (tmp_path / "reports" / "m" / "table1.tex").read_text().split(r"\end{table}")[0]  # the first table: the means
    assert [line.split(" & ")[0] for line in tex.splitlines() if " & $" in line] == ["SimCLR", "BYOL", "Supervised", "aaa", "zzz"]
    write_report(root, "m", tmp_path / "reports", "table", rows="method", cols="augment.color_strength")
    pivot = pd.read_csv(tmp_path / "reports" / "m" / "pivot-method-by-augment.color_strength-linear_top1.csv")
    assert list(dict.fromkeys(pivot["method"])) == ["SimCLR", "BYOL", "Supervised", "aaa", "zzz"]


def test_a_method_setting_is_a_facet_only_when_it_varies_within_a_method(tmp_path):
    def spec(method, strength, temperature=None):
        settings = {"name": method} | ({"temperature": temperature} if temperature is not None else {})
        return make_spec(["crop", "color"], 0, method, strength) | {"method": settings}

    root = tmp_path / "results"
    same = [spec("simclr", s, 0.2) for s in (0.5, 1.0)] + [spec("supervised", s) for s in (0.5, 1.0)]
    write_results(root, "one", [make_result(s, "one", 60.0) for s in same])
    write_report(root, "one", tmp_path / "reports", "table")
    tex = (tmp_path / "reports" / "one" / "table1.tex").read_text()
    assert tex.count(r"\begin{table}") == 2 and "temperature" not in tex  # one table of means, one of Δ

    swept = [spec("simclr", s, t) for s in (0.5, 1.0) for t in (0.1, 0.5)]
    write_results(root, "swept", [make_result(s, "swept", 40.0 + 100 * s["method"]["temperature"]) for s in swept])
    write_report(root, "swept", tmp_path / "reports", "table")
    table = pd.read_csv(tmp_path / "reports" / "swept" / "table1.csv")
    assert dict(zip(table["method.temperature"], table["mean"])) == {0.1: 50.0, 0.5: 90.0}
    assert "(method.temperature=0.1)" in (tmp_path / "reports" / "swept" / "table1.md").read_text()


# ------------------------------------------------------------------------------------------ collapse


def collapse_table_grid(root, diagnosed=True):
    """SimCLR and supervised × strengths 0.5, 1 × seeds 0, 1; SimCLR at 0.5, seed 1 collapsed (its value 11.0).
    diagnosed=False: the same numbers in results written before the collapse diagnostic (no record)."""
    written, results = {}, []
    for method in ("simclr", "supervised"):
        for strength in (0.5, 1.0):
            for seed in (0, 1):
                collapsed = (method, strength, seed) == ("simclr", 0.5, 1)
                value = 11.0 if collapsed else 60.0 + 10 * strength + seed + (15 if method == "supervised" else 0)
                written.setdefault((method, strength), []).append(value)
                result = make_result(make_spec(["crop", "color"], seed, method, strength), "col", value)
                results.append(with_collapse(result, collapsed) if diagnosed else result)
    write_results(root, "col", results)
    return written


def test_a_collapsed_run_marks_its_cell_in_markdown_latex_and_csv(tmp_path):
    written = collapse_table_grid(tmp_path / "results")
    write_report(tmp_path / "results", "col", tmp_path / "reports", "table")
    out = tmp_path / "reports" / "col"
    lines = (out / "table1.md").read_text().splitlines()
    rows, _ = markdown_table("\n".join(lines), "### linear top-1")
    half = written[("simclr", 0.5)]
    assert rows["SimCLR"][0] == cell_text(half) + ", collapsed 1/2)"
    assert [cell for row in rows.values() for cell in row if "collapsed" in cell] == [rows["SimCLR"][0]]
    assert sum(line.startswith("collapsed k/n: k of the cell's n completed runs collapsed") for line in lines) == 1
    tex = (out / "table1.tex").read_text()
    assert tex.count("collapsed 1/2") == 1
    low, high = interval(half)
    assert f"${statistics.mean(half):.1f} \\pm {statistics.stdev(half):.1f}$ {{\\scriptsize [{low:.1f}, {high:.1f}] (n=2, collapsed 1/2)}}" in tex
    assert "collapsed k/n: k of the n runs collapsed" in tex  # the caption's legend
    table = pd.read_csv(out / "table1.csv")
    assert list(table.columns)[:11] == ["method", "color_distortion", "metric", "mean", "std", "ci_low", "ci_high", "n", "failed",
                                        "missing", "collapsed"]
    marked = table[table["collapsed"] > 0]
    assert marked[["method", "color_distortion", "collapsed"]].values.tolist() == [["SimCLR", "1/2", 1]]
    assert marked["mean"].item() == pytest.approx(statistics.mean(half))  # the value is kept, only marked


def test_results_without_the_diagnostic_are_not_marked(tmp_path):
    collapse_table_grid(tmp_path / "results", diagnosed=False)
    write_report(tmp_path / "results", "col", tmp_path / "reports", "table")
    out = tmp_path / "reports" / "col"
    for name in ("table1.md", "table1.tex", "table1.csv"):
        assert "collapsed" not in (out / name).read_text(), name
    assert "collapsed" not in pd.read_csv(out / "table1.csv").columns


def test_transfer_targets_as_an_axis_are_told_apart():
    # eval.transfer holds mappings (one per target dataset): as group keys they must be hashable and compare by value.
    from ablate.report.data import hashable, varying_axes

    cifar100 = [{"label": "cifar100", "dataset": {"name": "cifar100", "root": None}, "linear": True}]
    stl10 = [{"label": "stl10", "dataset": {"name": "stl10", "root": None}, "linear": True}]
    frame = pd.DataFrame({"eval.transfer": [cifar100, stl10, [dict(cifar100[0])]], "seed": [0, 0, 1]})
    assert hashable(cifar100) == ((("label", "cifar100"), ("dataset", (("name", "cifar100"), ("root", None))), ("linear", True)),)
    assert hashable(cifar100) == hashable([dict(cifar100[0])]) != hashable(stl10)
    assert varying_axes(frame, ()) == ["eval.transfer"]
    assert varying_axes(frame.iloc[[0, 2]], ()) == []
