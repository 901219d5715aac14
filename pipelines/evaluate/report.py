"""The nightly evaluation report: one self-contained HTML page.

`render_report(evaluation)` turns the evaluate stage's result dict into a page rendered from the
Jinja2 templates in ``templates/`` (autoescaped) with matplotlib charts as inline SVG
(`pipelines.core.charts`): inline CSS and SVG only, no scripts, no links, nothing fetched. In order:

* ``#blessing``: the gate's decision in big green/red text, its reason, the bootstrap rule on a
  first night, and every check (metric or slice, rule, threshold, champion, candidate, MostPop,
  delta, paired 95% interval, pass/fail/skipped, reason);
* ``#metrics``: one row per model, the headline metrics at K with their 95% bootstrap intervals;
* ``#by-k``: NDCG@K (and HR@K where computed at several K) against K, one line per model;
* ``#deltas``: candidate minus champion, paired per user, with 95% interval whiskers and a zero line;
* ``#slices``: NDCG@K per user/item slice and model as grouped bars, with the users in each slice;
* ``#groups``: tonight's interest groups (sizes; per-group quality is in the slices), every group
  strategy on validation and test with the one chosen, each model's group metrics with intervals,
  and the cold-user backoff (cold users with and without it, MostPop beside; warm users);
* ``#history``: the published champion's NDCG@K and HR@K across past nights, versions labelled;
* ``#training``: training loss and validation NDCG by step;
* ``#data``: the data summary.

Python builds the views (tables of formatted strings, charts); the templates lay them out. Each
model keeps one colour and dash pattern (for black-and-white printing) across every chart. Missing
or NaN numbers print as "n/a" and are left out of charts; a section or chart without data says so.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jinja2

from pipelines.core.charts import Bar, Series, Style, bar_chart, chart, finite, line_chart

NA = "n/a"
SECTIONS: tuple[tuple[str, str], ...] = (
    ("blessing", "Blessing"), ("metrics", "Metrics"), ("by-k", "Metric by K"),
    ("deltas", "Candidate vs champion"), ("slices", "Slices"), ("groups", "Groups"),
    ("history", "Champion across nights"),
    ("training", "Training"), ("data", "Data"),
)
_GROUP_ORDER = ("member_mean_ndcg", "member_min_ndcg", "group_ndcg", "group_hr", "cold_ndcg", "cold_hr")
# Headline metric families in table order; any other metric@K follows them alphabetically.
_HEADLINE = ("ndcg", "hr", "mrr", "recall", "precision", "coverage", "novelty", "popularity_bias")

# Every template is HTML, so autoescape all of them; PackageLoader also finds them inside an installed wheel.
_TEMPLATES = jinja2.Environment(loader=jinja2.PackageLoader("pipelines.evaluate", "templates"), autoescape=True,
                               undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)

_CANDIDATE_STYLE = Style("#1f5fbf")
_ROLE_STYLES = {"champion": Style("#d95f02", (7, 4)), "MostPop": Style("#666666", (2, 3)),
                "EASE": Style("#1b9e77", (9, 3, 2, 3))}
_EXTRA_STYLES = (Style("#7b3294", (4, 2)), Style("#c51b7d", (1, 2)), Style("#8c6d00", (10, 2)),
                 Style("#00838f", (5, 2, 1, 2)), Style("#5d4037", (3, 3)), Style("#3949ab", (6, 2, 2, 2)))
_VERDICT_STYLES = {"candidate better": Style("#1a7f37"), "candidate worse": Style("#c62828")}
_NEUTRAL_STYLE = Style("#555555")
_SECOND_METRIC_STYLE = Style("#8c510a", (1.5, 2.5))  # HR beside the champion's NDCG line: unlike it


@dataclass(frozen=True)
class Table:
    head: Sequence[str]
    rows: Sequence[Sequence[str]]
    row_classes: Sequence[str] = ()  # one CSS class per row (pass/fail/skipped), or none at all
    text_columns: frozenset[int] = frozenset({0})  # left-aligned; the others are numbers


@dataclass(frozen=True)
class _Context:
    k: int
    ks: tuple[int, ...]
    candidate: str
    order: tuple[str, ...]
    styles: Mapping[str, Style]
    has_champion: bool
    champion_version: object


# --------------------------------------------------------------------------- input coercion and formatting

def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _records(value: object) -> list[Mapping[str, Any]]:
    return [row for row in value if isinstance(row, Mapping)] if isinstance(value, (list, tuple)) else []


def _pair(value: object) -> tuple[object, object] | None:
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return value[0], value[1]
    return None


def _fmt(value: object, digits: int = 4, signed: bool = False) -> str:
    number = finite(value)
    if number is None:
        return NA
    return f"{number:+.{digits}f}" if signed else f"{number:.{digits}f}"


def _fmt_interval(value: object, signed: bool = False) -> str:
    pair = _pair(value)
    return "" if pair is None else f"[{_fmt(pair[0], signed=signed)}, {_fmt(pair[1], signed=signed)}]"


def _fmt_with_interval(value: object, interval: object) -> str:
    text, bounds = _fmt(value), _fmt_interval(interval)
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


def _fmt_rule(value: object, relative: bool, signed: bool = True) -> str:
    """A threshold, delta or bound: percent of the champion's value for relative rules."""
    number = finite(value)
    if number is None:
        return ""
    return (f"{number:+.2%}" if signed else f"{number:.2%}") if relative else _fmt(number, signed=signed)


# --------------------------------------------------------------------------- models

def _model_order(names: Iterable[str], candidate: str) -> list[str]:
    """The candidate, champion, MostPop and EASE first (where present), then the rest as given."""
    unique = list(dict.fromkeys(names))
    first = [name for name in (candidate, "champion", "MostPop", "EASE") if name in unique]
    return first + [name for name in unique if name not in first]


def _model_styles(names: Sequence[str], candidate: str) -> dict[str, Style]:
    styles: dict[str, Style] = {}
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


def _context(evaluation: Mapping[str, Any]) -> _Context:
    models, slices = _mapping(evaluation.get("models")), _mapping(evaluation.get("slices"))
    candidate = str(evaluation.get("candidate_name") or "candidate")
    k = int(finite(evaluation.get("k")) or 10)
    given = evaluation.get("ks")
    ks = sorted({int(v) for v in (finite(x) for x in (given if isinstance(given, (list, tuple)) else ()))
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


# --------------------------------------------------------------------------- sections

def _check_row(check: Mapping[str, Any]) -> list[str]:
    relative = bool(check.get("relative"))
    scope = f"{check.get('metric', '')} in {check['slice']}" if check.get("slice") else str(check.get("metric", ""))
    rule = f"{check.get('rule', '')}{' (relative)' if relative else ''}"
    pair = _pair(check.get("interval"))
    interval = "" if pair is None else f"[{_fmt_rule(pair[0], relative)}, {_fmt_rule(pair[1], relative)}]"
    result = "skipped" if check.get("skipped") else "pass" if check.get("passed") else "FAIL"
    values = [_fmt(check.get(key)) if finite(check.get(key)) is not None else "" for key in
              ("champion", "candidate", "mostpop")]
    return [scope, rule, _fmt_rule(check.get("threshold"), relative, signed=False), *values,
            _fmt_rule(check.get("delta"), relative), interval, result, str(check.get("reason") or "")]


def _blessing_view(blessing: Mapping[str, Any]) -> dict[str, Any] | None:
    if not blessing:
        return None
    blessed = bool(blessing.get("blessed"))
    checks = _records(blessing.get("checks"))
    table = Table(["metric", "rule", "threshold", "champion", "candidate", "MostPop", "delta", "95% interval",
                   "result", "reason"], [_check_row(check) for check in checks],
                  ["skipped" if c.get("skipped") else "pass" if c.get("passed") else "fail" for c in checks],
                  frozenset({0, 1, 8, 9}))
    return {"blessed": blessed, "decision": str(blessing.get("decision") or ("BLESSED" if blessed else "NOT_BLESSED")),
            "reason": str(blessing.get("reason") or ""), "bootstrap_rule": str(blessing.get("bootstrap_rule") or ""),
            "checks": table if checks else None}


def _headline_metrics(models: Mapping[str, Any], k: int) -> list[str]:
    suffix = f"@{k}"
    present = {key for m in models.values() for key in _mapping(_mapping(m).get("metrics")) if key.endswith(suffix)}
    ordered = [f"{name}{suffix}" for name in _HEADLINE if f"{name}{suffix}" in present]
    return ordered + sorted(present - set(ordered))


def _metrics_view(models: Mapping[str, Any], ctx: _Context) -> Table | None:
    names = [name for name in ctx.order if name in models]
    if not names:
        return None
    columns = _headline_metrics(models, ctx.k)
    rows = []
    for name in names:
        entry = _mapping(models[name])
        metrics, intervals = _mapping(entry.get("metrics")), _mapping(entry.get("intervals"))
        rows.append([name, *(_fmt_with_interval(metrics.get(c), intervals.get(c)) for c in columns),
                     _fmt_plain(metrics.get("users"))])
    return Table(["model", *columns, "users"], rows)


def _by_k_series(models: Mapping[str, Any], ctx: _Context, family: str) -> list[Series]:
    series = []
    for name in (n for n in ctx.order if n in models):
        metrics = _mapping(_mapping(models[name]).get("metrics"))
        points = tuple((float(i), finite(metrics.get(f"{family}@{k}"))) for i, k in enumerate(ctx.ks))
        if any(v is not None for _, v in points):
            series.append(Series(name, ctx.styles[name], points))
    return series


def _by_k_view(models: Mapping[str, Any], ctx: _Context) -> dict[str, Any] | None:
    if not ctx.ks or not models:
        return None
    ticks = [(float(i), str(k)) for i, k in enumerate(ctx.ks)]
    charts, families = [], []
    for family, label in (("ndcg", "NDCG"), ("hr", "HR")):
        series = _by_k_series(models, ctx, family)
        if family == "hr" and len({i for s in series for i, v in s.points if v is not None}) < 2:
            continue  # HR at a single K is already in the metrics table
        families.append(family)
        title = f"{label}@K by cut-off K"
        charts.append(chart(title, line_chart(title, series, x_label="K", y_label=f"{label}@K", x_ticks=ticks,
                                              include_zero=True), f"No {label}@K values were recorded."))
    names = [n for n in ctx.order if n in models]
    rows = [[name, *(_fmt(_mapping(_mapping(models[name]).get("metrics")).get(f"{family}@{k}"))
                     for family in families for k in ctx.ks)] for name in names]
    return {"charts": charts, "table": Table(["model", *(f"{f}@{k}" for f in families for k in ctx.ks)], rows)}


def _verdict(low: float | None, high: float | None) -> str:
    if low is None or high is None:
        return "no interval"
    if low > 0:
        return "candidate better"
    if high < 0:
        return "candidate worse"
    return "no clear difference"


def _deltas_view(paired: Mapping[str, Any]) -> dict[str, Any] | None:
    if not paired:
        return None
    groups, rows = [], []
    for metric, stats in paired.items():
        delta, low, high = (finite(_mapping(stats).get(key)) for key in ("delta", "low", "high"))
        verdict = _verdict(low, high)
        text = _fmt(delta, signed=True)
        groups.append((str(metric), [Bar(str(metric), _VERDICT_STYLES.get(verdict, _NEUTRAL_STYLE), delta, low, high,
                                         text)]))
        rows.append([str(metric), text, _fmt_interval([low, high], signed=True), verdict])
    title = "Candidate minus champion"
    svg = bar_chart(title, groups, x_label="delta (candidate - champion)", dots=True, legend=False)
    return {"chart": chart(title, svg, "No paired delta has a value."),
            "table": Table(["metric", "delta", "95% interval", "verdict"], rows, text_columns=frozenset({0, 3}))}


def _slices_view(slices: Mapping[str, Any], ctx: _Context) -> dict[str, Any] | None:
    if not slices:
        return None
    present = {name for s in slices.values() for name in _mapping(_mapping(s).get("models"))}
    names, ndcg, hr = [n for n in ctx.order if n in present], f"ndcg@{ctx.k}", f"hr@{ctx.k}"
    groups, rows = [], []
    for label, entry in slices.items():
        per_model = _mapping(_mapping(entry).get("models"))
        values = {n: finite(_mapping(per_model[n]).get(ndcg)) for n in names if n in per_model}
        groups.append((str(label), [Bar(n, ctx.styles[n], v, text=_fmt(v)) for n, v in values.items()]))
        rows.append([str(label), _fmt_plain(_mapping(entry).get("users")),
                     *(_fmt(_mapping(per_model.get(n)).get(m)) for n in names for m in (ndcg, hr))])
    title = f"NDCG@{ctx.k} by slice"
    return {"chart": chart(title, bar_chart(title, groups, x_label=f"NDCG@{ctx.k}"),
                           f"No slice has an NDCG@{ctx.k} value."),
            "table": Table(["slice", "users", *(f"{n} {m}" for n in names for m in (ndcg, hr))], rows)}


def _groups_view(groups: Mapping[str, Any], ctx: _Context) -> dict[str, Any] | None:
    if not groups:
        return None
    found = _mapping(groups.get("interest_groups"))
    sizes = [int(size) for size in found.get("sizes", [])]
    summary = (f"{len(sizes)} interest groups found with the candidate (sizes {', '.join(map(str, sizes))}); "
               f"{_fmt_plain(found.get('merged_small_groups'))} smaller than {_fmt_plain(found.get('min_group_size'))} "
               f"users merged into their nearest group. Strategy serving: {groups.get('strategy')}, chosen on "
               f"{groups.get('strategy_chosen_on')} (validation). Evaluation groups drawn within interest groups: "
               f"{', '.join(f'{n} of size {size}' for size, n in _mapping(groups.get('sampled_groups')).items())}; "
               f"explicit groups with a test choice: {_fmt_plain(groups.get('explicit_groups'))}."
               f"{_item_model_note(_mapping(groups.get('item_model')), groups.get('explicit_strategy'))}")
    recorded = {m for row in _mapping(groups.get("strategies")).values() for m in _mapping(_mapping(row).get("test"))}
    strategy_metrics = sorted(recorded, key=_group_metric_order)
    strategies = Table(
        ["strategy", *(f"{phase} {m}" for phase in ("validation", "test") for m in strategy_metrics)],
        [[f"{name} (serving)" if name == groups.get("strategy") else str(name),
          *(_fmt(_mapping(_mapping(row).get(phase)).get(m))
            for phase in ("validation", "test") for m in strategy_metrics)]
         for name, row in _mapping(groups.get("strategies")).items()])
    per_model = _mapping(groups.get("models"))
    metric_names = sorted({m for values in per_model.values() for m in _mapping(values)}, key=_group_metric_order)
    names = [n for n in ctx.order if n in per_model]
    metrics = Table(["model", *metric_names],
                    [[n, *(_fmt_with_interval(_mapping(per_model[n]).get(m),
                                              _mapping(_mapping(groups.get("intervals")).get(n)).get(m))
                           for m in metric_names)] for n in names])
    return {"summary": summary, "strategies": strategies, "metrics": metrics,
            "backoff": _backoff_view(_mapping(groups.get("backoff")), ctx)}


def _item_model_note(item_model: Mapping[str, Any], explicit_strategy: Any) -> str:
    """What the explicit groups are served with, and group_model's item-item part (EASE)."""
    if explicit_strategy is None or not item_model:
        return ""
    note = f" Explicit groups are served with {explicit_strategy}"
    if item_model.get("weight"):
        return (f"{note}; group_model adds EASE over the whole history of each group (L2 weight "
                f"{_fmt_plain(item_model.get('lambda'))}, blend weight {_fmt_plain(item_model.get('weight'))}, "
                f"{item_model.get('reason')}).")
    return f"{note}; the EASE part of group_model is {item_model.get('reason')}."


def _group_metric_order(metric: str) -> tuple[int, str]:
    family = metric.split("@")[0]
    return (_GROUP_ORDER.index(family) if family in _GROUP_ORDER else len(_GROUP_ORDER), metric)


def _backoff_view(backoff: Mapping[str, Any], ctx: _Context) -> dict[str, Any] | None:
    if not backoff:
        return None
    ndcg, hr = f"ndcg@{ctx.k}", f"hr@{ctx.k}"
    rows, bars = [], []
    for slice_name in ("cold", "warm"):
        entry = _mapping(backoff.get(slice_name))
        for label in ("with backoff", "without", "MostPop"):
            if label in entry:
                values = _mapping(entry[label])
                rows.append([f"{slice_name} users ({_fmt_plain(entry.get('users'))}): {label}", _fmt(values.get(ndcg)),
                             _fmt(values.get(hr))])
                style = _CANDIDATE_STYLE if label == "with backoff" else _NEUTRAL_STYLE
                bars.append(Bar(f"{slice_name}: {label}", style,
                                finite(values.get(ndcg)), text=_fmt(values.get(ndcg))))
    title = f"NDCG@{ctx.k} of cold and warm users, with and without backoff"
    strength = backoff.get("strength")
    cap = backoff.get("max_interactions")
    blending = f"only users with at most {_fmt_plain(cap)} interactions blend; " if cap is not None else ""
    note = (f"Backoff strength c = {_fmt_plain(strength)} (own-score weight n / (n + c), chosen on validation over "
            f"all users; 0 means no backoff); {blending}cold users have at most "
            f"{_fmt_plain(backoff.get('cold_max_interactions'))} "
            "training interactions.")
    return {"note": note, "table": Table(["users", ndcg, hr], rows),
            "chart": chart(title, bar_chart(title, [(row[0], [bar]) for row, bar in zip(rows, bars)],
                                            x_label=f"NDCG@{ctx.k}", legend=False), "No backoff value was recorded.")}


def _version_labels(history: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
    """A point label per night: the version where the published version changed, else empty."""
    labels, previous = [], object()
    for h in history:
        version = h.get("version")
        labels.append(f"v{version}" if version is not None and version != previous else "")
        previous = version
    return tuple(labels)


def _history_view(history: list[Mapping[str, Any]], ctx: _Context) -> dict[str, Any]:
    ndcg, hr = f"ndcg@{ctx.k}", f"hr@{ctx.k}"
    rows = [[str(h.get("run_date", "")), _fmt_plain(h.get("version")), _fmt(h.get(ndcg)), _fmt(h.get(hr))]
            for h in history]
    view: dict[str, Any] = {"nights": len(history), "chart": None,
                            "table": Table(["run date", "version", ndcg, hr], rows) if rows else None}
    if len(history) < 2:
        return view
    series = [Series(f"NDCG@{ctx.k}", ctx.styles.get("champion", _ROLE_STYLES["champion"]),
                     tuple((float(i), finite(h.get(ndcg))) for i, h in enumerate(history)), _version_labels(history)),
              Series(f"HR@{ctx.k}", _SECOND_METRIC_STYLE,
                     tuple((float(i), finite(h.get(hr))) for i, h in enumerate(history)))]
    every = max(1, math.ceil(len(history) / 6))
    ticks = [(float(i), str(h.get("run_date", i))) for i, h in enumerate(history) if i % every == 0]
    title = "Published champion across nights"
    svg = line_chart(title, [s for s in series if any(v is not None for _, v in s.points)], x_label="run date",
                     y_label="metric", x_ticks=ticks)
    return {**view, "chart": chart(title, svg, "No champion metric was recorded in the history.")}


def _curve_series(curve: list[Mapping[str, Any]], key: str, style: Style) -> Series:
    """`key` by step (the row's index + 1 where a step is missing); rows without a value are left out."""
    points = []
    for index, row in enumerate(curve):
        step, value = finite(row.get("step")), finite(row.get(key))
        if value is not None:
            points.append((step if step is not None else float(index + 1), value))
    return Series(key, style, tuple(points))


def _training_view(curve: list[Mapping[str, Any]], ctx: _Context) -> dict[str, Any] | None:
    if not curve:
        return None
    style = ctx.styles.get(ctx.candidate, _CANDIDATE_STYLE)
    loss, valid = _curve_series(curve, "loss", style), _curve_series(curve, "valid_ndcg", style)
    summary = []
    if loss.points:
        step, value = loss.points[-1]
        summary.append(f"final loss {_fmt(value)} at step {_fmt_plain(step)}")
    if valid.points:
        step, value = max(valid.points, key=lambda p: p[1] or 0.0)
        summary.append(f"best valid_ndcg {_fmt(value)} at step {_fmt_plain(step)}")
    text = "; ".join(summary)
    return {"summary": f"{text[:1].upper()}{text[1:]}." if text else "",
            "loss": chart("Training loss by step", line_chart("Training loss by step", [loss], x_label="step",
                                                               y_label="loss"), "No loss values were recorded."),
            "valid": chart("Validation NDCG by step", line_chart("Validation NDCG by step", [valid], x_label="step",
                                                                  y_label="valid_ndcg"),
                           "No validation NDCG values were recorded.")}


def _recency_note(recency: Mapping[str, Any], k: int) -> str | None:
    """The recency prior the candidate and the champion were ranked with (pipelines.ranking.recency)."""
    if not recency:
        return None

    def described(record: Mapping[str, Any]) -> str:
        if not record.get("weight"):
            return "none"
        days = record.get("window_days")
        return f"weight {_fmt_plain(record.get('weight'))} over {f'{days} days' if days else 'all days'} before"

    chosen = _mapping(recency.get("chosen"))
    curve = _mapping(recency.get("validation"))
    note = f"Recency prior of the candidate: {described(chosen)}"
    if curve:
        best = max(curve.values(), default=None)
        note += f" (chosen on validation: NDCG@{k} {_fmt(best)}, {_fmt(curve.get('off'))} without)"
    else:
        note += f" ({recency.get('chosen_on', 'not chosen')})"
    return note + (". The champion is ranked with the same prior; each case counts the days before its target's "
                   "day; MostPop and EASE have none.")


def _data_view(summary: Mapping[str, Any]) -> Table | None:
    if not summary:
        return None
    return Table(["quantity", "value"], [[str(key), _fmt_plain(value)] for key, value in summary.items()])


# --------------------------------------------------------------------------- page

def render_report(evaluation: Mapping[str, Any]) -> str:
    """The whole report page for one night's evaluation dict (see the module docstring)."""
    ctx = _context(evaluation)
    models = _mapping(evaluation.get("models"))
    interval = _mapping(evaluation.get("data_interval"))
    return _TEMPLATES.get_template("report.html.j2").render(
        sections=SECTIONS, titles=dict(SECTIONS),
        logical_date=str(evaluation.get("logical_date", NA)),
        interval_start=str(interval.get("start", NA)), interval_end=str(interval.get("end", NA)),
        candidate=ctx.candidate, champion_version=ctx.champion_version, has_champion=ctx.has_champion,
        k=ctx.k, cutoffs=", ".join(str(k) for k in ctx.ks) or NA,
        blessing=_blessing_view(_mapping(evaluation.get("blessing"))),
        metrics=_metrics_view(models, ctx),
        recency=_recency_note(_mapping(evaluation.get("recency_prior")), ctx.k),
        by_k=_by_k_view(models, ctx),
        deltas=_deltas_view(_mapping(evaluation.get("paired"))),
        slices=_slices_view(_mapping(evaluation.get("slices")), ctx),
        groups=_groups_view(_mapping(evaluation.get("groups")), ctx),
        history=_history_view(_records(evaluation.get("history")), ctx),
        training=_training_view(_records(evaluation.get("curve")), ctx),
        data=_data_view(_mapping(evaluation.get("data_summary"))),
    ) + "\n"
