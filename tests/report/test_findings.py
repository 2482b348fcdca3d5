"""Paired comparisons in the reports and the findings paragraph, on results whose numbers are designed here: the
heatmap's best cell and the cell tied with it (marks in .md, .tex, .csv, the figure and the page), Table 1's
columns against the reference (--baseline), the colour-strength trend, "not enough seeds", and --seeds-needed.
Every p-value and ρ is recomputed here from the written values (the formulas in loops, Holm by hand)."""

import math
import statistics

import pandas as pd
import pytest
from report_helpers import cell_text, holm_by_hand, p_text, interval, make_result, make_spec, markdown_table, ordered_pairs, write_results

from ablate.cli import main
from ablate.report.build import write_report
from ablate.report.data import Facet, load_grid_frame
from ablate.report.heatmap import compare_with_best_cells, draw_heatmap, pair_frame, pair_operators, pair_table
from ablate.report.stats import seeds_needed

OPS = ["crop", "color", "blur"]
SEEDS = [0, 1, 2, 3]
BEST_NOISE = [0.0, 1.0, -0.5, 0.8]
TIED_NOISE = [0.3, -0.4, 0.9, 0.1]


def pair_value(first, second, seed):
    """crop → color is the best (80 + noise); color → crop 0.5 lower with other noise (tied with it); the rest far below."""
    if (first, second) == ("crop", "color"):
        return 80.0 + BEST_NOISE[seed]
    if (first, second) == ("color", "crop"):
        return 79.5 + TIED_NOISE[seed]
    i, j = OPS.index(first), OPS.index(second)
    return 60.0 + 3 * i + j + ((i * 7 + j * 3 + seed * 5) % 11) / 10


# -------------------------------------------------------------------------------- independent formulas


def t_p(differences):
    """Two-sided paired t-test p: t = mean/(s/√n) by hand, p = 2·P(T_{n−1} > |t|)."""
    from scipy.stats import t as student

    n = len(differences)
    mean = sum(differences) / n
    sd = math.sqrt(sum((d - mean) ** 2 for d in differences) / (n - 1))
    return 2 * student.sf(abs(mean / (sd / math.sqrt(n))), n - 1)




def ranks(values):
    """Average ranks (ties share the mean of their positions), 1-based."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    found = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            found[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return found


def spearman_by_hand(x, y):
    """ρ = Pearson correlation of the average ranks; p from t = ρ·√((n−2)/(1−ρ²)) on n − 2 degrees of freedom."""
    from scipy.stats import t as student

    rx, ry = ranks(x), ranks(y)
    mx, my = statistics.mean(rx), statistics.mean(ry)
    rho = sum((a - mx) * (b - my) for a, b in zip(rx, ry)) / math.sqrt(sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry))
    n = len(x)
    return rho, 2 * student.sf(abs(rho * math.sqrt((n - 2) / (1 - rho**2))), n - 2)


# -------------------------------------------------------------------------------------------- heatmap


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pairs")
    results = [make_result(make_spec(ops, seed), "p", pair_value(ops[0], ops[-1], seed)) for ops in ordered_pairs(OPS)
               for seed in SEEDS]
    write_results(folder / "results", "p", results)
    write_report(folder / "results", "p", folder / "reports", "all")
    return folder


def expected_best_comparisons():
    """{(first, second): (differences from the best, raw t p, Holm-corrected t p)} over the 8 other cells."""
    keys = [(a, b) for a in OPS for b in OPS if (a, b) != ("crop", "color")]
    diffs = {key: [pair_value(*key, s) - pair_value("crop", "color", s) for s in SEEDS] for key in keys}
    raw = [t_p(diffs[key]) for key in keys]
    return {key: (diffs[key], p, adjusted) for key, p, adjusted in zip(keys, raw, holm_by_hand(raw))}


def test_heatmap_csv_has_each_cells_paired_test_against_the_best(pairs):
    table = pd.read_csv(pairs / "reports" / "p" / "heatmap.csv").set_index(["first", "second"])
    expected = expected_best_comparisons()
    assert table.loc[("crop", "color"), "vs_best"] == "best"
    for key, (diffs, raw, adjusted) in expected.items():
        line = table.loc[key]
        assert line["pairs"] == 4 and line["diff_from_best"] == pytest.approx(statistics.mean(diffs), abs=1e-12)
        assert line["p_t"] == pytest.approx(raw, rel=1e-9) and line["p_t_holm"] == pytest.approx(adjusted, rel=1e-9)
        assert line["vs_best"] == ("tied" if adjusted >= 0.05 else "differs")
    assert [key for key, v in expected.items() if v[2] >= 0.05] == [("color", "crop")]  # the design: exactly one tie
    # 4 pairs: 16 sign patterns, the least two-sided p is 2/16; Holm over 8 comparisons leaves it at 1
    assert table.loc[("color", "blur"), "p_sign_flip"] == 2 / 16 and table.loc[("color", "blur"), "p_sign_flip_holm"] == 1.0


def test_heatmap_markdown_marks_and_opens_with_the_findings(pairs):
    text = (pairs / "reports" / "p" / "heatmap.md").read_text()
    rows, _ = markdown_table(text)
    best = [pair_value("crop", "color", s) for s in SEEDS]
    tied = [pair_value("color", "crop", s) for s in SEEDS]
    assert rows["crop"][1] == f"**{cell_text(best)})**"
    assert rows["color"][0] == f"≈ {cell_text(tied)})"
    assert sum(cell.startswith(("**", "≈")) for row in rows.values() for cell in row) == 2
    assert "**bold**: the best cell; ≈: not told apart from it" in text and "over the 8 comparisons" in text
    findings = next(line for line in text.splitlines() if line.startswith("**Findings.**"))
    low, high = interval(best)
    _, _, tied_p = expected_best_comparisons()[("color", "crop")]
    assert findings.startswith(f"**Findings.** Best: crop → color ({statistics.mean(best):.1f}, 95 % interval "
                               f"[{low:.1f}, {high:.1f}], n=4). Not told apart from it (paired t-test over shared seeds, "
                               f"Holm-corrected over the report's 8 comparisons with the best cell, p ≥ 0.05): "
                               f"color → crop ({statistics.mean(tied):.1f}, {p_text(tied_p)}). The other 7 cells")
    assert text.index("**Findings.**") < text.index("| 1st \\ 2nd")


def test_the_row_ranking_says_which_neighbours_differ(pairs):
    text = (pairs / "reports" / "p" / "heatmap.md").read_text()
    per_seed = {a: [statistics.mean(pair_value(a, b, s) for b in OPS) for s in SEEDS] for a in OPS}
    means = {a: statistics.mean(statistics.mean(pair_value(a, b, s) for s in SEEDS) for b in OPS) for a in OPS}
    order = sorted(OPS, key=lambda a: -means[a])
    adjusted = holm_by_hand([t_p([h - l for h, l in zip(per_seed[a], per_seed[b])]) for a, b in zip(order, order[1:])])
    expected = f"{order[0]} {means[order[0]]:.1f}"
    for row, p in zip(order[1:], adjusted):
        expected += f" {'>' if p < 0.05 else '≈'} {row} {means[row]:.1f}"
    assert f"Rows (1st transformation) by mean: {expected} (neighbours compared by a paired t-test" in text


def test_heatmap_latex_has_the_numbers_and_marks(pairs):
    tex = (pairs / "reports" / "p" / "heatmap.tex").read_text()
    for rule in (r"\toprule", r"\midrule", r"\bottomrule", r"\begin{tabular}{lcccc}", r"\cmidrule(lr){2-4}"):
        assert rule in tex
    best, tied = [pair_value("crop", "color", s) for s in SEEDS], [pair_value("color", "crop", s) for s in SEEDS]
    low, high = interval(best)
    assert (f"$\\mathbf{{{statistics.mean(best):.1f} \\pm {statistics.stdev(best):.1f}}}$ "
            f"{{\\scriptsize [{low:.1f}, {high:.1f}] (n=4)}}") in tex
    assert f"$\\approx {statistics.mean(tied):.1f} \\pm {statistics.stdev(tied):.1f}$" in tex
    crop_row = statistics.mean(statistics.mean(pair_value("crop", b, s) for s in SEEDS) for b in OPS)
    assert "1st transformation & crop & color & blur & row mean" in tex and f"& ${crop_row:.1f}$ \\\\" in tex
    assert "bold: the best cell; $\\approx$: not told apart from it" in tex


def test_heatmap_figure_outlines_the_best_and_the_tied_cell(pairs):
    pair_runs = pair_frame(load_grid_frame(pairs / "results", "p").frame)
    table = pair_table(pair_runs, pair_operators(pair_runs))
    compare_with_best_cells([table], "linear_top1", [Facet()], ["t"])
    axes = draw_heatmap(table, "title", "header").axes[0]
    outlines = {(int(p.get_y()), int(p.get_x())): p.get_linewidth() for p in axes.patches if not p.get_fill()
                and not p.get_hatch()}
    assert outlines == {(0, 1): 2.6, (1, 0): 1.0}  # crop → color thick, color → crop thin
    texts = {(int(t.get_position()[1]), int(t.get_position()[0])): t.get_text() for t in axes.texts}
    assert texts[(1, 0)].startswith("≈") and sum(text.startswith("≈") for text in texts.values()) == 1
    legend = [text.get_text() for text in axes.get_legend().get_texts()]
    assert legend == ["best cell", "≈ not told apart from the best (paired t-test, Holm-corrected p ≥ 0.05)"]


def test_the_page_opens_with_the_findings_and_marks_the_cells(pairs):
    page = (pairs / "reports" / "p" / "index.html").read_text()
    assert page.index('<div class="findings"><h2>Findings</h2><p>Best: crop → color (') < page.index("<h2>Figure 5")
    assert "<p>Bold: the best cell; ≈: not told apart from it (paired t-test over the seeds both have" in page
    best = [pair_value("crop", "color", s) for s in SEEDS]
    assert f'<td class="ok best">{cell_text(best)})</td>' in page
    assert f'<td class="ok">≈ {cell_text([pair_value("color", "crop", s) for s in SEEDS])})</td>' in page


# -------------------------------------------------------------------------------------------- Table 1


STRENGTHS = [0.125, 0.25, 0.5, 1.0]
LABELS = ["1/8", "1/4", "1/2", "1"]


def table1_value(method, strength, seed):
    """SimCLR rises with the colour strength (with overlap between neighbours); supervised does not."""
    index = STRENGTHS.index(strength)
    if method == "simclr":  # the seed's noise grows with the strength: paired differences have a spread
        return 60.0 + 2.0 * index + [0.0, 1.6, -1.1][seed] * (1 + 0.4 * index)
    return 76.0 + [0.3, -0.2, 0.4, -0.5][index] + [0.0, 0.5, -0.4][seed] * (1 + 0.3 * index)


@pytest.fixture(scope="module")
def table1_report(tmp_path_factory):
    folder = tmp_path_factory.mktemp("t1")
    results = [make_result(make_spec(["crop", "color"], seed, method, strength), "t1", table1_value(method, strength, seed))
               for method in ("simclr", "supervised") for strength in STRENGTHS for seed in range(3)]
    write_results(folder / "results", "t1", results)
    write_report(folder / "results", "t1", folder / "reports", "table", baseline="1/2")
    return folder / "reports" / "t1"


def test_table1_compares_each_column_with_the_named_baseline(table1_report):
    table = pd.read_csv(table1_report / "table1.csv")
    assert (table["reference"] == "1/2").all()
    keys = [(m, s) for m in ("simclr", "supervised") for s in STRENGTHS if s != 0.5]
    diffs = {(m, s): [table1_value(m, s, seed) - table1_value(m, 0.5, seed) for seed in range(3)] for m, s in keys}
    adjusted = dict(zip(keys, holm_by_hand([t_p(diffs[key]) for key in keys])))
    for (method, strength), d in diffs.items():
        line = table[(table["method"] == ("SimCLR" if method == "simclr" else "Supervised"))
                     & (table["color_distortion"] == LABELS[STRENGTHS.index(strength)])]
        assert line["delta"].item() == pytest.approx(statistics.mean(d), abs=1e-12)
        assert line["delta_std"].item() == pytest.approx(statistics.stdev(d), abs=1e-12)
        assert line["p_t_holm"].item() == pytest.approx(adjusted[(method, strength)], rel=1e-9)
    text = (table1_report / "table1.md").read_text()
    rows, _ = markdown_table(text, "### Δ linear top-1 (%) from 1/2, per method")
    d = diffs[("simclr", 1.0)]
    assert rows["SimCLR"][2] == "ref."
    assert rows["SimCLR"][3] == (f"{statistics.mean(d):+.1f} ± {statistics.stdev(d):.1f} "
                                 f"({p_text(adjusted[('simclr', 1.0)])}, flip 1.000)")  # 3 seeds: the sign flip can't go below 0.25
    assert "Against 1/2 (each row's own reference cell; paired t-test, Holm-corrected, p < 0.05): SimCLR: " in text
    assert "With 3 or fewer shared seeds the exact sign-flip test cannot reach p < 0.05 (its least p is 2/2^n = 0.25)" in text


def test_table1_findings_give_each_methods_trend_along_the_colour_strength(table1_report):
    text = (table1_report / "table1.md").read_text()
    found = {}
    for method in ("simclr", "supervised"):
        x = [s for s in STRENGTHS for _ in range(3)]
        y = [table1_value(method, s, seed) for s in STRENGTHS for seed in range(3)]
        found[method] = spearman_by_hand(x, y)
    adjusted = holm_by_hand([p for _, p in found.values()])
    (rho_s, _), (rho_u, _) = found["simclr"], found["supervised"]
    assert adjusted[0] < 0.05 < adjusted[1]  # the design: SimCLR's rise is supported, supervised's wobble is not
    expected = (f"Trend along color distortion strength (Spearman's ρ over the runs, Holm-corrected over the report's 2 rows): "
                f"SimCLR ρ = {rho_s:+.2f}, {p_text(adjusted[0])}, rises with it (12 runs, 4 values); "
                f"Supervised ρ = {rho_u:+.2f}, {p_text(adjusted[1])}, no trend the runs support (12 runs, 4 values).")
    assert expected in text


def test_one_seed_is_not_enough_to_tell(tmp_path):
    results = [make_result(make_spec(["crop", "color"], 0, method, strength), "one", 60.0 + 10 * strength + (method == "supervised"))
               for method in ("simclr", "supervised") for strength in (0.5, 1.0)]
    write_results(tmp_path / "results", "one", results)
    write_report(tmp_path / "results", "one", tmp_path / "reports", "table")
    text = (tmp_path / "reports" / "one" / "table1.md").read_text()
    assert "Best: Supervised at 1 (71.0, n=1). Not enough seeds to tell which cells are tied with it" in text
    assert "Rows (Method) by mean: Supervised 68.5 ? SimCLR 67.5" in text
    assert "Not enough seeds to tell any column from 1/2" in text
    rows, _ = markdown_table(text, "### Δ")
    assert rows["SimCLR"] == ["ref.", "+5.0 (not enough seeds)"]
    table = pd.read_csv(tmp_path / "reports" / "one" / "table1.csv")
    assert table["vs_best"].tolist() == ["not enough seeds", "not enough seeds", "not enough seeds", "best"]
    assert table["ci_low"].isna().all() and (table["pairs"] <= 1).all()


# ------------------------------------------------------------------------------------------ seeds needed


def test_seeds_needed_from_the_spread_of_the_paired_differences(tmp_path, monkeypatch, capsys):
    """SimCLR's 1/4 differs from its 1/8 by 1, 2, 3 over the seeds (std exactly 1): telling 1 point apart (effect 1)
    with power 0.8 takes 10 seeds (G*Power, Cohen 1988), 0.5 points 34."""
    monkeypatch.chdir(tmp_path)
    base = [70.0, 72.5, 69.0]
    values = {0.125: base, 0.25: [b + d for b, d in zip(base, [1.0, 2.0, 3.0])]}
    write_results(tmp_path / "results", "s", [make_result(make_spec(["crop", "color"], seed, "simclr", strength), "s", v[seed])
                                             for strength, v in values.items() for seed in range(3)])
    assert main(["report", "--grid", "s", "--table", "--seeds-needed", "1"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[:2] == ["Seeds needed to tell 1 point apart (paired t-test, power 0.8, α 0.05 two-sided; from the std of "
                           "each comparison's paired differences):", "  SimCLR: 1/4 vs 1/8: 10 (std 1.00 over 3 seeds)"]
    text = (tmp_path / "reports" / "s" / "table1.md").read_text()
    assert "## Seeds needed to tell 1 point apart" in text and "| SimCLR: 1/4 vs 1/8 | 3 | 1.00 | 10 |" in text
    assert main(["report", "--grid", "s", "--table", "--seeds-needed", "0.5"]) == 0
    assert "  SimCLR: 1/4 vs 1/8: 34 (std 1.00 over 3 seeds)" in capsys.readouterr().out
    assert main(["report", "--grid", "s", "--table"]) == 0
    assert "Seeds needed" not in capsys.readouterr().out + (tmp_path / "reports" / "s" / "table1.md").read_text()
    with pytest.raises(SystemExit) as stopped:
        main(["report", "--grid", "s", "--seeds-needed", "0"])
    assert stopped.value.code == 2 and "--seeds-needed: expected a number above 0, got 0" in capsys.readouterr().err


def test_seeds_needed_for_a_heatmap_is_each_cell_against_the_best(pairs, capsys):
    lines = []
    write_report(pairs / "results", "p", pairs / "again", "heatmap", seeds_needed=2.0, say=lines.append)
    expected = expected_best_comparisons()
    assert len(lines) == 1 + len(expected)
    std = statistics.stdev(expected[("color", "crop")][0])
    assert f"  color → crop vs crop → color (best): {seeds_needed(2.0, std)} (std {std:.2f} over 4 seeds)" in lines
    assert f"| color → crop vs crop → color (best) | 4 | {std:.2f} | {seeds_needed(2.0, std)} |" in (
        pairs / "again" / "p" / "heatmap.md").read_text()


def test_a_baseline_one_report_lacks_keeps_its_first_column_and_says_so(tmp_path):
    """Table 1 has a column '1/2', the methods report of the same grid (columns: colour strengths as
    'crop+color, color_strength=…') has none: under --all the methods report keeps its first column and says
    so; a label no report has is one error naming every report's columns."""
    from ablate.report.data import ReportError

    results = [make_result(make_spec(["crop", "color"], seed, method, strength), "both", table1_value(method, strength, seed))
               for method in ("simclr", "supervised") for strength in STRENGTHS for seed in range(3)]
    write_results(tmp_path / "results", "both", results)
    write_report(tmp_path / "results", "both", tmp_path / "reports", "all", baseline="1/2")
    out = tmp_path / "reports" / "both"
    assert (pd.read_csv(out / "table1.csv")["reference"] == "1/2").all()
    methods = pd.read_csv(out / "methods.csv")
    assert methods["reference"].nunique() == 1 and methods["reference"].iloc[0] != "1/2"
    assert "(no column is labelled '1/2' here: the first column is the reference)" in (out / "methods.md").read_text()
    with pytest.raises(ReportError) as error:
        write_report(tmp_path / "results", "both", tmp_path / "reports", "all", baseline="2/3")
    message = str(error.value)
    assert message.startswith("--baseline '2/3': no column of Table 1 (color_distortion) is labelled so; columns: '1/8', ")
    assert "; no column of the methods report (augment.color_strength) is labelled so; columns: " in message
