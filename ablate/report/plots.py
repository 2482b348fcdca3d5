"""What the report figures draw with matplotlib itself, as seaborn cannot: marks for empty cells, and the footer.

seaborn draws the data (heatmap cells with their annotations and colour bar, bars with their error
bars, legends of the hue), but it leaves a masked heatmap cell or a bar with no observation blank;
a blank reads as "forgotten", so the heatmap and the bars mark such a cell the same way: white,
hatched in the colour of why (grey: missing, red: failed, purple: in one compared grid only,
orange: its representation collapsed, so that its number is not read as an ordinary low one),
labelled. seaborn also has no figure-wide footer, where the grid's header (runs, hardware) goes.
"""

from __future__ import annotations

import textwrap

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Patch, Rectangle  # noqa: E402

MARKS = {"missing": ("///", "0.55"), "failed": ("xx", "#c0392b"), "only": ("\\\\\\", "#7d3c98"),
         "collapsed": ("..", "#d35400")}  # state: (hatch, colour)


def mark(axes: plt.Axes, x: float, y: float, width: float, height: float, state: str, outline: float = 0.0,
         zorder: float = 1) -> None:
    """A white, hatched rectangle where a cell has no value to draw (below seaborn's grid lines and the labels);
    with a higher `zorder`, a transparent hatch over a drawn bar instead."""
    hatch, colour = MARKS[state]
    face = "white" if zorder <= 1 else "none"
    axes.add_patch(Rectangle((x, y), width, height, facecolor=face, hatch=hatch, edgecolor=colour, linewidth=outline,
                             zorder=zorder))


def mark_legend(state: str, label: str) -> Patch:
    hatch, colour = MARKS[state]
    return Patch(facecolor="white", edgecolor=colour, hatch=hatch, label=label)


def footer(figure: plt.Figure, text: str, chars_per_inch: float, fontsize: float, bottom: float) -> None:
    """The grid's header in small grey type under the figure, wrapped to the figure's width."""
    lines = textwrap.wrap(text, int(figure.get_figwidth() * chars_per_inch))
    figure.text(0.5, bottom, "\n".join(lines), ha="center", va="bottom", fontsize=fontsize, color="0.3")
