"""Small matplotlib charts rendered as inline SVG for the HTML reports (evaluation report, validation history).

Figures are built with the object-oriented `Figure` API, never pyplot: nothing is registered in a
global figure manager, so there is nothing to close or leak, and no GUI backend is ever touched.
The SVG is deterministic (fixed hash salt, no date) and self-contained: text stays ``<text>`` (the
page's font, searchable), no XML prolog or DOCTYPE, no metadata block and no namespace URLs, since
the HTML parser puts an inline ``<svg>`` in the SVG namespace by itself.

Chart functions return the ``<svg>`` markup, or None when there is no finite value to draw (the
caller then says so in a sentence). Every string that reaches matplotlib is taken literally (``$``
never starts mathtext); matplotlib escapes it in the SVG.
"""

from __future__ import annotations

import html
import io
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from markupsafe import Markup

WIDTH = 6.4  # inches (SVG units: 72 per inch); the page scales the chart to its column
LINE_HEIGHT = 2.6
MAX_MARKERS = 40  # more points than this: a line without dots
LABEL_CHARS, LEGEND_CHARS = 22, 18
ALERT = "#c62828"  # thresholds and failed nights
_SALT = "nightly-retrain"
_RC = {
    "font.size": 8, "font.family": "sans-serif", "font.sans-serif": ["DejaVu Sans"],  # shipped with matplotlib
    "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True, "axes.axisbelow": True,
    "grid.color": "#e3e3e3", "legend.fontsize": 7.5,
}
_NO_METADATA = {"Creator": None, "Date": None, "Format": None, "Type": None}  # no date, no URLs
_ROOT = re.compile(r"<svg\b[^>]*>")
_GROUP = re.compile(r'<g id="([^"]*)">')
_TAG = re.compile(r"tag(\d+)")


@dataclass(frozen=True)
class Style:
    colour: str
    dash: tuple[float, ...] = ()  # on/off lengths, so lines stay apart in black-and-white print; () is solid

    @property
    def linestyle(self) -> str | tuple[float, tuple[float, ...]]:
        return (0.0, self.dash) if self.dash else "solid"


@dataclass(frozen=True)
class Series:
    """One line; None values break it. `labels` (optional, one per point) are written above the points."""

    name: str
    style: Style
    points: tuple[tuple[float, float | None], ...]
    labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class Bar:
    """One horizontal bar (or dot) with an optional interval whisker; `text` is printed beside it."""

    name: str
    style: Style
    value: float | None
    low: float | None = None
    high: float | None = None
    text: str = ""


@dataclass(frozen=True)
class Chart:
    """A chart as a page template shows it: the SVG, or (no data) the sentence that says so."""

    title: str
    svg: Markup | None
    empty: str


def chart(title: str, svg: str | None, empty: str) -> Chart:
    return Chart(title, Markup(svg) if svg else None, empty)  # Markup: the helpers' SVG is not escaped again


def finite(value: object) -> float | None:
    """A finite float, or None for anything missing, NaN, infinite or not numeric (strings are parsed)."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def clip(text: str, limit: int = LABEL_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _literal(text: str) -> str:
    return text.replace("$", r"\$")  # a model named "$x$" must not become mathtext (or a parse error)


class _Canvas:
    """A figure with one axes, plus the artists to wrap in ``<g class=..><title>..</title>`` in the SVG."""

    def __init__(self, height: float) -> None:
        self.figure = Figure(figsize=(WIDTH, height), layout="constrained")
        self.ax: Axes = self.figure.add_subplot()
        self.tags: list[tuple[str, str]] = []

    def tag(self, artist: Artist, css: str, tooltip: str) -> None:
        """Marks `artist` so the SVG gives it a class and a hover tooltip (matplotlib writes its gid as a group id)."""
        artist.set_gid(f"tag{len(self.tags)}")
        self.tags.append((css, tooltip))

    def svg(self, title: str) -> str:
        return figure_svg(self.figure, title, self.tags)


def figure_svg(figure: Figure, title: str, tags: Sequence[tuple[str, str]] = ()) -> str:
    """`figure` as an inline ``<svg>`` titled `title`.

    A group whose gid is ``tag<i>`` gets the class and hover tooltip ``tags[i]`` (css, text).
    """
    buffer = io.StringIO()
    # Text stays text; the salt also names clip paths and markers: per title, so no two charts on a page share one.
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": f"{_SALT}:{title}"}):
        figure.savefig(buffer, format="svg", metadata=_NO_METADATA)
    raw = buffer.getvalue()
    svg = raw[raw.index("<svg"):]  # drop the XML prolog and the DOCTYPE (which names a URL)
    svg = _ROOT.sub(lambda m: _root(m.group(0), title), svg, count=1)

    def group(match: re.Match[str]) -> str:
        # matplotlib's own group ids (figure_1, line2d_3, ...) are unreferenced and would repeat in every chart
        # on a page; a tagged group gets a class and a <title> (its hover tooltip) as its first child instead.
        tagged = _TAG.fullmatch(match.group(1))
        if not tagged:
            return "<g>"
        css, tooltip = tags[int(tagged.group(1))]
        return f'<g class="{css}"><title>{html.escape(tooltip)}</title>'

    return _GROUP.sub(group, svg)


def _root(tag: str, title: str) -> str:
    """The root tag without namespace URLs, labelled for screen readers and titled for hovering."""
    attributes = re.sub(r'\s+(xmlns(:\w+)?|version)="[^"]*"', "", tag[4:-1])
    label = html.escape(title)
    return f'<svg class="chart" role="img" aria-label="{label}"{attributes}><title>{label}</title>'


def _legend(ax: Axes, handles: Sequence[Artist], names: Sequence[str]) -> None:
    # Explicit handles and labels: a model named "_x" must not be dropped as matplotlib's "no legend" marker.
    ax.legend(handles, [_literal(clip(n, LEGEND_CHARS)) for n in names], loc="upper left",
              bbox_to_anchor=(1.01, 1.0), frameon=False, handlelength=3.2)


def _plot(canvas: _Canvas, series: Series) -> Artist:
    xs = [x for x, _ in series.points]
    ys = [math.nan if y is None else y for _, y in series.points]
    few = sum(y is not None for _, y in series.points) <= MAX_MARKERS
    (line,) = canvas.ax.plot(xs, ys, color=series.style.colour, linestyle=series.style.linestyle, linewidth=1.8,
                             marker="o" if few else None, markersize=3.5)
    for (x, y), label in zip(series.points, series.labels):
        if label and y is not None:
            canvas.ax.annotate(_literal(label), (x, y), xytext=(0, 5), textcoords="offset points", ha="center",
                               fontsize=7)
    return line


def _threshold(canvas: _Canvas, value: float, label: str) -> None:
    """A dashed horizontal line at `value` (always inside the y range), labelled at its right end."""
    line = canvas.ax.axhline(value, color=ALERT, linestyle=(0, (6, 3)), linewidth=1.2)
    canvas.tag(line, "threshold", label)
    canvas.ax.annotate(_literal(label), (1.0, value), xycoords=canvas.ax.get_yaxis_transform(), xytext=(-3, 2),
                       textcoords="offset points", ha="right", va="bottom", color=ALERT, fontsize=7)


def line_chart(title: str, series: Sequence[Series], *, x_label: str, y_label: str,
               x_ticks: Sequence[tuple[float, str]] = (), include_zero: bool = False,
               thresholds: Sequence[tuple[float, str]] = (), marks: Sequence[tuple[float, str]] = ()) -> str | None:
    """A line chart; `x_ticks` (position, label) make the x axis categorical, else it is numeric.

    `thresholds` (value, label) are dashed horizontal lines; `marks` (x position, tooltip) shaded
    bands one category wide behind the lines (e.g. failed nights).
    """
    if not any(y is not None for s in series for _, y in s.points):
        return None
    with matplotlib.rc_context(_RC):
        canvas = _Canvas(LINE_HEIGHT)
        ax = canvas.ax
        for position, tooltip in marks:
            canvas.tag(ax.axvspan(position - 0.4, position + 0.4, color=ALERT, alpha=0.15, linewidth=0), "mark",
                       tooltip)
        for value, label in thresholds:
            _threshold(canvas, value, label)
        if include_zero:
            ax.axhline(0.0, color="#333333", linewidth=0.8)  # also pulls zero into the y range
        lines = [_plot(canvas, s) for s in series]
        if x_ticks:
            ax.set_xticks([p for p, _ in x_ticks], [_literal(label) for _, label in x_ticks])
        ax.set_xlabel(_literal(x_label))
        ax.set_ylabel(_literal(y_label))
        if len(series) > 1:
            _legend(ax, lines, [s.name for s in series])
        return canvas.svg(title)


def _draw_bar(canvas: _Canvas, bar: Bar, y: float, dots: bool) -> None:
    """One bar (or dot), its whisker over it, and its text beside the rightmost of them."""
    ax = canvas.ax
    if bar.value is None:
        ax.annotate(bar.text, (0.0, y), xytext=(4, 0), textcoords="offset points", va="center", fontsize=7)
        return
    if dots:
        (mark,) = ax.plot([bar.value], [y], "o", color=bar.style.colour, markersize=6, zorder=3)
    else:
        mark = ax.barh([y], [bar.value], height=0.8, color=bar.style.colour, alpha=0.8).patches[0]
    canvas.tag(mark, "bar", f"{bar.name}: {bar.text}")
    ends = [bar.value, 0.0]
    if bar.low is not None and bar.high is not None:  # lines, not errorbar: a bound past the value is still drawn
        ax.plot([bar.low, bar.high], [y, y], color="#222222", linewidth=1.3, marker="|", markersize=7, zorder=2.5)
        ends += [bar.low, bar.high]
    ax.annotate(_literal(bar.text), (max(ends), y), xytext=(5, 0), textcoords="offset points", va="center",
                fontsize=7)


def bar_chart(title: str, groups: Sequence[tuple[str, Sequence[Bar]]], *, x_label: str, dots: bool = False,
              legend: bool = True) -> str | None:
    """Horizontal bars (or dots, for signed deltas) grouped by label, top to bottom, with a zero line."""
    if not any(v is not None for _, bars in groups for b in bars for v in (b.value, b.low, b.high)):
        return None
    count = sum(len(bars) for _, bars in groups)
    with matplotlib.rc_context(_RC):
        canvas = _Canvas(0.75 + 0.17 * count + 0.08 * len(groups))  # height grows with the bars
        ax, y, ticks = canvas.ax, 0.0, []
        for label, bars in groups:
            ticks.append((y + (len(bars) - 1) / 2, _literal(clip(label))))
            for bar in bars:
                _draw_bar(canvas, bar, y, dots)
                y += 1.0
            y += 0.6  # a gap between groups
        ax.set_yticks([t for t, _ in ticks], [label for _, label in ticks])
        ax.set_ylim(y - 0.6 - 0.5, -0.5)  # first group at the top
        ax.axvline(0.0, color="#000000", linewidth=1.2)
        ax.grid(axis="y", visible=False)
        ax.margins(x=0.12)  # room for the printed values
        ax.set_xlabel(_literal(x_label))
        if legend:
            styles = {b.name: b.style for _, bars in groups for b in bars}
            _legend(ax, [Patch(color=s.colour, alpha=0.8) for s in styles.values()], list(styles))
        return canvas.svg(title)
