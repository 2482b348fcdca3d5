"""One self-contained HTML page per report: header, findings, figures as base64 PNG data URIs, HTML tables.

Nothing on the page is fetched: no scripts, no fonts, no external style sheets or images, so it opens
the same offline, from a mail attachment or from a cluster's file browser.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

STYLE = """
body { font-family: -apple-system, "Segoe UI", "DejaVu Sans", Helvetica, Arial, sans-serif; margin: 24px auto;
       max-width: 1120px; color: #222; line-height: 1.4; padding: 0 16px; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; }
h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
.header { background: #f5f5f5; border-left: 4px solid #4a6fa5; padding: 8px 12px; font-size: 0.92em; }
.counts span { display: inline-block; margin-right: 14px; }
.failed-count { color: #c0392b; font-weight: 600; }
.missing-count { color: #666; font-weight: 600; }
.counts span.none { color: inherit; font-weight: normal; }  /* 0 failed is not an alarm */
figure { margin: 12px 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
table { border-collapse: collapse; margin: 10px 0 18px; font-size: 0.9em; }
caption { caption-side: top; text-align: left; font-weight: 600; padding-bottom: 4px; }
td { white-space: nowrap; }
.scroll { overflow-x: auto; }
th, td { border-top: 1px solid #ccc; border-bottom: 1px solid #ccc; padding: 4px 10px; text-align: center; }
thead th { border-bottom: 2px solid #333; }
tbody th { text-align: left; font-weight: 600; }
td.missing { color: #777; background: repeating-linear-gradient(45deg, #fff, #fff 4px, #eee 4px, #eee 8px); }
td.failed { color: #c0392b; background: repeating-linear-gradient(45deg, #fff, #fff 4px, #f6d5d1 4px, #f6d5d1 8px); }
td.only { color: #7d3c98; background: repeating-linear-gradient(-45deg, #fff, #fff 4px, #eadcf0 4px, #eadcf0 8px); }
.files { font-size: 0.85em; color: #555; }
.findings { margin: 12px 0; }
.findings p { margin: 6px 0; }
td.best { font-weight: 700; box-shadow: inset 0 0 0 2px #333; }
"""
# Added only to pages with a collapsed cell, so that the pages of grids without one stay as they were.
COLLAPSED_STYLE = """td.collapsed { color: #a04000; background: radial-gradient(#f0b27a 1.2px, #fff 1.6px) 0 0 / 6px 6px; }
"""


@dataclass
class Section:
    """A part of the page: a title, figures (PNG files to embed) and HTML tables."""

    title: str
    figures: list[tuple[Path, str]] = field(default_factory=list)  # (png, caption)
    tables: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)  # every file written for this section
    note: str = ""
    tables_first: bool = False  # Table 1: the table is the result, the chart a reading aid
    findings: list[str] = field(default_factory=list)  # paragraphs in words (ablate.report.findings), open the page
    seeds_needed: list[str] = field(default_factory=list)  # --seeds-needed: lines the command prints


def data_uri(png: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode("ascii")


def render_page(title: str, header: str, counts: dict[str, str], sections: list[Section], folder: Path) -> str:
    """The whole page as one string; `folder` is where the page lives (file links are relative to it)."""
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>", f"<style>{STYLE}{COLLAPSED_STYLE if has_collapsed(sections) else ''}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>", '<div class="header">',
        '<div class="counts">' + "".join(
            f'<span class="{html.escape(key.split()[0])}-count{" none" if value == "0" else ""}">{html.escape(value)} {html.escape(key)}</span>'
            for key, value in counts.items()
        ) + "</div>",
        f"<div>{html.escape(header)}</div></div>",
    ]
    parts += findings_block(sections)
    for section in sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2>")
        if section.note:
            parts.append(f"<p>{html.escape(section.note)}</p>")
        figures = [f'<figure><img alt="{html.escape(caption)}" title="{html.escape(caption)}" src="{data_uri(png)}"></figure>'
                   for png, caption in section.figures]
        tables = [f'<div class="scroll">{table}</div>' for table in section.tables]
        parts.extend(tables + figures if section.tables_first else figures + tables)
        names = [_relative(path, folder) for path in section.files if path.suffix != ".png"]
        if names:
            links = ", ".join(f'<a href="{html.escape(name)}">{html.escape(name)}</a>' for name in names)
            parts.append(f'<p class="files">Files: {links}</p>')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def findings_block(sections: list[Section]) -> list[str]:
    """The sections' findings as the page's opening paragraphs, each after its section's title where there are several."""
    with_findings = [section for section in sections if section.findings]
    if not with_findings:
        return []
    paragraphs = []
    for section in with_findings:
        title = f"<b>{html.escape(section.title)}.</b> " if len(with_findings) > 1 else ""
        paragraphs += [f"<p>{title}{html.escape(text)}</p>" for text in section.findings]
    return ['<div class="findings"><h2>Findings</h2>' + "".join(paragraphs) + "</div>"]


def has_collapsed(sections: list[Section]) -> bool:
    return any('<td class="collapsed">' in table for section in sections for table in section.tables)


def _relative(path: Path, folder: Path) -> str:
    try:
        return path.relative_to(folder).as_posix()
    except ValueError:
        return path.name
