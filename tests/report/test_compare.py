"""--compare: B − A cell by cell, cells of one grid only marked, written under reports/compare-A-vs-B/."""

import statistics

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from report_helpers import distinct_colours, make_result, make_spec, pair_grid, pair_value, write_results

from ablate.report.build import write_compare_report
from ablate.report.data import ReportError

OPS_A = ["crop", "color", "blur"]
OPS_B = ["crop", "color", "rotate"]


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cmp")
    root = folder / "results"
    values = {}
    for grid, ops, dataset, offset, seeds in (("a", OPS_A, "shapes", 0.0, (0, 1, 2)), ("b", OPS_B, "cifar10", 7.0, (0, 1))):
        def value(first, second, seed, grid=grid, offset=offset):
            return pair_value(first, second, seed, offset + (3.0 if (first, second) == ("crop", "color") and grid == "b" else 0))

        _, values[grid] = pair_grid(root, grid, ops, seeds, value=value, dataset=dataset)
    paths = write_compare_report(root, "a", "b", folder / "reports")
    return folder / "reports" / "compare-a-vs-b", values, paths


def test_difference_is_b_minus_a_cell_by_cell(compared):
    out, values, _ = compared
    table = pd.read_csv(out / "difference.csv")
    both = table[table["state"] == "both"]
    assert len(both) == 4  # crop and color in both grids: 2 × 2 cells
    for row in both.itertuples():
        a, b = values["a"][(row.first, row.second)], values["b"][(row.first, row.second)]
        assert row.diff == pytest.approx(statistics.mean(b) - statistics.mean(a))
        assert row.stderr == pytest.approx(np.sqrt(statistics.variance(a) / 3 + statistics.variance(b) / 2))
        assert (row.n_a, row.n_b) == (3, 2)
    crop_color = both[(both["first"] == "crop") & (both["second"] == "color")]["diff"].item()
    assert crop_color == pytest.approx(10.0 + statistics.mean([0, 1.5]) - statistics.mean([0, 1.5, -0.7]))


def test_cells_of_one_grid_only_are_marked(compared):
    out, _, _ = compared
    table = pd.read_csv(out / "difference.csv")
    state = {(r.first, r.second): r.state for r in table.itertuples()}
    assert list(dict.fromkeys(table["first"])) == ["crop", "color", "blur", "rotate"]
    assert state[("blur", "blur")] == "only A" and state[("crop", "blur")] == "only A"
    assert state[("rotate", "crop")] == "only B" and state[("rotate", "rotate")] == "only B"
    assert state[("blur", "rotate")] == "neither"
    assert table[table["state"] != "both"]["diff"].isna().all()
    markdown = (out / "difference.md").read_text()
    assert "only A" in markdown and "only B" in markdown
    svg = (out / "difference.svg").read_text()
    assert "only A" in svg and "only B" in svg


def test_compare_files_and_page(compared):
    out, _, paths = compared
    assert {p.name for p in paths} == {"difference.png", "difference.pdf", "difference.svg", "difference.csv",
                                       "difference.md", "index.html"}
    image = np.asarray(Image.open(out / "difference.png").convert("RGB")).reshape(-1, 3)
    assert distinct_colours(image) > 100
    page = (out / "index.html").read_text()
    assert "data:image/png;base64," in page and "only A" in page and "http://" not in page and "https://" not in page
    assert "A = grid a: 27 completed" in page and "B = grid b: 18 completed" in page


def test_compare_needs_two_pair_grids(tmp_path):
    root = tmp_path / "results"
    write_results(root, "a", [make_result(make_spec(["crop"], 0), "a", 10.0)])
    with pytest.raises(ReportError, match="two different grids"):
        write_compare_report(root, "a", "a", tmp_path / "reports")
    with pytest.raises(ReportError, match="no results for grid 'zzz'"):
        write_compare_report(root, "a", "zzz", tmp_path / "reports")


def test_markdown_cells_and_row_means_read_as_in_the_figure(compared):
    # crop row: crop→crop and crop→color in both grids, crop→blur / crop→rotate in one only, so its mean is
    # over the two shared cells and starred, as in the figure and the HTML table.
    out, values, _ = compared
    diffs = {k: statistics.mean(values["b"][k]) - statistics.mean(values["a"][k]) for k in (("crop", "crop"), ("crop", "color"))}
    a, b = values["a"][("crop", "color")], values["b"][("crop", "color")]
    stderr = np.sqrt(statistics.variance(a) / 3 + statistics.variance(b) / 2)
    crop_row = next(line for line in (out / "difference.md").read_text().splitlines() if line.startswith("| crop |"))
    cells = [c.strip() for c in crop_row.strip("|").split("|")]
    assert cells[2] == f"{diffs[('crop', 'color')]:+.1f} ± {stderr:.1f}"
    assert cells[-1] == f"{statistics.mean(diffs.values()):+.1f}*"
    assert f"{statistics.mean(diffs.values()):+.1f}*" in (out / "index.html").read_text()
