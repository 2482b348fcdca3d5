"""index.html: one self-contained page (no network) with header, embedded figures and HTML tables;
rendered in headless Chromium where it is installed (CI installs Debian's `chromium`)."""

import base64
import html
import re
import shutil
import subprocess
from io import BytesIO

import numpy as np
import pytest
from PIL import Image
from report_helpers import cell_text, distinct_colours, pair_grid

from ablate.report.build import write_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run"]


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    """A pair grid (crop, color, blur × 2 seeds) with one planned pair missing and one failed."""
    folder = tmp_path_factory.mktemp("html")
    plan, written = pair_grid(folder / "results", "web", ["crop", "color", "blur"], (0, 1), absent=(("blur", "crop"),),
                              failed=lambda key, seed: key == ("color", "blur"))
    paths = write_report(folder / "results", "web", folder / "reports", "all", planned=plan)
    return folder / "reports" / "web" / "index.html", written, paths


def test_all_writes_heatmap_and_page_only(page):
    path, _, paths = page
    names = {p.name for p in paths}
    assert {"heatmap.png", "heatmap.csv", "index.html"} <= names
    assert not any(n.startswith("table1") for n in names)  # a pair grid has no colour-strength table


def test_page_is_self_contained_with_tables_and_images(page):
    path, written, _ = page
    text = path.read_text()
    assert text.startswith("<!DOCTYPE html>")
    assert not re.search(r"https?://", text)
    assert "<script" not in text and "<link" not in text
    sources = re.findall(r'src="([^"]*)"', text)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    image = Image.open(BytesIO(base64.b64decode(sources[0].split(",", 1)[1])))
    assert image.format == "PNG" and image.size[0] > 800
    crop_color = written[("crop", "color")]
    assert f'<td class="ok best">{cell_text(crop_color)})</td>' in text  # the best cell (pair_value: crop→color highest)
    assert text.index('<div class="findings"><h2>Findings</h2><p>Best: crop → color (') < text.index("<h2>Figure 5")
    assert '<td class="missing">— (2 missing)</td>' in text and '<td class="failed">— (2 failed)</td>' in text
    # 9 pairs × 2 seeds planned: blur→crop never ran (2 missing), color→blur failed (2 failed), 14 completed.
    assert "grid web: 14 completed, 2 failed, 2 missing runs; cpu (test, 2 cores) × 16 runs; 8.0 min compute" in text
    assert '<span class="failed-count">2 failed</span>' in text and '<span class="missing-count">2 missing</span>' in text


def test_zero_failed_and_missing_are_not_highlighted(tmp_path):
    from ablate.report.html import render_page

    text = render_page("t", "header", {"completed": "3", "failed": "0", "missing": "0"}, [], tmp_path)
    assert '<span class="completed-count">3 completed</span>' in text
    assert '<span class="failed-count none">0 failed</span>' in text and '<span class="missing-count none">0 missing</span>' in text


def run_chromium(args, profile, timeout=90):
    command = [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


@pytest.mark.chromium
@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (Debian: apt-get install chromium); CI installs it")
def test_page_renders_in_headless_chromium(page, tmp_path):
    path, written, _ = page
    shot = tmp_path / "shot.png"
    rendered = run_chromium([f"--screenshot={shot}", "--window-size=1200,1600", path.as_uri()], tmp_path / "profile-1")
    assert shot.exists(), rendered.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.shape[:2] == (1600, 1200)
    assert distinct_colours(pixels) > 500  # the viridis heatmap, not a blank page
    figure = pixels[250:1000, 100:1100]  # where the embedded heatmap lands on the page
    assert figure.std() > 30 and distinct_colours(figure) > 300
    dom = run_chromium(["--dump-dom", path.as_uri()], tmp_path / "profile-2").stdout
    crop_color = written[("crop", "color")]
    assert cell_text(crop_color) in dom
    assert "— (2 failed)" in dom and "<table>" in dom
    print(f"chromium: screenshot {pixels.shape[1]}x{pixels.shape[0]}, {distinct_colours(pixels)} colours; "
          f"DOM {len(dom)} chars with the crop+color cell")


def test_a_collapsed_cell_has_its_own_class_and_style(page, tmp_path):
    """The page marks the cell of a collapsed run (class and style); a page without one has neither."""
    from report_helpers import make_result, make_spec, ordered_pairs, pair_value, with_collapse, write_results

    results, crop_color = [], []
    for ops in ordered_pairs(["crop", "color"]):
        for seed in (0, 1):
            collapsed = ops == ["crop", "color"] and seed == 0
            value = 9.0 if collapsed else pair_value(ops[0], ops[-1], seed)
            crop_color += [value] if ops == ["crop", "color"] else []
            results.append(with_collapse(make_result(make_spec(ops, seed), "c", value), collapsed))
    write_results(tmp_path / "results", "c", results)
    write_report(tmp_path / "results", "c", tmp_path / "reports", "all")
    text = (tmp_path / "reports" / "c" / "index.html").read_text()
    cell = f"{cell_text(crop_color)}, collapsed 1/2)"
    assert re.findall(r'<td class="collapsed">([^<]*)</td>', text) == [cell]
    assert "td.collapsed {" in text and "collapsed k/n: k of the cell's n completed runs collapsed" in html.unescape(text)
    assert "collapsed" not in page[0].read_text()  # the fixture's page: results without the diagnostic
