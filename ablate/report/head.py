"""Figure 8: the projection head — linear top-1 against the head's output size, one line per head type.

SimCLR §4.2 and Figure 8 (Chen et al., ICML 2020) compare three heads g between the representation
h = f(x) and the loss: none (z = h), linear (one layer) and non-linear (two layers with a ReLU, the
default), at output sizes 32 … 2048, each evaluated by a linear probe on h. The paper's text
(ImageNet, ResNet-50): the non-linear head is about 3 points above the linear one and more than 10
above none, and h is more than 10 points above z = g(h), whatever the output size.

ablate's grids vary `model.head`, `model.proj_dim` and `eval.representation` (h or z); this report lays
them out as the paper does:

    figure8[--facet].{png,pdf,svg}   a panel per representation (h, then z), x = output size (log scale),
                                     one line per head (mean over seeds, error bars ± std, seaborn)
    figure8.{md,tex,csv}             per representation: head × output size, mean ± std [95 % interval] (n);
                                     with both h and z: each (head, size)'s z against its h (Δ, paired tests)

A cell without a completed run is drawn at the panel's foot as a hollow mark labelled "—" (missing)
or "failed", never left out; a cell with a collapsed run gets an orange ring, as the other reports
mark it. The head `none` has no output size of its own (z = h): where its runs sit at one size while
the other heads span several, its value is drawn as a dashed level across the panel. Other axes that
vary in the grid (facets) get a figure and tables each, never averaged together.

The findings (ablate.report.findings) rank the heads by their mean over the sizes, neighbours
compared by paired t-tests over seeds (Holm-corrected), the paper's "non-linear > linear > none",
and say for each (head, size) whether z is told apart from h.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ablate.report.plots import MARKS, footer, mark_legend  # noqa: I001  (first: it selects matplotlib's file-only backend)
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.lines import Line2D
from matplotlib.transforms import blended_transform_factory

from ablate.report.data import (
    Facet, GridFrame, ReportError, collect_cells, metric_label, split_facets, varying_axes,
)
from ablate.report.files import add_figure, seed_note, write_text
from ablate.report.html import Section
from ablate.report.tables import (
    CellTable, attach_comparisons, delta_html, delta_latex, delta_markdown, report_markdown, tested, to_frame, to_html,
    to_latex, to_markdown,
)

if TYPE_CHECKING:
    from ablate.report.build import ReportOptions

HEAD, SIZE, REPRESENTATION = "model.head", "model.proj_dim", "eval.representation"
LAID_OUT = (HEAD, SIZE, REPRESENTATION)
# The spec's defaults (ablate.config.specs): results written before these fields existed ran with them.
DEFAULTS = {HEAD: "mlp", SIZE: 128, REPRESENTATION: "h"}
HEAD_ORDER = ("linear", "mlp", "none")  # the paper's legend: Linear, Non-linear, None
HEAD_LABELS = {"linear": "linear", "mlp": "non-linear (mlp)", "none": "none (z = h)"}
HEAD_COLOURS = {"linear": "#4a6fa5", "mlp": "#c44e52", "none": "#5b9e6b"}
REPRESENTATION_ORDER = ("h", "z")
REPRESENTATION_TITLES = {"h": "evaluated on h = f(x)", "z": "evaluated on z = g(h)"}
STEM = "figure8"
PAPER = ("paper (ImageNet, ResNet-50; Figure 8 and §4.2): the non-linear head is about 3 points above the linear "
         "one and more than 10 above none; h is more than 10 points above z = g(h) at every output size (32 … 2048).")
NONE_NOTE = "The head none has no output size (z = h): its runs are the same network whatever proj_dim says."


def head_label(head: Any) -> str:
    return HEAD_LABELS.get(str(head), str(head))


def head_key(head: Any) -> tuple:
    return (HEAD_ORDER.index(head), "") if head in HEAD_ORDER else (len(HEAD_ORDER), str(head))


def representation_key(value: Any) -> tuple:
    return (REPRESENTATION_ORDER.index(value), "") if value in REPRESENTATION_ORDER else (2, str(value))


def with_defaults(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with each laid-out field present, a run without it read as the spec's default."""
    frame = frame.copy()
    for axis, default in DEFAULTS.items():
        frame[axis] = frame[axis].where(frame[axis].notna(), default) if axis in frame else default
    return frame


# ------------------------------------------------------------------------------------------- tables


def head_tables(grid: GridFrame, metric: str) -> list[CellTable]:
    """One head × output-size table per facet and representation (h before z); the representation is the last
    value of each table's facet, so that the CSV names it. Every table's best cell is compared with the others."""
    tables = []
    for facet, part in split_facets(with_defaults(grid.frame), LAID_OUT):
        for representation in sorted(set(part[REPRESENTATION]), key=representation_key):
            runs = part[part[REPRESENTATION] == representation]
            cells = collect_cells(runs, metric, lambda run: run[HEAD], lambda run: int(run[SIZE]))
            heads = sorted({key[0] for key in cells}, key=head_key)
            sizes = sorted({key[1] for key in cells})
            title = (f"{metric_label(metric)} by head × output size, {REPRESENTATION_TITLES.get(representation, representation)}"
                     + (f" ({facet.label})" if facet.values else ""))
            tables.append(CellTable(title, "head", "output size", heads, sizes, cells, metric,
                                    Facet(facet.values + ((REPRESENTATION, representation),)), row_label=head_label,
                                    name_of=lambda head, size: f"{head_label(head)} at {size}"))
    attach_comparisons(tables, None, versus_reference=False)
    return tables


def representation_tables(grid: GridFrame, metric: str) -> list[CellTable]:
    """Per facet with both h and z: rows (head, output size), columns h and z, z compared with h over the seeds
    (Δ, paired tests, Holm-corrected over the report); [] where no facet has both."""
    tables = []
    for facet, part in split_facets(with_defaults(grid.frame), LAID_OUT):
        if not {"h", "z"} <= set(part[REPRESENTATION]):
            continue
        cells = collect_cells(part, metric, lambda run: (run[HEAD], int(run[SIZE])), lambda run: run[REPRESENTATION])
        rows = sorted({key[0] for key in cells}, key=lambda row: (head_key(row[0]), row[1]))
        title = f"{metric_label(metric)}: h against z = g(h)" + (f" ({facet.label})" if facet.values else "")
        tables.append(CellTable(title, "head, output size", REPRESENTATION, rows, ["h", "z"], cells, metric, facet,
                                row_label=lambda row: f"{head_label(row[0])}, {row[1]}",
                                name_of=lambda row, col: f"{col} of {head_label(row[0])}, {row[1]}"))
    attach_comparisons(tables, "h")
    return tables


# ------------------------------------------------------------------------------------------ drawing


def panel_runs(table: CellTable) -> pd.DataFrame:
    """One line per completed run: its head's label, output size and value (what seaborn aggregates)."""
    return pd.DataFrame([(head_label(head), size, value) for head in table.rows for size in table.cols
                         for value in table.cell(head, size).values], columns=["head", "size", "value"])


def line_points(table: CellTable) -> pd.DataFrame:
    """What each panel's lines go through: per head and output size with a value, the mean, std and n."""
    records = [{"head": head_label(head), "size": size, "mean": cell.mean, "std": cell.std, "n": cell.n}
               for head in table.rows for size in table.cols if (cell := table.cell(head, size)).n]
    return pd.DataFrame(records, columns=["head", "size", "mean", "std", "n"])


def draw_panel(axes: plt.Axes, table: CellTable) -> set[str]:
    """One representation's lines; returns the marks it used (missing, failed, collapsed)."""
    runs = panel_runs(table)
    labels = [head_label(head) for head in table.rows]
    palette = {head_label(head): HEAD_COLOURS.get(str(head), "0.4") for head in table.rows}
    if not runs.empty:
        sns.lineplot(runs, x="size", y="value", hue="head", hue_order=labels, palette=palette, estimator="mean",
                     errorbar="sd", err_style="bars", marker="o", markersize=6, ax=axes,
                     err_kws={"capsize": 3, "linewidth": 1})
    axes.set_xscale("log", base=2)
    axes.set_xticks(table.cols, [str(size) for size in table.cols])
    axes.minorticks_off()
    marked: set[str] = set()
    foot = blended_transform_factory(axes.transData, axes.transAxes)
    for head in table.rows:
        cells = {size: table.cell(head, size) for size in table.cols}
        with_value = [size for size, cell in cells.items() if cell.n]
        if str(head) == "none" and len(with_value) == 1 and len(table.cols) > 1:
            level = cells[with_value[0]].mean
            axes.axhline(level, color=palette[head_label(head)], linestyle="--", linewidth=1, zorder=1)
        for size, cell in cells.items():
            if cell.collapsed:
                marked.add("collapsed")
                axes.plot([size], [cell.mean], marker="o", markersize=12, markerfacecolor="none",
                          markeredgecolor=MARKS["collapsed"][1], markeredgewidth=1.5, linestyle="none")
            elif not cell.n and cell.planned:
                state = "failed" if cell.failed else "missing"
                marked.add(state)
                axes.plot([size], [0.04], transform=foot, marker="X", markersize=8, markerfacecolor="white",
                          markeredgecolor=MARKS[state][1], linestyle="none", clip_on=False)
                axes.text(size, 0.08, "failed" if cell.failed else "—", transform=foot, ha="center", va="bottom",
                          fontsize=7.5, color=MARKS[state][1])
    axes.set_xlabel("projection output size")
    axes.set_ylabel(metric_label(table.metric))
    axes.grid(alpha=0.3)
    sns.despine(ax=axes)
    if axes.get_legend() is not None:
        axes.get_legend().remove()
    return marked


def draw_figure8(tables: list[CellTable], title: str, header: str) -> plt.Figure:
    """A panel per representation (one facet's tables), sharing the y axis; one legend for the heads and marks."""
    figure, panels = plt.subplots(1, len(tables), figsize=(4.6 * len(tables) + 2.4, 4.4), sharey=True, squeeze=False)
    marked: set[str] = set()
    for axes, table in zip(panels[0], tables):
        marked |= draw_panel(axes, table)
        axes.set_title(REPRESENTATION_TITLES.get(table.facet.values[-1][1], str(table.facet.values[-1][1])), fontsize=10)
    heads = sorted({head for table in tables for head in table.rows}, key=head_key)
    handles = [Line2D([], [], color=HEAD_COLOURS.get(str(head), "0.4"), marker="o", label=head_label(head)) for head in heads]
    handles += [mark_legend(state, f"no completed run ({state})") for state in ("missing", "failed") if state in marked]
    if "collapsed" in marked:
        handles.append(Line2D([], [], marker="o", markerfacecolor="none", markeredgecolor=MARKS["collapsed"][1],
                              linestyle="none", label="collapsed run (ablate.evaluate.collapse)"))
    figure.legend(handles=handles, loc="center right", frameon=False, fontsize=8.5, title="projection head",
                  title_fontsize=9)
    width, height = figure.get_size_inches()
    figure.suptitle(title, fontsize=11, y=1 - 0.12 / height, va="top")
    footer(figure, header.rstrip(".") + ". Lines: mean over seeds; error bars: ± std.", chars_per_inch=14, fontsize=7,
           bottom=0.06 / height)
    figure.subplots_adjust(left=0.75 / width, right=1 - 2.3 / width, top=1 - 0.75 / height, bottom=1.0 / height,
                           wspace=0.12)
    return figure


# ------------------------------------------------------------------------------------------- report


class HeadReport:
    """Figure 8: head type × output size (× h / z), as a line plot with its tables.

    Chosen by `--all` for a grid that varies the head, its output size or the representation probed.
    """

    def applies(self, grid: GridFrame, options: ReportOptions) -> bool:
        return bool(set(LAID_OUT) & set(varying_axes(grid.frame, ())))

    def section(self, grid: GridFrame, out: Path, options: ReportOptions) -> Section:
        from ablate.report.findings import reference_text, report_findings, sign_flip_note

        if not self.applies(grid, options):
            raise ReportError(f"grid {grid.grid!r} varies none of {', '.join(LAID_OUT)} (Figure 8: give it a "
                              "model.head, model.proj_dim or eval.representation axis)")
        tables, versus = head_tables(grid, options.metric), representation_tables(grid, options.metric)
        header = grid.header()
        section = Section(f"Figure 8: projection head ({metric_label(options.metric)})", tables_first=False)
        facets = list(dict.fromkeys(t.facet.values[:-1] for t in tables))  # the facets besides h / z, in order
        section.note = PAPER + " " + NONE_NOTE + (
            f" One figure per value of {', '.join(a for a, _ in facets[0])} (not averaged)." if facets[0] else "")
        for values in facets:
            mine = [t for t in tables if t.facet.values[:-1] == values]
            facet = Facet(values)
            title = f"Figure 8: {metric_label(options.metric)} by projection output size" + (
                f" ({facet.label})" if values else "") + f" ({seed_note(grid.frame)})"
            add_figure(section, draw_figure8(mine, title, header), out / f"{STEM}{facet.suffix}", title)
        section.findings = report_findings(tables)
        family = tested(versus)
        for table in versus:
            text = " ".join(s for s in (reference_text(table), sign_flip_note(table)) if s)
            if text:
                section.findings.append((f"{table.facet.label}: " if table.facet.values else "") + "h against z = g(h). " + text)
        body = f"{PAPER}\n\n{NONE_NOTE}\n\n" + "\n".join(to_markdown(t) for t in tables)
        body += "".join("\n" + to_markdown(t) + "\n" + delta_markdown(t, family) for t in versus)
        section.files.append(write_text(out / f"{STEM}.md", report_markdown(grid, header, section.findings, body)))
        latex = "\n".join(to_latex(t) for t in tables) + "".join("\n" + to_latex(t) + "\n" + delta_latex(t, family) for t in versus)
        section.files.append(write_text(out / f"{STEM}.tex", f"% {header}\n% needs \\usepackage{{booktabs}}\n" + latex))
        section.files.append(write_text(out / f"{STEM}.csv", to_frame(tables).to_csv(index=False)))
        if versus:
            section.files.append(write_text(out / f"{STEM}-h-vs-z.csv", to_frame(versus).to_csv(index=False)))
        section.tables += [to_html(t) for t in tables] + [html for t in versus for html in (to_html(t), delta_html(t))]
        return section
