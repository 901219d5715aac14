"""The validate stage's history page: each statistic across nights, thresholds dashed, failed nights shaded.

`render_validation_history(rows, charts)` draws one chart per `HistoryChart` from the history's rows
(as CSV holds them: text, "" where a check was skipped) with the shared chart helpers
(`pipelines.core.charts`): one self-contained HTML file, inline CSS and SVG only. The page template
lives here, not beside the evaluation report's, because the validate stage may not depend on evaluate.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jinja2

from pipelines.core.charts import Chart, Series, Style, chart, finite, line_chart

_STYLE = Style("#1f5fbf")
_MAX_TICKS = 8
_PAGE = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
                           lstrip_blocks=True).from_string("""\
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Validation statistics across nights</title>
<style>
* { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2rem auto; max-width: 80rem;
       padding: 0 1rem; color: #1a1a1a; background: #fff; line-height: 1.4; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; }
h2 { font-size: 1.25rem; margin-top: 2.2rem; border-bottom: 1px solid #ccc; padding-bottom: .2rem; }
.empty { font-style: italic; color: #444; }
figure { margin: .8rem 0; }
figcaption { font-size: .85rem; color: #444; }
svg.chart { display: block; width: 100%; max-width: 54rem; height: auto; }
@media print { body { margin: 0; max-width: none; font-size: 10pt; } figure { break-inside: avoid; } }
</style>
</head>
<body>
<h1>Validation statistics across nights</h1>
<p>{{ span }}; {% if failed %}{{ failed|length }} failed (shaded in every chart): {{ failed|join(", ") }}.
{%- else %}none failed.{% endif %} Dashed red lines are the thresholds as configured now (params.yaml,
<code>validate</code>); a chart's line breaks where a night has no value (the check was skipped).</p>
{% for column, c in charts %}
<section><h2 id="{{ column }}">{{ c.title }}</h2>
{% if c.svg %}
<figure>{{ c.svg }}<figcaption>{{ c.title }}</figcaption></figure>
{% else %}
<p class="empty">{{ c.empty }}</p>
{% endif %}
</section>
{% endfor %}
</body>
</html>
""")


@dataclass(frozen=True)
class HistoryChart:
    """One column of the validation history drawn across nights, with its thresholds (value, label)."""

    column: str
    title: str
    thresholds: tuple[tuple[float, str], ...] = ()


def _failed(row: Mapping[str, Any]) -> bool:
    return str(row.get("success", "")).strip().lower() not in ("true", "1")


def _history_chart(rows: Sequence[Mapping[str, Any]], spec: HistoryChart) -> Chart:
    points = tuple((float(i), finite(row.get(spec.column))) for i, row in enumerate(rows))
    every = max(1, math.ceil(len(rows) / _MAX_TICKS))
    ticks = [(float(i), str(row.get("logical_date", i))) for i, row in enumerate(rows) if i % every == 0]
    marks = [(float(i), f"failed night {row.get('logical_date', i)}") for i, row in enumerate(rows) if _failed(row)]
    svg = line_chart(spec.title, [Series(spec.column, _STYLE, points)], x_label="logical date", y_label=spec.column,
                     x_ticks=ticks, thresholds=spec.thresholds, marks=marks)
    return chart(spec.title, svg, f"No night recorded a value for {spec.column}.")


def render_validation_history(rows: Sequence[Mapping[str, Any]], charts: Sequence[HistoryChart]) -> str:
    """The history page: a summary of the nights (failed ones named), then one chart per statistic.

    `rows` are the history's rows (``logical_date``, ``success`` and the charted columns), sorted by date.
    """
    nights = f"{len(rows)} night" + ("" if len(rows) == 1 else "s")
    span = (f"{nights}, {rows[0].get('logical_date', 'n/a')} to {rows[-1].get('logical_date', 'n/a')}" if rows
            else "no night yet")
    return _PAGE.render(span=span, failed=[str(row.get("logical_date", "")) for row in rows if _failed(row)],
                        charts=[(spec.column, _history_chart(rows, spec)) for spec in charts]) + "\n"
