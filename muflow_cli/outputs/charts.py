"""The reports' charts: matplotlib figures rendered to SVG, to be inlined in a page.

No pyplot (no global figure state, no GUI backend): a :class:`~matplotlib.figure.Figure` is drawn
and saved as SVG. The output is deterministic, so a report written twice is the same: element ids
are hashed with a salt taken from the chart's own data (two charts of one page never share an id
by accident), text stays text (``svg.fonttype='none'``), and the metadata carries no date. The XML
prolog is dropped for inlining; the charts load nothing from outside, as the pages' CSP demands.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Sequence

import matplotlib as mpl
import numpy as np
from markupsafe import Markup, escape
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

DPI = 96  # figure inches to CSS pixels: matplotlib writes the size in points, a browser shows 4/3 px per point
LINE = "#2563eb"
BAR = "#64748b"
CUT = "#444444"
RC = {"svg.fonttype": "none", "font.family": "sans-serif", "font.size": 7.5, "axes.edgecolor": "#999999",
      "axes.facecolor": "#fafafa", "axes.linewidth": 0.8, "xtick.color": "#333333", "ytick.color": "#333333"}


def _figure(width: int, height: int, margins: tuple[int, int, int, int]) -> tuple[Figure, object]:
    """A figure ``width`` x ``height`` CSS pixels with one axes inside ``margins`` (left, right, top, bottom, px)."""
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    left, right, top, bottom = margins
    fig.subplots_adjust(left=left / width, right=1 - right / width, top=1 - top / height, bottom=bottom / height)
    return fig, fig.add_subplot()


def _svg(fig: Figure, label: str, salt: str) -> Markup:
    """The figure as inline SVG markup, labelled for screen readers."""
    buf = io.StringIO()
    with mpl.rc_context({"svg.hashsalt": salt}):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None, "Format": None, "Type": None})  # no <metadata>
    text = buf.getvalue()
    text = text[text.index("<svg"):]  # no XML prolog or DOCTYPE inside HTML
    text = re.sub(r'<g id="[^"]*"', "<g", text)  # figure_1, axes_1, ...: the same in every chart, and never referenced
    start = text.index(">") + 1
    # Deliberately HTML: matplotlib's own SVG (it escapes the text it draws; ours is fixed labels and numbers).
    return Markup(f"<svg role='img' aria-label='{escape(label)}' {text[5:start]}<title>{escape(label)}</title>{text[start:]}")


def _salt(*data: object) -> str:
    """The chart's ids' salt: a hash of what it shows."""
    h = hashlib.sha256()
    for d in data:
        h.update(d.tobytes() if isinstance(d, np.ndarray) else repr(d).encode())
    return h.hexdigest()[:16]


def line_chart(x: Sequence[float], y: Sequence[float], *, label: str, colours: Sequence[str] | str = LINE,
               cuts: Sequence[float] = (), xlabel: str = "", ylabel: str = "", integer_x: bool = False,
               size: tuple[int, int] = (360, 120)) -> Markup:
    """``y`` over ``x`` as a line with a dot per point (one colour, or one per point), dashed
    horizontal lines at ``cuts``."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    colours = [colours] * len(x) if isinstance(colours, str) else list(colours)
    with mpl.rc_context(RC):
        fig, ax = _figure(*size, (58 if ylabel else 46, 10, 8, 34 if xlabel else 20))
        ax.plot(x, y, color=LINE, lw=1.2, zorder=2)
        for colour in dict.fromkeys(colours):  # a series per colour: a dot per point, drawn in its colour
            pick = np.array([c == colour for c in colours], bool)
            ax.plot(x[pick], y[pick], ls="none", marker="o", ms=3.6, mew=0, color=colour, zorder=3)
        for c in cuts:
            ax.axhline(c, color=CUT, ls=(0, (4, 3)), lw=1, zorder=1)
        lo, hi = min([*y, *cuts]), max([*y, *cuts])  # the cutoffs always in view
        pad = (hi - lo) * 0.08 or 0.5
        ax.set_ylim(lo - pad, hi + pad)
        if x.min() == x.max():
            ax.set_xlim(x[0] - 0.5, x[0] + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(6, integer=integer_x))
        ax.yaxis.set_major_locator(MaxNLocator(4))
        ax.set_xlabel(xlabel, labelpad=2)
        ax.set_ylabel(ylabel, labelpad=2)
        return _svg(fig, label, _salt("line", x, y, colours, list(cuts)))


def histogram(values: Sequence[float], *, label: str, lines: Sequence[tuple[float, str, str]] = (), xlabel: str = "",
              size: tuple[int, int] = (520, 220)) -> Markup:
    """A histogram of ``values`` (its range stretched to hold every line), with dashed vertical
    ``lines`` (value, colour, text written at its top)."""
    values = np.asarray(values, float)
    lo = min([float(values.min()), *(v for v, _, _ in lines)])
    hi = max([float(values.max()), *(v for v, _, _ in lines)])
    if hi <= lo:
        hi = lo + 1.0
    bins = int(min(40, max(8, np.sqrt(len(values)) * 2)))
    with mpl.rc_context(RC):
        fig, ax = _figure(*size, (44, 14, 22, 34))
        ax.hist(values, bins=bins, range=(lo, hi), color=BAR, rwidth=0.92)
        for v, colour, text in lines:
            ax.axvline(v, color=colour, ls=(0, (5, 3)), lw=1.6)
            ax.annotate(text, (v, 1), xycoords=("data", "axes fraction"), xytext=(2, 2), textcoords="offset points",
                        color=colour, fontsize=7.5)
        ax.yaxis.set_major_locator(MaxNLocator(4, integer=True))
        ax.set_xlabel(xlabel, labelpad=2)
        return _svg(fig, label, _salt("hist", values, list(lines)))
