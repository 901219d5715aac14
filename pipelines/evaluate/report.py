"""The nightly evaluation report: one self-contained HTML page.

`render_report(evaluation)` turns the evaluate stage's result dict into a page with inline CSS and
inline SVG only (no scripts, no links, nothing fetched; readable on screen and on paper). In order:

* ``#blessing``: the gate's decision in big green/red text, its reason, the bootstrap rule on a
  first night, and every check (metric or slice, rule, threshold, champion, candidate, MostPop,
  delta, paired 95% interval, pass/fail/skipped, reason);
* ``#metrics``: one row per model, the headline metrics at K with their 95% bootstrap intervals;
* ``#by-k``: NDCG@K (and HR@K where computed at several K) against K, one line per model;
* ``#deltas``: candidate minus champion, paired per user, with 95% interval whiskers and a zero line;
* ``#slices``: NDCG@K per user/item slice and model as grouped bars, with the users in each slice;
* ``#history``: the published champion's NDCG@K and HR@K across past nights, versions labelled;
* ``#training``: training loss and validation NDCG by step;
* ``#data``: the data summary.

`render_validation_history(rows, charts)` draws the validate stage's statistics across nights with
the same chart helpers (thresholds as dashed lines, failed nights as shaded bands).

Each model keeps one colour and dash pattern (for black-and-white printing) across every chart.
Missing or NaN numbers print as "n/a" and are left out of charts; a section or chart without data
says so in a sentence. Every string taken from the input is escaped.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

NA = "n/a"
SECTIONS: tuple[tuple[str, str], ...] = (
    ("blessing", "Blessing"), ("metrics", "Metrics"), ("by-k", "Metric by K"),
    ("deltas", "Candidate vs champion"), ("slices", "Slices"), ("history", "Champion across nights"),
    ("training", "Training"), ("data", "Data"),
)
# Headline metric families in table order; any other metric@K follows them alphabetically.
_HEADLINE = ("ndcg", "hr", "mrr", "recall", "precision", "coverage", "novelty", "popularity_bias")

# Chart geometry (SVG user units; the charts scale down to the page width).
_WIDTH, _HEIGHT = 640, 260
_LEFT, _TOP, _BOTTOM = 64, 16, 46
_LEGEND_WIDTH = 150
_BAR_HEIGHT, _GROUP_GAP = 14, 12
_LABEL_CHARS = 22
_MAX_MARKERS = 40


@dataclass(frozen=True)
class _Style:
    colour: str
    dash: str = ""  # SVG stroke-dasharray; empty means solid


_CANDIDATE_STYLE = _Style("#1f5fbf")
_ROLE_STYLES = {"champion": _Style("#d95f02", "7 4"), "MostPop": _Style("#666666", "2 3"),
                "EASE": _Style("#1b9e77", "9 3 2 3")}
_EXTRA_STYLES = (_Style("#7b3294", "4 2"), _Style("#c51b7d", "1 2"), _Style("#8c6d00", "10 2"),
                 _Style("#00838f", "5 2 1 2"), _Style("#5d4037", "3 3"), _Style("#3949ab", "6 2 2 2"))
_VERDICT_STYLES = {"candidate better": _Style("#1a7f37"), "candidate worse": _Style("#c62828")}
_NEUTRAL_STYLE = _Style("#555555")
_SECOND_METRIC_STYLE = _Style("#d95f02", "7 4")


@dataclass(frozen=True)
class _Scale:
    """Linear map from the data interval [lo, hi] to the pixel interval [start, end]."""

    lo: float
    hi: float
    start: float
    end: float

    def __call__(self, value: float) -> float:
        if self.hi == self.lo:
            return (self.start + self.end) / 2
        return self.start + (value - self.lo) / (self.hi - self.lo) * (self.end - self.start)


@dataclass(frozen=True)
class _Series:
    """One line of a line chart; `labels` (optional, one per point) are written above the points."""

    name: str
    style: _Style
    points: tuple[tuple[float, float | None], ...]
    labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Bar:
    """One bar (or dot) of a horizontal bar chart, with an optional interval whisker."""

    name: str
    style: _Style
    value: float | None
    low: float | None = None
    high: float | None = None


# --------------------------------------------------------------------------- input coercion

def _number(value: object) -> float | None:
    """A finite float, or None for anything missing, NaN, infinite or not numeric (strings are parsed)."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _records(value: object) -> list[Mapping[str, Any]]:
    return [row for row in value if isinstance(row, Mapping)] if isinstance(value, (list, tuple)) else []


def _pair(value: object) -> tuple[object, object] | None:
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return value[0], value[1]
    return None


# --------------------------------------------------------------------------- text formatting

def _esc(value: object) -> str:
    return html.escape(str(value))


def _fmt(value: object, digits: int = 4, signed: bool = False) -> str:
    number = _number(value)
    if number is None:
        return NA
    return f"{number:+.{digits}f}" if signed else f"{number:.{digits}f}"


def _fmt_interval(value: object, signed: bool = False) -> str:
    pair = _pair(value)
    return "" if pair is None else f"[{_fmt(pair[0], signed=signed)}, {_fmt(pair[1], signed=signed)}]"


def _fmt_with_interval(value: object, interval: object, signed: bool = False) -> str:
    text, bounds = _fmt(value, signed=signed), _fmt_interval(interval, signed=signed)
    return f"{text} {bounds}" if bounds and text != NA else text


def _fmt_plain(value: object) -> str:
    """Counts with thousands separators, other numbers to 4 significant digits, text as is."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return NA
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int) or value.is_integer():
        return f"{int(value):,}"
    return f"{value:.4g}"


def _clip(text: str, limit: int = _LABEL_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _empty(sentence: str) -> str:
    return f'<p class="empty">{_esc(sentence)}</p>'


def _table(head: Sequence[str], rows: Iterable[Sequence[str]], *, row_classes: Sequence[str] = (),
           text_columns: frozenset[int] = frozenset({0})) -> str:
    """A table whose cells are all escaped; columns in `text_columns` are left-aligned."""
    header = "".join(f"<th>{_esc(cell)}</th>" for cell in head)
    body = []
    for index, row in enumerate(rows):
        css = f' class="{_esc(row_classes[index])}"' if index < len(row_classes) and row_classes[index] else ""
        cells = "".join(f'<td class="text">{_esc(c)}</td>' if i in text_columns else f"<td>{_esc(c)}</td>"
                        for i, c in enumerate(row))
        body.append(f"<tr{css}>{cells}</tr>")
    return f"<table><thead><tr>{header}</tr></thead><tbody>{''.join(body)}</tbody></table>"


# --------------------------------------------------------------------------- model colours

def _model_order(names: Iterable[str], candidate: str) -> list[str]:
    """The candidate, champion, MostPop and EASE first (where present), then the rest as given."""
    unique = list(dict.fromkeys(names))
    first = [name for name in (candidate, "champion", "MostPop", "EASE") if name in unique]
    return first + [name for name in unique if name not in first]


def _model_styles(names: Sequence[str], candidate: str) -> dict[str, _Style]:
    styles: dict[str, _Style] = {}
    extras = 0
    for name in names:
        if name == candidate:
            styles[name] = _CANDIDATE_STYLE
        elif name in _ROLE_STYLES:
            styles[name] = _ROLE_STYLES[name]
        else:
            styles[name] = _EXTRA_STYLES[extras % len(_EXTRA_STYLES)]
            extras += 1
    return styles


# --------------------------------------------------------------------------- SVG helpers

def _nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About `count` round tick values covering [lo, hi] (the first <= lo, the last >= hi)."""
    if hi < lo:
        lo, hi = hi, lo
    if hi == lo:
        pad = abs(lo) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / max(count - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw * (1 - 1e-9))
    first, last = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
    return [i * step for i in range(first, last + 1)]


def _tick_labels(ticks: Sequence[float]) -> list[tuple[float, str]]:
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0
    decimals = 0
    while decimals < 6 and abs(round(step, decimals) - step) > abs(step) * 1e-6:
        decimals += 1
    return [(t, f"{0.0 if abs(t) < step / 2 else t:.{decimals}f}") for t in ticks]


def _text(x: float, y: float, content: str, anchor: str = "start", css: str = "") -> str:
    klass = f' class="{css}"' if css else ""
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}"{klass}>{_esc(content)}</text>'


def _line(x1: float, y1: float, x2: float, y2: float, css: str = "", style: _Style | None = None) -> str:
    klass = f' class="{css}"' if css else ""
    paint = f' stroke="{style.colour}"' + (f' stroke-dasharray="{style.dash}"' if style.dash else "") if style else ""
    return f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}"{klass}{paint}/>'


def _axes(x: _Scale, y: _Scale, x_ticks: Sequence[tuple[float, str]], y_ticks: Sequence[tuple[float, str]],
          x_label: str, y_label: str) -> str:
    """Grid lines, tick labels, the two axis lines and the axis titles."""
    parts = []
    for value, label in y_ticks:
        parts += [_line(x.start, y(value), x.end, y(value), "grid"), _text(x.start - 6, y(value) + 4, label, "end")]
    for value, label in x_ticks:
        parts += [_line(x(value), y.start, x(value), y.end, "grid"), _text(x(value), y.start + 16, label, "middle")]
    parts += [_line(x.start, y.start, x.end, y.start, "axis"), _line(x.start, y.start, x.start, y.end, "axis")]
    parts.append(_text((x.start + x.end) / 2, y.start + 36, x_label, "middle", "axis-title"))
    if y_label:
        middle = (y.start + y.end) / 2
        parts.append(f'<text x="0" y="0" text-anchor="middle" class="axis-title" '
                     f'transform="translate(14 {middle:.1f}) rotate(-90)">{_esc(y_label)}</text>')
    return "".join(parts)


def _legend(entries: Sequence[tuple[str, _Style]], left: float, top: float) -> str:
    rows = []
    for index, (name, style) in enumerate(entries):
        y = top + 18 * index
        rows.append(f"<g><title>{_esc(name)}</title>{_line(left, y, left + 24, y, 'series', style)}"
                    f"{_text(left + 30, y + 4, _clip(name, 18))}</g>")
    return "".join(rows)


def _svg(title: str, height: float, body: str) -> str:
    return (f'<figure><svg class="chart" viewBox="0 0 {_WIDTH} {height:.0f}" width="{_WIDTH}" '
            f'height="{height:.0f}" role="img" aria-label="{_esc(title)}"><title>{_esc(title)}</title>{body}</svg>'
            f"<figcaption>{_esc(title)}</figcaption></figure>")


def _polyline(series: _Series, x: _Scale, y: _Scale) -> str:
    """The series' line (broken where a value is missing), markers when few points, and point labels."""
    segments: list[list[str]] = [[]]
    for px, py in series.points:
        if py is None:
            segments.append([])
        else:
            segments[-1].append(f"{x(px):.1f},{y(py):.1f}")
    dash = f' stroke-dasharray="{series.style.dash}"' if series.style.dash else ""
    parts = [f'<polyline class="series" points="{" ".join(s)}" stroke="{series.style.colour}"{dash}/>'
             for s in segments if len(s) > 1]
    finite = [(px, py) for px, py in series.points if py is not None]
    if len(finite) <= _MAX_MARKERS:
        parts += [f'<circle cx="{x(px):.1f}" cy="{y(py):.1f}" r="3" fill="{series.style.colour}"/>'
                  for px, py in finite]
    for (px, py), label in zip(series.points, series.labels):
        if label and py is not None:
            parts.append(_text(x(px), y(py) - 8, label, "middle", "point-label"))
    return "".join(parts)


def _threshold(value: float, label: str, x: _Scale, y: _Scale) -> str:
    """A dashed horizontal line at `value`, labelled at its right end."""
    return (f'<g><title>{_esc(label)}</title>{_line(x.start, y(value), x.end, y(value), "threshold")}'
            f'{_text(x.end - 4, y(value) - 4, label, "end", "threshold-label")}</g>')


def _mark(position: float, label: str, x: _Scale, y: _Scale) -> str:
    """A translucent vertical band at x = `position` (e.g. a failed night), with `label` as its tooltip."""
    return (f'<g class="mark"><title>{_esc(label)}</title>'
            f'{_line(x(position), y.start, x(position), y.end, "mark")}</g>')


def _line_chart(title: str, series: Sequence[_Series], *, x_label: str, y_label: str, empty: str,
                x_ticks: Sequence[tuple[float, str]] = (), include_zero: bool = False,
                thresholds: Sequence[tuple[float, str]] = (), marks: Sequence[tuple[float, str]] = ()) -> str:
    """A line chart; `x_ticks` (position, label) makes the x axis categorical, else it is numeric.

    `thresholds` (value, label) are drawn as dashed horizontal lines, inside the y range;
    `marks` (x position, label) as vertical bands behind the lines.
    """
    finite = [(px, py) for s in series for px, py in s.points if py is not None]
    if not finite:
        return _empty(empty)
    ys = [py for _, py in finite] + ([0.0] if include_zero else []) + [value for value, _ in thresholds]
    y_values = _nice_ticks(min(ys), max(ys))
    right = _WIDTH - (_LEGEND_WIDTH if len(series) > 1 else 24)
    y = _Scale(y_values[0], y_values[-1], _HEIGHT - _BOTTOM, _TOP)
    if x_ticks:
        positions = [p for p, _ in x_ticks]
        x = _Scale(min(positions) - 0.3, max(positions) + 0.3, _LEFT, right)
    else:
        x_values = _nice_ticks(min(p for p, _ in finite), max(p for p, _ in finite))
        x, x_ticks = _Scale(x_values[0], x_values[-1], _LEFT, right), _tick_labels(x_values)
    body = _axes(x, y, x_ticks, _tick_labels(y_values), x_label, y_label)
    body += "".join(_mark(position, label, x, y) for position, label in marks)
    body += "".join(_threshold(value, label, x, y) for value, label in thresholds)
    body += "".join(_polyline(s, x, y) for s in series)
    if len(series) > 1:
        body += _legend([(s.name, s.style) for s in series], right + 16, _TOP + 6)
    return _svg(title, _HEIGHT, body)


def _bar(bar: _Bar, x: _Scale, centre: float, dots: bool) -> str:
    """One bar (or dot for `dots`), its whisker, and its value printed beside it."""
    if bar.value is None:
        return _text(x(0.0) + 4, centre + 4, NA, css="value")
    whisker = []
    if bar.low is not None and bar.high is not None:
        cap = _BAR_HEIGHT / 2 - 2
        whisker = [_line(x(bar.low), centre, x(bar.high), centre, "whisker"),
                   _line(x(bar.low), centre - cap, x(bar.low), centre + cap, "whisker"),
                   _line(x(bar.high), centre - cap, x(bar.high), centre + cap, "whisker")]
    if dots:  # the dot goes over its whisker, the whisker over its bar
        parts = [*whisker, f'<circle cx="{x(bar.value):.1f}" cy="{centre:.1f}" r="4.5" fill="{bar.style.colour}"/>']
    else:
        left, right = sorted((x(0.0), x(bar.value)))
        parts = [f'<rect x="{left:.1f}" y="{centre - _BAR_HEIGHT / 2 + 1:.1f}" width="{right - left:.1f}" '
                 f'height="{_BAR_HEIGHT - 2}" fill="{bar.style.colour}" fill-opacity="0.8"/>', *whisker]
    end = max(x(v) for v in (0.0, bar.value, bar.low, bar.high) if v is not None)
    parts.append(_text(end + 5, centre + 4, _fmt(bar.value, signed=dots), css="value"))
    return f"<g><title>{_esc(bar.name)}: {_esc(_fmt(bar.value, signed=dots))}</title>{''.join(parts)}</g>"


def _bar_chart(title: str, groups: Sequence[tuple[str, Sequence[_Bar]]], *, x_label: str, empty: str,
               dots: bool = False, legend: bool = True) -> str:
    """Horizontal bars (or dots) grouped by label, with optional whiskers and a zero line."""
    values = [v for _, bars in groups for b in bars for v in (b.value, b.low, b.high) if v is not None]
    if not values:
        return _empty(empty)
    ticks = _nice_ticks(min(values + [0.0]), max(values + [0.0]))
    left = _LEFT + 7 * _LABEL_CHARS
    right = _WIDTH - (_LEGEND_WIDTH if legend else 0) - 56
    bottom = _TOP + sum(len(bars) * _BAR_HEIGHT + _GROUP_GAP for _, bars in groups)
    x, y = _Scale(ticks[0], ticks[-1], left, right), _Scale(0.0, 1.0, bottom, _TOP)
    parts = [_axes(x, y, _tick_labels(ticks), (), x_label, "")]
    top = _TOP + _GROUP_GAP / 2
    for label, bars in groups:
        middle = top + len(bars) * _BAR_HEIGHT / 2
        parts.append(f"<g><title>{_esc(label)}</title>{_text(left - 8, middle + 4, _clip(label), 'end')}</g>")
        parts += [_bar(b, x, top + (i + 0.5) * _BAR_HEIGHT, dots) for i, b in enumerate(bars)]
        top += len(bars) * _BAR_HEIGHT + _GROUP_GAP
    parts.append(_line(x(0.0), bottom, x(0.0), _TOP, "zero"))
    if legend:
        entries = {b.name: b.style for _, bars in groups for b in bars}
        parts.append(_legend(list(entries.items()), right + 56, _TOP + 6))
    return _svg(title, bottom + _BOTTOM, "".join(parts))


# --------------------------------------------------------------------------- sections

@dataclass(frozen=True)
class _Context:
    k: int
    ks: tuple[int, ...]
    candidate: str
    order: tuple[str, ...]
    styles: Mapping[str, _Style]
    has_champion: bool
    champion_version: object


def _blessing_section(blessing: Mapping[str, Any]) -> str:
    if not blessing:
        return _empty("No blessing decision was recorded for this night.")
    blessed = bool(blessing.get("blessed"))
    decision = str(blessing.get("decision") or ("BLESSED" if blessed else "NOT_BLESSED"))
    checks = _records(blessing.get("checks"))
    head = ["metric", "rule", "threshold", "champion", "candidate", "MostPop", "delta", "95% interval", "result",
            "reason"]
    rows = [_check_row(check) for check in checks]
    classes = ["skipped" if c.get("skipped") else "pass" if c.get("passed") else "fail" for c in checks]
    table = (_table(head, rows, row_classes=classes, text_columns=frozenset({0, 1, 8, 9})) if checks
             else _empty("No checks were run."))
    note = ("<p>Change rules (min_gain, max_loss) are judged on the lower bound of the paired 95% bootstrap "
            "interval of candidate minus champion; floors, MostPop and slice checks on point values. "
            "Thresholds, deltas and intervals of relative rules are fractions of the champion's value (%).</p>")
    bootstrap = blessing.get("bootstrap_rule")
    rule = f'<p>{_esc(bootstrap)}</p>' if bootstrap else ""
    return (f'<p class="decision {"pass" if blessed else "fail"}">{_esc(decision)}</p>'
            f'<p class="reason">{_esc(blessing.get("reason", ""))}</p>{rule}{table}{note if checks else ""}')


def _fmt_rule(value: object, relative: bool, signed: bool = True) -> str:
    """A threshold, delta or bound: percent of the champion's value for relative rules."""
    number = _number(value)
    if number is None:
        return ""
    return (f"{number:+.2%}" if signed else f"{number:.2%}") if relative else _fmt(number, signed=signed)


def _check_row(check: Mapping[str, Any]) -> list[str]:
    relative = bool(check.get("relative"))
    scope = f"{check.get('metric', '')} in {check['slice']}" if check.get("slice") else str(check.get("metric", ""))
    rule = f"{check.get('rule', '')}{' (relative)' if relative else ''}"
    pair = _pair(check.get("interval"))
    interval = "" if pair is None else f"[{_fmt_rule(pair[0], relative)}, {_fmt_rule(pair[1], relative)}]"
    result = "skipped" if check.get("skipped") else "pass" if check.get("passed") else "FAIL"
    values = [_fmt(check[key]) if _number(check.get(key)) is not None else "" for key in
              ("champion", "candidate", "mostpop")]
    return [scope, rule, _fmt_rule(check.get("threshold"), relative, signed=False), *values,
            _fmt_rule(check.get("delta"), relative), interval, result, str(check.get("reason", ""))]


def _headline_metrics(models: Mapping[str, Any], k: int) -> list[str]:
    suffix = f"@{k}"
    present = {key for m in models.values() for key in _mapping(_mapping(m).get("metrics")) if key.endswith(suffix)}
    ordered = [f"{name}{suffix}" for name in _HEADLINE if f"{name}{suffix}" in present]
    return ordered + sorted(present - set(ordered))


def _metrics_section(models: Mapping[str, Any], ctx: _Context) -> str:
    names = [name for name in ctx.order if name in models]
    if not names:
        return _empty("No model metrics were recorded.")
    columns = _headline_metrics(models, ctx.k)
    rows = []
    for name in names:
        entry = _mapping(models[name])
        metrics, intervals = _mapping(entry.get("metrics")), _mapping(entry.get("intervals"))
        rows.append([name, *(_fmt_with_interval(metrics.get(c), intervals.get(c)) for c in columns),
                     _fmt_plain(metrics.get("users"))])
    note = (f"<p>Headline cut-off K = {ctx.k}; brackets are 95% bootstrap intervals over users. "
            f"Candidate: {_esc(ctx.candidate)}.</p>")
    return note + _table(["model", *columns, "users"], rows)


def _by_k_series(models: Mapping[str, Any], ctx: _Context, family: str) -> list[_Series]:
    series = []
    for name in (n for n in ctx.order if n in models):
        metrics = _mapping(_mapping(models[name]).get("metrics"))
        points = tuple((float(i), _number(metrics.get(f"{family}@{k}"))) for i, k in enumerate(ctx.ks))
        if any(v is not None for _, v in points):
            series.append(_Series(name, ctx.styles[name], points))
    return series


def _by_k_section(models: Mapping[str, Any], ctx: _Context) -> str:
    if not ctx.ks or not models:
        return _empty("No metrics by K were recorded.")
    ticks = [(float(i), str(k)) for i, k in enumerate(ctx.ks)]
    parts, rows, head = [], [], ["model"]
    for family, label in (("ndcg", "NDCG"), ("hr", "HR")):
        series = _by_k_series(models, ctx, family)
        computed_at = {i for s in series for i, v in s.points if v is not None}
        if family == "hr" and len(computed_at) < 2:
            continue
        parts.append(_line_chart(f"{label}@K by cut-off K", series, x_label="K", y_label=f"{label}@K",
                                 x_ticks=ticks, include_zero=True, empty=f"No {label}@K values were recorded."))
        head += [f"{family}@{k}" for k in ctx.ks]
        by_name = {s.name: s for s in series}
        for index, name in enumerate(n for n in ctx.order if n in models):
            values = [_fmt(v) for _, v in by_name[name].points] if name in by_name else [NA] * len(ctx.ks)
            if len(rows) <= index:
                rows.append([name])
            rows[index] += values
    return "".join(parts) + _table(head, rows)


def _verdict(low: float | None, high: float | None) -> str:
    if low is None or high is None:
        return "no interval"
    if low > 0:
        return "candidate better"
    if high < 0:
        return "candidate worse"
    return "no clear difference"


def _deltas_section(paired: Mapping[str, Any], ctx: _Context) -> str:
    if not paired:
        if not ctx.has_champion:
            return _empty("There is no champion to compare with yet (first night), so there are no paired deltas.")
        return _empty("No paired candidate-vs-champion deltas were computed.")
    groups, rows = [], []
    for metric, stats in paired.items():
        stats = _mapping(stats)
        delta, low, high = (_number(stats.get(key)) for key in ("delta", "low", "high"))
        verdict = _verdict(low, high)
        groups.append((str(metric), [_Bar(str(metric), _VERDICT_STYLES.get(verdict, _NEUTRAL_STYLE), delta,
                                          low, high)]))
        rows.append([str(metric), _fmt(delta, signed=True), _fmt_interval([low, high], signed=True), verdict])
    version = f" (version {_esc(ctx.champion_version)})" if ctx.champion_version is not None else ""
    intro = (f"<p>Candidate minus champion{version}, paired per user; whiskers are 95% bootstrap intervals. "
             "An interval that excludes zero is a clear difference.</p>")
    chart = _bar_chart("Candidate minus champion", groups, x_label="delta (candidate - champion)", dots=True,
                       legend=False, empty="No paired delta has a value.")
    return intro + chart + _table(["metric", "delta", "95% interval", "verdict"], rows,
                                  text_columns=frozenset({0, 3}))


def _slice_models(slices: Mapping[str, Any], ctx: _Context) -> list[str]:
    present = {name for s in slices.values() for name in _mapping(_mapping(s).get("models"))}
    return [name for name in ctx.order if name in present]


def _slices_section(slices: Mapping[str, Any], ctx: _Context) -> str:
    if not slices:
        return _empty("No slices were computed for this night.")
    names, ndcg, hr = _slice_models(slices, ctx), f"ndcg@{ctx.k}", f"hr@{ctx.k}"
    groups, rows = [], []
    for label, entry in slices.items():
        per_model = _mapping(_mapping(entry).get("models"))
        groups.append((str(label), [_Bar(n, ctx.styles[n], _number(_mapping(per_model[n]).get(ndcg)))
                                    for n in names if n in per_model]))
        rows.append([str(label), _fmt_plain(_mapping(entry).get("users")),
                     *(_fmt(_mapping(per_model.get(n)).get(m)) for n in names for m in (ndcg, hr))])
    chart = _bar_chart(f"NDCG@{ctx.k} by slice", groups, x_label=f"NDCG@{ctx.k}",
                       empty=f"No slice has an NDCG@{ctx.k} value.")
    head = ["slice", "users", *(f"{n} {m}" for n in names for m in (ndcg, hr))]
    return chart + _table(head, rows)


def _history_section(history: list[Mapping[str, Any]], ctx: _Context) -> str:
    ndcg, hr = f"ndcg@{ctx.k}", f"hr@{ctx.k}"
    rows = [[str(h.get("run_date", "")), _fmt_plain(h.get("version")), _fmt(h.get(ndcg)), _fmt(h.get(hr))]
            for h in history]
    table = _table(["run date", "version", ndcg, hr], rows) if rows else ""
    if len(history) < 2:
        count = "no night" if not history else "one night"
        return _empty(f"The champion has {count} of history so far; the chart needs at least two.") + table
    labels, previous = [], object()
    for h in history:
        changed = h.get("version") is not None and h.get("version") != previous
        labels.append(f"v{h.get('version')}" if changed else "")
        previous = h.get("version")
    series = [_Series(f"NDCG@{ctx.k}", ctx.styles.get("champion", _ROLE_STYLES["champion"]),
                      tuple((float(i), _number(h.get(ndcg))) for i, h in enumerate(history)), tuple(labels)),
              _Series(f"HR@{ctx.k}", _SECOND_METRIC_STYLE,
                      tuple((float(i), _number(h.get(hr))) for i, h in enumerate(history)))]
    series = [s for s in series if any(v is not None for _, v in s.points)]
    every = max(1, math.ceil(len(history) / 6))
    ticks = [(float(i), str(h.get("run_date", i))) for i, h in enumerate(history) if i % every == 0]
    chart = _line_chart("Published champion across nights", series, x_label="run date", y_label="metric",
                        x_ticks=ticks, empty="No champion metric was recorded in the history.")
    return chart + table


def _curve_series(curve: list[Mapping[str, Any]], key: str, style: _Style) -> _Series:
    points = []
    for index, row in enumerate(curve):
        step = _number(row.get("step"))
        points.append((step if step is not None else float(index + 1), _number(row.get(key))))
    return _Series(key, style, tuple((px, py) for px, py in points if py is not None))


def _training_section(curve: list[Mapping[str, Any]], ctx: _Context) -> str:
    if not curve:
        return _empty("No training curve was recorded.")
    style = ctx.styles.get(ctx.candidate, _CANDIDATE_STYLE)
    loss, valid = _curve_series(curve, "loss", style), _curve_series(curve, "valid_ndcg", style)
    summary = []
    if loss.points:
        summary.append(f"final loss {_fmt(loss.points[-1][1])} at step {_fmt_plain(loss.points[-1][0])}")
    if valid.points:
        best = max(valid.points, key=lambda p: p[1] or 0.0)
        summary.append(f"best valid_ndcg {_fmt(best[1])} at step {_fmt_plain(best[0])}")
    text = "; ".join(summary)
    note = f"<p>{_esc(text[:1].upper() + text[1:])}.</p>" if summary else ""
    return (note + _line_chart("Training loss by step", [loss], x_label="step", y_label="loss",
                               empty="No loss values were recorded.")
            + _line_chart("Validation NDCG by step", [valid], x_label="step", y_label="valid_ndcg",
                          empty="No validation NDCG values were recorded."))


def _data_section(summary: Mapping[str, Any]) -> str:
    if not summary:
        return _empty("No data summary was recorded.")
    return _table(["quantity", "value"], [[str(key), _fmt_plain(value)] for key, value in summary.items()])


# --------------------------------------------------------------------------- page

_CSS = """
* { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2rem auto; max-width: 80rem;
       padding: 0 1rem; color: #1a1a1a; background: #fff; line-height: 1.4; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; }
h2 { font-size: 1.25rem; margin-top: 2.2rem; border-bottom: 1px solid #ccc; padding-bottom: .2rem; }
nav a { margin-right: .8rem; color: #1f5fbf; }
table { border-collapse: collapse; margin: .6rem 0 1.2rem; font-size: .9rem; }
th, td { border: 1px solid #bbb; padding: .25rem .55rem; text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f2f2f2; }
td.text { text-align: left; }
tr.pass td { background: #e8f6ec; } tr.fail td { background: #fdeaea; } tr.skipped td { background: #f4f4f4; }
.decision { font-size: 2rem; font-weight: 700; padding: .3rem 1rem; display: inline-block; margin: .4rem 0;
            border: 3px solid; border-radius: .3rem; }
.decision.pass { color: #1a7f37; border-color: #1a7f37; background: #e8f6ec; }
.decision.fail { color: #c62828; border-color: #c62828; background: #fdeaea; }
.empty { font-style: italic; color: #444; }
figure { margin: .8rem 0; }
figcaption { font-size: .85rem; color: #444; }
svg.chart { max-width: 100%; height: auto; font-size: 11px; }
svg.chart text { fill: #222; font-family: inherit; }
svg.chart .axis-title { font-size: 12px; font-weight: 600; }
svg.chart .point-label, svg.chart .value { font-size: 10px; }
svg.chart .grid { stroke: #e3e3e3; stroke-width: 1; }
svg.chart .axis { stroke: #333; stroke-width: 1; }
svg.chart .zero { stroke: #000; stroke-width: 1.5; }
svg.chart .whisker { stroke: #222; stroke-width: 1.5; }
svg.chart .series { fill: none; stroke-width: 2.2; }
svg.chart .threshold { stroke: #c62828; stroke-width: 1.5; stroke-dasharray: 6 3; }
svg.chart .threshold-label { font-size: 10px; fill: #c62828; }
svg.chart .mark { stroke: #c62828; stroke-width: 10; stroke-opacity: .15; }
@media print {
  body { margin: 0; max-width: none; font-size: 10pt; }
  nav { display: none; }
  figure, table, .decision { break-inside: avoid; page-break-inside: avoid; }
  h2 { break-after: avoid; page-break-after: avoid; }
}
"""


def _header(evaluation: Mapping[str, Any], ctx: _Context) -> str:
    interval = _mapping(evaluation.get("data_interval"))
    champion = (f"version {_esc(ctx.champion_version)}" if ctx.champion_version is not None
                else "none (first night)")
    cutoffs = ", ".join(str(k) for k in ctx.ks) or NA
    nav = "".join(f'<a href="#{anchor}">{_esc(title)}</a>' for anchor, title in SECTIONS)
    return (f"<h1>Nightly evaluation, {_esc(evaluation.get('logical_date', NA))}</h1>"
            f"<p>Data interval {_esc(interval.get('start', NA))} to {_esc(interval.get('end', NA))}. "
            f"Candidate: {_esc(ctx.candidate)}. Champion: {champion}. Headline cut-off K = {ctx.k}; "
            f"cut-offs computed: {_esc(cutoffs)}. Full-catalogue ranking, history excluded, ties pessimistic.</p>"
            f"<nav>{nav}</nav>")


def _context(evaluation: Mapping[str, Any]) -> _Context:
    models, slices = _mapping(evaluation.get("models")), _mapping(evaluation.get("slices"))
    candidate = str(evaluation.get("candidate_name") or "candidate")
    k = int(_number(evaluation.get("k")) or 10)
    given = evaluation.get("ks")
    ks = sorted({int(v) for v in (_number(x) for x in (given if isinstance(given, (list, tuple)) else ()))
                 if v is not None})
    if not ks:
        ks = sorted({int(key.rsplit("@", 1)[1]) for m in models.values()
                     for key in _mapping(_mapping(m).get("metrics")) if key.rsplit("@", 1)[-1].isdigit()})
    slice_names = (name for s in slices.values() for name in _mapping(_mapping(s).get("models")))
    order = _model_order([*(str(n) for n in models), *(str(n) for n in slice_names)], candidate)
    version = evaluation.get("champion_version")
    return _Context(k=k, ks=tuple(ks), candidate=candidate, order=tuple(order),
                    styles=_model_styles(order, candidate), champion_version=version,
                    has_champion=version is not None or "champion" in models)


def render_report(evaluation: Mapping[str, Any]) -> str:
    """The whole report page for one night's evaluation dict (see the module docstring)."""
    ctx = _context(evaluation)
    models = _mapping(evaluation.get("models"))
    bodies = {
        "blessing": _blessing_section(_mapping(evaluation.get("blessing"))),
        "metrics": _metrics_section(models, ctx),
        "by-k": _by_k_section(models, ctx),
        "deltas": _deltas_section(_mapping(evaluation.get("paired")), ctx),
        "slices": _slices_section(_mapping(evaluation.get("slices")), ctx),
        "history": _history_section(_records(evaluation.get("history")), ctx),
        "training": _training_section(_records(evaluation.get("curve")), ctx),
        "data": _data_section(_mapping(evaluation.get("data_summary"))),
    }
    sections = "\n".join(f'<section><h2 id="{anchor}">{_esc(title)}</h2>\n{bodies[anchor]}</section>'
                         for anchor, title in SECTIONS)
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>Nightly evaluation {_esc(evaluation.get('logical_date', ''))}</title>"
            f"<style>{_CSS}</style></head><body>\n{_header(evaluation, ctx)}\n{sections}\n</body></html>\n")


# --------------------------------------------------------------------------- validation history page

@dataclass(frozen=True)
class HistoryChart:
    """One column of the validation history drawn across nights, with its thresholds (value, label)."""

    column: str
    title: str
    thresholds: tuple[tuple[float, str], ...] = ()


def _failed(row: Mapping[str, Any]) -> bool:
    return str(row.get("success", "")).strip().lower() not in ("true", "1")


def _history_chart(rows: Sequence[Mapping[str, Any]], chart: HistoryChart) -> str:
    points = tuple((float(i), _number(row.get(chart.column))) for i, row in enumerate(rows))
    every = max(1, math.ceil(len(rows) / 8))
    ticks = [(float(i), str(row.get("logical_date", i))) for i, row in enumerate(rows) if i % every == 0]
    marks = [(float(i), f"failed night {row.get('logical_date', i)}") for i, row in enumerate(rows) if _failed(row)]
    return _line_chart(chart.title, [_Series(chart.column, _CANDIDATE_STYLE, points)], x_label="logical date",
                       y_label=chart.column, x_ticks=ticks, thresholds=chart.thresholds, marks=marks,
                       empty=f"No night recorded a value for {chart.column}.")


def render_validation_history(rows: Sequence[Mapping[str, Any]], charts: Sequence[HistoryChart]) -> str:
    """The validate stage's history page: one chart per statistic across nights, failed nights marked.

    `rows` are the history's rows (``logical_date``, ``success`` and the charted columns; values may
    be text, as CSV holds them). Self-contained like the evaluation report: inline CSS and SVG only.
    """
    failed = [str(row.get("logical_date", "")) for row in rows if _failed(row)]
    nights = f"{len(rows)} night" + ("" if len(rows) == 1 else "s")
    span = f"{nights}, {_esc(rows[0].get('logical_date', NA))} to {_esc(rows[-1].get('logical_date', NA))}" \
        if rows else "no night yet"
    verdicts = (f"{len(failed)} failed (shaded in every chart): {_esc(', '.join(failed))}." if failed
                else "none failed.")
    sections = "\n".join(f'<section><h2 id="{_esc(chart.column)}">{_esc(chart.title)}</h2>\n'
                         f"{_history_chart(rows, chart)}</section>" for chart in charts)
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>Validation statistics across nights</title><style>{_CSS}</style></head><body>\n"
            f"<h1>Validation statistics across nights</h1>"
            f"<p>{span}; {verdicts} Dashed red lines are the thresholds as configured now (params.yaml, "
            f"<code>validate</code>); a chart's line breaks where a night has no value (the check was skipped).</p>"
            f"\n{sections}\n</body></html>\n")
