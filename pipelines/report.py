"""The night's self-contained HTML evaluation report (no network needed to view it)."""

from __future__ import annotations

import html
from typing import Any


def _metrics_table(models: dict[str, dict[str, float]], k: int) -> str:
    names = [f"ndcg@{k}", f"hr@{k}", f"mrr@{k}", f"coverage@{k}", "users"]
    head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
    rows = "".join(
        f"<tr><th>{html.escape(model)}</th>"
        + "".join(f"<td>{values.get(n, float('nan')):.4f}</td>" if n != "users" else f"<td>{values.get(n, 0)}</td>"
                  for n in names)
        + "</tr>"
        for model, values in models.items()
    )
    return f"<table><tr><th>model</th>{head}</tr>{rows}</table>"


def _checks_table(blessing: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr class='{'pass' if c['passed'] else 'fail'}'><td>{html.escape(c['metric'])}</td>"
        f"<td>{html.escape(c['rule'])}</td><td>{'pass' if c['passed'] else 'FAIL'}</td>"
        f"<td>{html.escape(c['reason'])}</td></tr>"
        for c in blessing["checks"]
    )
    return f"<table><tr><th>metric</th><th>rule</th><th>result</th><th>reason</th></tr>{rows}</table>"


def _curve_svg(curve: list[dict[str, float]], key: str, width: int = 480, height: int = 160) -> str:
    points = [(float(row["step"]), float(row[key])) for row in curve if row.get(key) not in (None, "")]
    if len(points) < 2:
        return f"<p>{html.escape(key)}: fewer than two points recorded.</p>"
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    span_x, span_y = (x1 - x0) or 1.0, (y1 - y0) or 1.0
    coords = " ".join(f"{10 + (x - x0) / span_x * (width - 20):.1f},{height - 10 - (y - y0) / span_y * (height - 20):.1f}"
                      for x, y in points)
    return (f"<figure><svg width='{width}' height='{height}' role='img' aria-label='{html.escape(key)}'>"
            f"<polyline fill='none' stroke='#2a6fdb' stroke-width='2' points='{coords}'/></svg>"
            f"<figcaption>{html.escape(key)} by step: {y0:.4f} to {y1:.4f}</figcaption></figure>")


def render_report(*, logical_date: str, data_interval: dict[str, str], models: dict[str, dict[str, float]],
                  blessing: dict[str, Any], curve: list[dict[str, float]], data_summary: dict[str, Any],
                  champion_version: int | None, k: int) -> str:
    summary = "".join(f"<tr><th>{html.escape(str(k_))}</th><td>{html.escape(str(v))}</td></tr>"
                      for k_, v in data_summary.items())
    decision_class = "pass" if blessing["blessed"] else "fail"
    champion = f"version {champion_version}" if champion_version else "none (first night)"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Nightly evaluation {html.escape(logical_date)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #222; }}
table {{ border-collapse: collapse; margin: .5rem 0 1.5rem; }}
th, td {{ border: 1px solid #ccc; padding: .3rem .6rem; text-align: right; }}
th:first-child, td:last-child {{ text-align: left; }}
.pass {{ background: #e8f6ec; }} .fail {{ background: #fdeaea; }}
.decision {{ font-size: 1.4rem; padding: .5rem 1rem; display: inline-block; }}
</style></head><body>
<h1>Nightly evaluation, {html.escape(logical_date)}</h1>
<p>Data interval {html.escape(data_interval.get('start', ''))} to {html.escape(data_interval.get('end', ''))}.
Champion: {html.escape(champion)}. Full-catalogue ranking, history excluded, ties pessimistic.</p>
<h2>Blessing</h2>
<p class="decision {decision_class}">{html.escape(blessing['decision'])}</p>
<p>{html.escape(blessing['reason'])}</p>
{_checks_table(blessing)}
<h2>Metrics on the test split</h2>
{_metrics_table(models, k)}
<h2>Training</h2>
{_curve_svg(curve, 'loss')}
{_curve_svg(curve, 'valid_ndcg')}
<h2>Data</h2>
<table>{summary}</table>
</body></html>
"""
