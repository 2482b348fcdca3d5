"""Report types are a registry: a new one is one class and one line in REPORT_TYPES; `--kind` draws it,
`--all` includes it where it applies, and an unknown name is one line with exit status 2."""

import sys
import types

import pytest
from report_helpers import make_result, make_spec, ordered_pairs, pair_value, write_results

from ablate.cli import main
from ablate.report import build
from ablate.report.files import write_text
from ablate.report.html import Section


class CountReport:
    """A minimal report type: the number of completed runs, in one text file."""

    def applies(self, grid, options):
        return True

    def section(self, grid, out, options):
        section = Section("Run count")
        section.files.append(write_text(out / "count.txt", f"{grid.completed} completed, metric {options.metric}\n"))
        return section


@pytest.fixture
def pair_results(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    results = [make_result(make_spec(list(pair), seed), "g", pair_value(pair[0], pair[-1], seed))
               for pair in ordered_pairs(["crop", "color"]) for seed in (0, 1)]
    write_results(tmp_path / "results", "g", results)
    return tmp_path


@pytest.fixture
def registered(monkeypatch):
    module = types.ModuleType("count_report_for_test")
    module.CountReport = CountReport
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setitem(build.REPORT_TYPES, "count", f"{module.__name__}:CountReport")


def test_a_registered_type_is_drawn_by_kind_and_included_by_all(pair_results, registered, capsys):
    assert main(["report", "--grid", "g", "--kind", "count", "--metric", "knn_top1"]) == 0
    assert (pair_results / "reports" / "g" / "count.txt").read_text() == "8 completed, metric knn_top1\n"
    assert not (pair_results / "reports" / "g" / "heatmap.png").exists()  # --kind alone draws only that type
    (pair_results / "reports" / "g" / "count.txt").unlink()
    assert main(["report", "--grid", "g"]) == 0
    page = (pair_results / "reports" / "g" / "index.html").read_text()
    assert "Run count" in page and "Figure 5: pairs of transformations" in page
    assert (pair_results / "reports" / "g" / "count.txt").read_text() == "8 completed, metric linear_top1\n"


def test_an_unknown_kind_is_one_line_and_exit_2(pair_results, capsys):
    assert main(["report", "--grid", "g", "--kind", "pie"]) == 2
    assert capsys.readouterr().err.strip() == "ablate: unknown report 'pie'; expected one of heatmap, table, methods, curves, figure8, table3, table4, table5, table7, table8, all"
