"""The promotion gate: BLESSED only when every configured check passes (TFX Evaluator style).

The checks, configured under ``evaluate.gate`` in params.yaml (every rule reads higher as better):

* ``floor``: the candidate's value of the metric is at least this absolute minimum;
* ``vs_mostpop``: candidate minus MostPop is at least this margin, a sanity check: a model that
  does not beat popularity is broken, whatever the champion scored;
* ``change``: candidate minus champion, judged on the paired 95% bootstrap interval over the same
  resampled users, never on point values. ``min_gain: g`` passes only if the interval's lower
  bound is >= g (the gain is real); ``max_loss: L`` only if the lower bound is >= -L
  (non-inferiority: a loss larger than L is ruled out);
* ``slices``: in every slice with at least ``min_users`` test users, candidate minus champion
  (point values) is at least ``-max_loss`` for each listed metric; smaller slices are reported,
  not judged, since a handful of users moves a slice's mean by more than any sensible margin.

``relative: true`` divides the delta and its bounds by the champion's value. With no metrics
configured the gate never blesses. The first night has no champion: ``BOOTSTRAP_RULE``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from pipelines.evaluate.analysis import PER_USER_METRICS
from pipelines.core.io import NonRetryableError
from pipelines.ranking.metrics import METRICS

BOOTSTRAP_RULE = (
    "bootstrap rule (first night, no champion): change and slice checks against the champion cannot be "
    "judged and are skipped; the candidate must pass every floor and every check against MostPop"
)
SLICE_METRICS = ("ndcg", "hr", "mrr")  # what pipelines.evaluate.analysis.analyse computes per slice
# What pipelines.evaluate.groups computes at the headline k: sampled groups' mean- and least-satisfied-
# member NDCG, explicit groups' own held-out choice (absent on a night without explicit groups:
# a floor on them then fails), cold users with the backoff.
GROUP_METRICS = ("member_mean_ndcg", "member_min_ndcg", "group_ndcg", "group_hr", "cold_ndcg", "cold_hr")
_GATE_KEYS = frozenset({"metrics", "slices"})
_METRIC_KEYS = frozenset({"metric", "floor", "vs_mostpop", "change"})
_CHANGE_KEYS = frozenset({"min_gain", "max_loss", "relative"})
_SLICE_KEYS = frozenset({"metrics", "max_loss", "relative", "min_users"})


class GateConfigError(NonRetryableError, ValueError):
    """``evaluate.gate`` is malformed; a retry cannot fix it (the stage exits non-retryable)."""


# --------------------------------------------------------------------------- configuration

@dataclass(frozen=True)
class Computed:
    """The metric names the evaluation computes, which the configuration is checked against."""

    values: frozenset[str]  # every model's point values, at every K
    paired: frozenset[str]  # candidate minus champion with a paired interval, at the headline K
    sliced: frozenset[str]  # per slice, at the headline K

    @classmethod
    def for_cutoffs(cls, ks: Sequence[int], k: int) -> Computed:
        return cls(frozenset(f"{name}@{kk}" for name in METRICS for kk in {*ks, k})
                   | frozenset(f"{name}@{k}" for name in GROUP_METRICS),
                   frozenset(f"{name}@{k}" for name in PER_USER_METRICS),
                   frozenset(f"{name}@{k}" for name in SLICE_METRICS))


@dataclass(frozen=True)
class Change:
    """A change rule against the champion: ``min_gain`` or ``max_loss`` (stored as given)."""

    kind: str
    threshold: float
    relative: bool

    @property
    def lowest_bound(self) -> float:
        """The smallest acceptable lower bound of the (candidate - champion) interval."""
        return self.threshold if self.kind == "min_gain" else -self.threshold


@dataclass(frozen=True)
class MetricRule:
    metric: str
    floor: float | None
    vs_mostpop: float | None
    change: Change | None


@dataclass(frozen=True)
class SliceRule:
    metrics: tuple[str, ...]
    max_loss: float
    relative: bool
    min_users: int


@dataclass(frozen=True)
class GateConfig:
    metrics: tuple[MetricRule, ...]
    slices: SliceRule | None


def _section(value: object, where: str, allowed: frozenset[str]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise GateConfigError(f"{where} must be a mapping, got {value!r}")
    unknown = sorted(str(key) for key in set(value) - allowed)
    if unknown:
        raise GateConfigError(f"{where}: unknown keys {unknown}; allowed: {sorted(allowed)}")
    return value


def _number(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise GateConfigError(f"{where} must be a finite number, got {value!r}")
    return float(value)


def _non_negative(value: object, where: str) -> float:
    number = _number(value, where)
    if number < 0:
        raise GateConfigError(f"{where} must be >= 0 (it is the largest loss allowed), got {number}")
    return number


def _flag(value: object, where: str) -> bool:
    if not isinstance(value, bool):
        raise GateConfigError(f"{where} must be true or false, got {value!r}")
    return value


def _metric_name(value: object, where: str, known: frozenset[str], purpose: str) -> str:
    if not isinstance(value, str) or value not in known:
        raise GateConfigError(f"{where}: {value!r} is not a metric the evaluation computes {purpose}; "
                              f"known: {sorted(known)}")
    return value


def _change(value: object, where: str) -> Change:
    spec = _section(value, where, _CHANGE_KEYS)
    kinds = [kind for kind in ("min_gain", "max_loss") if kind in spec]
    if len(kinds) != 1:
        raise GateConfigError(f"{where} needs exactly one of min_gain and max_loss, got {sorted(spec)}")
    kind = kinds[0]
    read = _non_negative if kind == "max_loss" else _number
    return Change(kind, read(spec[kind], f"{where}.{kind}"), _flag(spec.get("relative", False), f"{where}.relative"))


def _metric_rule(value: object, where: str, computed: Computed) -> MetricRule:
    spec = _section(value, where, _METRIC_KEYS)
    metric = _metric_name(spec.get("metric"), f"{where}.metric", computed.values, "for every model")
    where = f"{where} ({metric})"
    if not set(spec) & {"floor", "vs_mostpop", "change"}:
        raise GateConfigError(f"{where} has no rule: give floor, vs_mostpop and/or change")
    change = None
    if spec.get("change") is not None:
        _metric_name(metric, f"{where}.change", computed.paired, "with a paired interval")
        change = _change(spec["change"], f"{where}.change")
    floor = None if spec.get("floor") is None else _number(spec["floor"], f"{where}.floor")
    margin = None if spec.get("vs_mostpop") is None else _number(spec["vs_mostpop"], f"{where}.vs_mostpop")
    return MetricRule(metric, floor, margin, change)


def _slice_rule(value: object, computed: Computed) -> SliceRule:
    where = "evaluate.gate.slices"
    spec = _section(value, where, _SLICE_KEYS)
    for key in ("metrics", "max_loss", "min_users"):
        if key not in spec:
            raise GateConfigError(f"{where} needs {key}")
    names = spec["metrics"]
    if not isinstance(names, list) or not names:
        raise GateConfigError(f"{where}.metrics must be a non-empty list of metric names, got {names!r}")
    metrics = tuple(_metric_name(name, f"{where}.metrics[{i}]", computed.sliced, "per slice")
                    for i, name in enumerate(names))
    min_users = spec["min_users"]
    if isinstance(min_users, bool) or not isinstance(min_users, int) or min_users < 1:
        raise GateConfigError(f"{where}.min_users must be a whole number >= 1, got {min_users!r}")
    return SliceRule(metrics, _non_negative(spec["max_loss"], f"{where}.max_loss"),
                     _flag(spec.get("relative", False), f"{where}.relative"), min_users)


def parse_gate(config: object, computed: Computed) -> GateConfig:
    """``evaluate.gate`` checked against what the evaluation computes.

    Raises:
        GateConfigError (a ValueError): naming the offending entry, for unknown keys, both or
            neither of min_gain/max_loss, a negative max_loss, a metric that is not computed (or
            has no paired interval / slice values where the rule needs them), non-numeric values.
    """
    if config is None:
        return GateConfig((), None)
    gate = _section(config, "evaluate.gate", _GATE_KEYS)
    entries = gate.get("metrics") or []
    if not isinstance(entries, list):
        raise GateConfigError(f"evaluate.gate.metrics must be a list, got {entries!r}")
    rules = tuple(_metric_rule(entry, f"evaluate.gate.metrics[{i}]", computed) for i, entry in enumerate(entries))
    seen = [rule.metric for rule in rules]
    repeated = sorted({name for name in seen if seen.count(name) > 1})
    if repeated:
        raise GateConfigError(f"evaluate.gate.metrics: {repeated} listed more than once; one entry per metric")
    slices = None if gate.get("slices") is None else _slice_rule(gate["slices"], computed)
    return GateConfig(rules, slices)


# --------------------------------------------------------------------------- judging

@dataclass(frozen=True)
class Evidence:
    """Tonight's numbers the gate reads, taken from ``pipelines.evaluate.analysis.analyse``'s result."""

    candidate: Mapping[str, float]
    champion: Mapping[str, float] | None
    mostpop: Mapping[str, float]
    paired: Mapping[str, Mapping[str, float]]
    slices: Mapping[str, Mapping[str, Any]]

    @classmethod
    def from_analysis(cls, analysis: Mapping[str, Any], candidate: str = "candidate", champion: str = "champion",
                      mostpop: str = "MostPop") -> Evidence:
        models = analysis["models"]
        reference = models.get(champion)
        return cls(models[candidate]["metrics"], None if reference is None else reference["metrics"],
                   models[mostpop]["metrics"], analysis.get("paired") or {}, analysis.get("slices") or {})


@dataclass(frozen=True)
class Check:
    """One judged (or skipped) rule; ``delta``, threshold and interval are relative when ``relative``."""

    metric: str
    rule: str
    threshold: float
    passed: bool
    reason: str
    slice: str | None = None
    relative: bool = False
    champion: float | None = None
    candidate: float | None = None
    mostpop: float | None = None
    delta: float | None = None
    interval: tuple[float, float] | None = None
    skipped: bool = False


def _finite(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _fmt(value: float, relative: bool = False, signed: bool = True) -> str:
    if relative:
        return f"{value:+.2%}" if signed else f"{value:.2%}"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def _floor_check(metric: str, floor: float, ev: Evidence) -> Check:
    value = _finite(ev.candidate.get(metric))
    champion = None if ev.champion is None else _finite(ev.champion.get(metric))
    if value is None:
        return Check(metric, "floor", floor, False, f"{metric}: the candidate has no value", champion=champion)
    passed = value >= floor
    reason = f"{metric} {_fmt(value, signed=False)} {'>=' if passed else '<'} floor {_fmt(floor, signed=False)}"
    return Check(metric, "floor", floor, passed, reason, champion=champion, candidate=value)


def _mostpop_check(metric: str, margin: float, ev: Evidence) -> Check:
    value, mostpop = _finite(ev.candidate.get(metric)), _finite(ev.mostpop.get(metric))
    champion = None if ev.champion is None else _finite(ev.champion.get(metric))
    if value is None or mostpop is None:
        return Check(metric, "vs_mostpop", margin, False, f"{metric}: no value for the candidate or MostPop",
                     champion=champion, candidate=value, mostpop=mostpop)
    delta = value - mostpop
    passed = delta >= margin
    reason = (f"{metric} candidate {_fmt(value, signed=False)} - MostPop {_fmt(mostpop, signed=False)} = "
              f"{_fmt(delta)} {'>=' if passed else '<'} required {_fmt(margin)}")
    return Check(metric, "vs_mostpop", margin, passed, reason, champion=champion, candidate=value,
                 mostpop=mostpop, delta=delta)


def _scale(values: tuple[float, ...], champion: float, relative: bool) -> tuple[float, ...] | None:
    """Values as they are, or divided by the champion's value (None when that is zero)."""
    if not relative:
        return values
    return None if champion == 0 else tuple(v / champion for v in values)


def _verdict(change: Change, low: float, high: float) -> str:
    """What the interval says about the rule, in words."""
    bound = change.lowest_bound
    if change.kind == "min_gain":
        return "gain shown" if low >= bound else "gain below the threshold" if high < bound else "gain not shown"
    if low >= bound:
        return "non-inferior"
    return "worse by more than the margin" if high < bound else "a loss beyond the margin is not ruled out"


def _change_check(metric: str, change: Change, ev: Evidence, champion: Mapping[str, float]) -> Check:
    base = Check(metric, change.kind, change.threshold, False, "", relative=change.relative,
                 champion=_finite(champion.get(metric)), candidate=_finite(ev.candidate.get(metric)))
    paired = ev.paired.get(metric) or {}
    delta, low, high = (_finite(paired.get(key)) for key in ("delta", "low", "high"))
    if delta is None or low is None or high is None or base.champion is None:
        return replace(base, reason=f"{metric}: no paired interval against the champion")
    scaled = _scale((delta, low, high), base.champion, change.relative)
    if scaled is None:
        return replace(base, reason=f"{metric}: the champion scores 0, a relative change is undefined")
    delta, low, high = scaled
    passed, rel = low >= change.lowest_bound, change.relative
    reason = (f"{metric} vs champion {_fmt(delta, rel)}, 95% interval [{_fmt(low, rel)}, {_fmt(high, rel)}]: "
              f"lower bound {'>=' if passed else '<'} {_fmt(change.lowest_bound, rel)} "
              f"({_verdict(change, low, high)})")
    return replace(base, passed=passed, reason=reason, delta=delta, interval=(low, high))


def _slice_check(name: str, users: int, metric: str, rule: SliceRule, models: Mapping[str, Any]) -> Check:
    candidate = _finite((models.get("candidate") or {}).get(metric))
    champion = _finite((models.get("champion") or {}).get(metric))
    base = Check(metric, "slice_max_loss", rule.max_loss, False, "", slice=name, relative=rule.relative,
                 champion=champion, candidate=candidate)
    head = f"slice {name!r} ({users} users) {metric} vs champion"
    scaled = None if candidate is None or champion is None else _scale((candidate - champion,), champion,
                                                                        rule.relative)
    delta = None if scaled is None else scaled[0]
    if users < rule.min_users:  # too few users for a point difference to mean anything
        shown = "n/a" if delta is None else _fmt(delta, rule.relative)
        return replace(base, passed=True, skipped=True, delta=delta,
                       reason=f"{head} {shown}: reported, not judged ({users} < min_users {rule.min_users})")
    if delta is None:
        return replace(base, reason=f"{head}: no value for the candidate or the champion, or the champion "
                                    "scores 0 under a relative rule")
    passed = delta >= -rule.max_loss
    reason = f"{head} {_fmt(delta, rule.relative)} {'>=' if passed else '<'} {_fmt(-rule.max_loss, rule.relative)}"
    return replace(base, passed=passed, reason=reason, delta=delta)


def _slice_checks(rule: SliceRule, ev: Evidence) -> list[Check]:
    return [_slice_check(name, int(entry.get("users", 0)), metric, rule, entry.get("models") or {})
            for name, entry in ev.slices.items() for metric in rule.metrics]


def _bootstrap_skips(config: GateConfig) -> list[Check]:
    """First night: what would have been judged against the champion, recorded as skipped."""
    skips = [Check(r.metric, r.change.kind, r.change.threshold, True, BOOTSTRAP_RULE, relative=r.change.relative,
                   skipped=True) for r in config.metrics if r.change is not None]
    if config.slices is not None:
        skips += [Check(metric, "slice_max_loss", config.slices.max_loss, True, BOOTSTRAP_RULE,
                        relative=config.slices.relative, skipped=True) for metric in config.slices.metrics]
    return skips


def run_checks(config: GateConfig, ev: Evidence) -> list[Check]:
    """Every check in configuration order: per metric floor, MostPop, change; then the slices."""
    checks: list[Check] = []
    for rule in config.metrics:
        if rule.floor is not None:
            checks.append(_floor_check(rule.metric, rule.floor, ev))
        if rule.vs_mostpop is not None:
            checks.append(_mostpop_check(rule.metric, rule.vs_mostpop, ev))
        if rule.change is not None and ev.champion is not None:
            checks.append(_change_check(rule.metric, rule.change, ev, ev.champion))
    if ev.champion is None:
        return checks + _bootstrap_skips(config)
    if config.slices is not None:
        checks += _slice_checks(config.slices, ev)
    return checks


def decide(checks: Sequence[Check], first_night: bool) -> dict[str, Any]:
    """The blessing: BLESSED only when every judged check passed; the reason lists each failure."""
    failed = [check.reason for check in checks if not check.passed]
    judged = sum(not check.skipped for check in checks)
    blessed = not failed and judged > 0
    if failed:
        reason = f"{len(failed)} of {judged} checks failed: " + "; ".join(failed)
    elif judged:
        reason = f"all {judged} judged checks passed ({len(checks) - judged} skipped)"
    else:
        reason = "no check could be judged: the gate never blesses without one"
    return {"blessed": blessed, "decision": "BLESSED" if blessed else "NOT_BLESSED", "reason": reason,
            "bootstrap_rule": BOOTSTRAP_RULE if first_night else None,
            "checks": [asdict(check) for check in checks]}


def bless(config: object, analysis: Mapping[str, Any], *, k: int, ks: Sequence[int]) -> dict[str, Any]:
    """Judges tonight's candidate with ``evaluate.gate``; never blesses without configured metrics.

    Args:
        config: ``params["evaluate"]["gate"]`` (None when absent).
        analysis: ``pipelines.evaluate.analysis.analyse``'s result; "champion" and "paired" are absent on
            the first night.
        k: the headline cut-off (paired intervals and slices are computed at it).
        ks: every cut-off the evaluation computes.

    Raises:
        GateConfigError (a ValueError): the configuration is malformed; see ``parse_gate``.
    """
    gate = parse_gate(config, Computed.for_cutoffs(ks, k))
    if not gate.metrics:
        return {"blessed": False, "decision": "NOT_BLESSED", "checks": [], "bootstrap_rule": None,
                "reason": "no metrics configured in evaluate.gate.metrics: the gate never blesses without them"}
    evidence = Evidence.from_analysis(analysis)
    return decide(run_checks(gate, evidence), first_night=evidence.champion is None)
