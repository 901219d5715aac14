"""The promotion gate: paired-interval change rules, slice guardrails, MostPop sanity, bootstrap rule."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import yaml

from pipelines.evaluate.analysis import analyse
from pipelines.ranking.scoring import ModelRanks
from pipelines.evaluate.gate import BOOTSTRAP_RULE, GROUP_METRICS, Computed, GateConfigError, bless, parse_gate
from pipelines.core.io import NonRetryableError
from tests.conftest import PROJECT_ROOT

K, KS = 10, [1, 5, 10, 20]
CHECK_FIELDS = {"metric", "rule", "threshold", "passed", "reason", "slice", "relative", "champion", "candidate",
                "mostpop", "delta", "interval", "skipped"}


def analysis(*, champion: bool = True, candidate_ndcg: float = 0.20, champion_ndcg: float = 0.19,
             mostpop_ndcg: float = 0.05, paired: dict[str, dict[str, float]] | None = None,
             slices: dict[str, Any] | None = None) -> dict[str, Any]:
    """A minimal ``analyse`` result: hr@10 is twice ndcg@10 for every model."""
    def model(ndcg: float) -> dict[str, Any]:
        return {"metrics": {"ndcg@10": ndcg, "hr@10": 2 * ndcg, "coverage@10": 0.3}, "intervals": {}}

    models = {"candidate": model(candidate_ndcg), "MostPop": model(mostpop_ndcg)}
    if champion:
        models["champion"] = model(champion_ndcg)
    default_paired = {"ndcg@10": {"delta": candidate_ndcg - champion_ndcg, "low": 0.002, "high": 0.018}}
    return {"models": models, "paired": (paired or default_paired) if champion else {}, "slices": slices or {}}


def one_slice(users: int, candidate: float, champion: float) -> dict[str, Any]:
    return {"users": users, "models": {"candidate": {"ndcg@10": candidate}, "champion": {"ndcg@10": champion},
                                       "MostPop": {"ndcg@10": 0.01}}}


def gate(*metrics: dict[str, Any], slices: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"metrics": list(metrics), **({"slices": slices} if slices else {})}


def run(config: object, evaluation: dict[str, Any]) -> dict[str, Any]:
    return bless(config, evaluation, k=K, ks=KS)


def only(blessing: dict[str, Any], rule: str) -> dict[str, Any]:
    [check] = [c for c in blessing["checks"] if c["rule"] == rule]
    return check


# --------------------------------------------------------------------------- no metrics

@pytest.mark.parametrize("config", [None, {}, {"metrics": []},
                                    {"slices": {"metrics": ["ndcg@10"], "max_loss": 0.05, "min_users": 30}}])
def test_no_metrics_never_blesses(config):
    blessing = run(config, analysis(candidate_ndcg=0.9))
    assert (blessing["blessed"], blessing["decision"], blessing["checks"]) == (False, "NOT_BLESSED", [])
    assert "never blesses" in blessing["reason"]


# --------------------------------------------------------------------------- floors and MostPop

def test_floor_passes_and_fails_on_the_candidate_value():
    blessing = run(gate({"metric": "ndcg@10", "floor": 0.25}), analysis(candidate_ndcg=0.20))
    check = only(blessing, "floor")
    assert not blessing["blessed"] and not check["passed"]
    assert (check["candidate"], check["champion"], check["threshold"]) == (0.20, 0.19, 0.25)
    assert check["reason"] == "ndcg@10 0.2000 < floor 0.2500"
    assert run(gate({"metric": "ndcg@10", "floor": 0.2}), analysis(candidate_ndcg=0.20))["blessed"]


def test_mostpop_sanity_check_refuses_a_model_that_does_not_beat_popularity():
    blessing = run(gate({"metric": "hr@10", "vs_mostpop": 0.0}), analysis(candidate_ndcg=0.04, mostpop_ndcg=0.05))
    check = only(blessing, "vs_mostpop")
    assert not blessing["blessed"] and check["mostpop"] == pytest.approx(0.10)
    assert check["delta"] == pytest.approx(-0.02)
    assert "- MostPop 0.1000 = -0.0200 < required +0.0000" in check["reason"]


def test_mostpop_margin_passes_when_beaten_by_enough():
    blessing = run(gate({"metric": "ndcg@10", "vs_mostpop": 0.1}), analysis(candidate_ndcg=0.20, mostpop_ndcg=0.05))
    assert blessing["blessed"] and only(blessing, "vs_mostpop")["delta"] == pytest.approx(0.15)


# --------------------------------------------------------------------------- change rules on the paired interval

def test_point_gain_whose_interval_crosses_the_threshold_fails_min_gain():
    paired = {"ndcg@10": {"delta": 0.01, "low": -0.002, "high": 0.022}}
    blessing = run(gate({"metric": "ndcg@10", "change": {"min_gain": 0.0}}), analysis(paired=paired))
    check = only(blessing, "min_gain")
    assert not blessing["blessed"] and not check["passed"]
    assert check["delta"] == pytest.approx(0.01) and check["interval"] == (-0.002, 0.022)
    assert "gain not shown" in check["reason"] and "[-0.0020, +0.0220]" in check["reason"]


def test_min_gain_passes_when_the_lower_bound_clears_it():
    paired = {"ndcg@10": {"delta": 0.01, "low": 0.004, "high": 0.016}}
    assert run(gate({"metric": "ndcg@10", "change": {"min_gain": 0.004}}), analysis(paired=paired))["blessed"]
    assert not run(gate({"metric": "ndcg@10", "change": {"min_gain": 0.005}}), analysis(paired=paired))["blessed"]


def test_max_loss_is_non_inferiority_on_the_lower_bound():
    rule = gate({"metric": "ndcg@10", "change": {"max_loss": 0.005}})
    small_loss = {"ndcg@10": {"delta": -0.002, "low": -0.005, "high": 0.001}}  # bound exactly at -L passes
    assert run(rule, analysis(paired=small_loss))["blessed"]
    uncertain_gain = {"ndcg@10": {"delta": 0.003, "low": -0.008, "high": 0.014}}  # point gain, loss not ruled out
    blessing = run(rule, analysis(paired=uncertain_gain))
    check = only(blessing, "max_loss")
    assert not blessing["blessed"] and check["threshold"] == 0.005
    assert "lower bound < -0.0050" in check["reason"] and "not ruled out" in check["reason"]
    clear_loss = {"ndcg@10": {"delta": -0.03, "low": -0.04, "high": -0.02}}
    assert "worse by more than the margin" in run(rule, analysis(paired=clear_loss))["reason"]


def test_min_gain_verdict_tells_an_unshown_gain_from_one_below_the_threshold():
    rule = gate({"metric": "ndcg@10", "change": {"min_gain": 0.01}})
    below = {"ndcg@10": {"delta": 0.004, "low": 0.001, "high": 0.008}}
    assert "gain below the threshold" in run(rule, analysis(paired=below))["reason"]
    shown = {"ndcg@10": {"delta": 0.02, "low": 0.011, "high": 0.03}}
    assert "(gain shown)" in only(run(rule, analysis(paired=shown)), "min_gain")["reason"]


def test_relative_change_divides_delta_and_bounds_by_the_champion():
    paired = {"ndcg@10": {"delta": 0.01, "low": -0.002, "high": 0.022}}  # champion 0.20: -1% .. +11%
    evaluation = analysis(candidate_ndcg=0.21, champion_ndcg=0.20, paired=paired)
    passed = run(gate({"metric": "ndcg@10", "change": {"max_loss": 0.02, "relative": True}}), evaluation)
    check = only(passed, "max_loss")
    assert passed["blessed"] and check["relative"]
    assert check["delta"] == pytest.approx(0.05)
    assert check["interval"] == pytest.approx((-0.01, 0.11))
    assert "-1.00%" in check["reason"]
    refused = run(gate({"metric": "ndcg@10", "change": {"max_loss": 0.005, "relative": True}}), evaluation)
    assert not refused["blessed"]  # the same numbers fail an absolute-looking margin once it is relative


def test_relative_change_against_a_zero_champion_fails_closed():
    paired = {"ndcg@10": {"delta": 0.1, "low": 0.05, "high": 0.15}}
    blessing = run(gate({"metric": "ndcg@10", "change": {"min_gain": 0.0, "relative": True}}),
                   analysis(candidate_ndcg=0.1, champion_ndcg=0.0, paired=paired))
    assert not blessing["blessed"] and "scores 0" in blessing["reason"]


def test_change_without_a_paired_interval_fails():
    blessing = run(gate({"metric": "hr@10", "change": {"max_loss": 0.01}}), analysis())  # paired has ndcg only
    assert not blessing["blessed"] and "hr@10: no paired interval" in blessing["reason"]


# --------------------------------------------------------------------------- slice guardrails

SLICE_RULE = {"metrics": ["ndcg@10"], "max_loss": 0.05, "min_users": 30}


def test_a_slice_falling_beyond_max_loss_refuses_the_candidate():
    slices = {"users: cold": one_slice(100, 0.10, 0.17), "users: heavy": one_slice(80, 0.30, 0.28)}
    blessing = run(gate({"metric": "ndcg@10", "floor": 0.01}, slices=SLICE_RULE), analysis(slices=slices))
    cold, heavy = [c for c in blessing["checks"] if c["rule"] == "slice_max_loss"]
    assert not blessing["blessed"]
    assert (cold["slice"], cold["passed"], cold["delta"]) == ("users: cold", False, pytest.approx(-0.07))
    assert (cold["champion"], cold["candidate"]) == (0.17, 0.10)
    assert heavy["passed"] and not heavy["skipped"]
    assert "'users: cold' (100 users) ndcg@10 vs champion -0.0700 < -0.0500" in blessing["reason"]


def test_small_slices_are_reported_not_judged():
    slices = {"group: tiny": one_slice(29, 0.0, 0.5), "group: just enough": one_slice(30, 0.20, 0.22)}
    blessing = run(gate({"metric": "ndcg@10", "floor": 0.01}, slices=SLICE_RULE), analysis(slices=slices))
    tiny, enough = [c for c in blessing["checks"] if c["rule"] == "slice_max_loss"]
    assert blessing["blessed"]
    assert tiny["skipped"] and tiny["passed"] and tiny["delta"] == pytest.approx(-0.5)
    assert "reported, not judged (29 < min_users 30)" in tiny["reason"]
    assert not enough["skipped"] and enough["passed"]


def test_relative_slice_guardrail():
    slices = {"items: tail target": one_slice(200, 0.09, 0.10)}  # -10% of the champion, -0.01 absolute
    relative = {**SLICE_RULE, "max_loss": 0.05, "relative": True}
    assert not run(gate({"metric": "ndcg@10", "floor": 0.0}, slices=relative), analysis(slices=slices))["blessed"]
    assert run(gate({"metric": "ndcg@10", "floor": 0.0}, slices=SLICE_RULE), analysis(slices=slices))["blessed"]


# --------------------------------------------------------------------------- first night

def test_bootstrap_rule_skips_champion_checks_and_judges_floors_and_mostpop():
    config = gate({"metric": "ndcg@10", "floor": 0.01, "vs_mostpop": 0.0, "change": {"max_loss": 0.005}},
                  slices=SLICE_RULE)
    evaluation = analysis(champion=False, slices={"users: cold": one_slice(100, 0.1, 0.2)})
    blessing = run(config, evaluation)
    skipped = [c for c in blessing["checks"] if c["skipped"]]
    assert blessing["blessed"] and blessing["bootstrap_rule"] == BOOTSTRAP_RULE
    assert [(c["rule"], c["reason"], c["passed"]) for c in skipped] == [("max_loss", BOOTSTRAP_RULE, True),
                                                                       ("slice_max_loss", BOOTSTRAP_RULE, True)]
    assert {c["rule"] for c in blessing["checks"] if not c["skipped"]} == {"floor", "vs_mostpop"}
    assert "(2 skipped)" in blessing["reason"]


def test_bootstrap_rule_still_needs_the_floors_and_mostpop():
    config = gate({"metric": "ndcg@10", "floor": 0.01, "vs_mostpop": 0.0, "change": {"max_loss": 0.005}})
    blessing = run(config, analysis(champion=False, candidate_ndcg=0.04, mostpop_ndcg=0.05))
    assert not blessing["blessed"] and "MostPop" in blessing["reason"]


def test_bootstrap_night_with_only_change_rules_has_nothing_to_judge():
    blessing = run(gate({"metric": "ndcg@10", "change": {"min_gain": 0.0}}), analysis(champion=False))
    assert not blessing["blessed"] and "no check could be judged" in blessing["reason"]


def test_no_bootstrap_rule_with_a_champion():
    assert run(gate({"metric": "ndcg@10", "floor": 0.0}), analysis())["bootstrap_rule"] is None


# --------------------------------------------------------------------------- the record

def test_reason_lists_every_failed_check_and_records_are_complete():
    paired = {"ndcg@10": {"delta": -0.03, "low": -0.05, "high": -0.01}}
    config = gate({"metric": "ndcg@10", "floor": 0.5, "vs_mostpop": 0.0, "change": {"max_loss": 0.005}},
                  {"metric": "hr@10", "floor": 0.01})
    blessing = run(config, analysis(paired=paired))
    assert blessing["decision"] == "NOT_BLESSED"
    assert blessing["reason"].startswith("2 of 4 checks failed: ")
    for check in blessing["checks"]:
        assert set(check) == CHECK_FIELDS
        assert (check["reason"] in blessing["reason"]) == (not check["passed"])
    json.dumps(blessing, allow_nan=False)  # the blessing is written as JSON


def test_every_check_passing_blesses():
    config = gate({"metric": "ndcg@10", "floor": 0.01, "vs_mostpop": 0.0, "change": {"max_loss": 0.005}},
                  slices=SLICE_RULE)
    blessing = run(config, analysis(slices={"users: heavy": one_slice(60, 0.3, 0.3)}))
    assert (blessing["blessed"], blessing["decision"]) == (True, "BLESSED")
    assert blessing["reason"] == "all 4 judged checks passed (0 skipped)"


# --------------------------------------------------------------------------- configuration errors

def entry(**extra: Any) -> dict[str, Any]:
    return {"metric": "ndcg@10", "floor": 0.01, **extra}


@pytest.mark.parametrize("config, message", [
    ([entry()], r"evaluate.gate must be a mapping"),
    ({"metrics": [entry()], "thresholds": []}, r"evaluate.gate: unknown keys \['thresholds'\]"),
    ({"metrics": entry()}, r"evaluate.gate.metrics must be a list"),
    (gate(entry(min_gain=0.0)), r"evaluate.gate.metrics\[0\]: unknown keys \['min_gain'\]"),
    (gate(entry(), entry(metric="hr@10", change={"min_gain": 0.0, "max_loss": 0.01})),
     r"evaluate.gate.metrics\[1\] \(hr@10\).change needs exactly one of min_gain and max_loss"),
    (gate(entry(change={"relative": True})), r"metrics\[0\] \(ndcg@10\).change needs exactly one"),
    (gate(entry(change={"max_loss": -0.01})), r"metrics\[0\] \(ndcg@10\).change.max_loss must be >= 0"),
    (gate(entry(change={"max_loss": 0.01, "margin": 1})), r"\(ndcg@10\).change: unknown keys \['margin'\]"),
    (gate(entry(metric="ndcg@11")), r"metrics\[0\].metric: 'ndcg@11' is not a metric the evaluation computes"),
    (gate(entry(metric="coverage@10", change={"max_loss": 0.01})),
     r"\(coverage@10\).change: 'coverage@10' is not a metric the evaluation computes with a paired interval"),
    (gate(entry(floor="0.01")), r"metrics\[0\] \(ndcg@10\).floor must be a finite number, got '0.01'"),
    (gate(entry(vs_mostpop=True)), r"\(ndcg@10\).vs_mostpop must be a finite number, got True"),
    (gate(entry(change={"min_gain": None})), r"\(ndcg@10\).change.min_gain must be a finite number"),
    (gate(entry(change={"max_loss": 0.01, "relative": "yes"})), r"\(ndcg@10\).change.relative must be true"),
    (gate({"metric": "ndcg@10"}), r"metrics\[0\] \(ndcg@10\) has no rule"),
    (gate(entry(), entry()), r"\['ndcg@10'\] listed more than once"),
    (gate(entry(), slices={**SLICE_RULE, "metrics": ["recall@10"]}),
     r"slices.metrics\[0\]: 'recall@10' is not a metric the evaluation computes per slice"),
    (gate(entry(), slices={**SLICE_RULE, "max_loss": -0.1}), r"evaluate.gate.slices.max_loss must be >= 0"),
    (gate(entry(), slices={**SLICE_RULE, "max_loss": "0.05"}), r"slices.max_loss must be a finite number"),
    (gate(entry(), slices={**SLICE_RULE, "min_users": 0}), r"slices.min_users must be a whole number >= 1"),
    (gate(entry(), slices={**SLICE_RULE, "min_users": 30.5}), r"slices.min_users must be a whole number"),
    (gate(entry(), slices={"metrics": ["ndcg@10"], "min_users": 30}), r"evaluate.gate.slices needs max_loss"),
    (gate(entry(), slices={**SLICE_RULE, "users": 30}), r"evaluate.gate.slices: unknown keys \['users'\]"),
    (gate(entry(), slices={**SLICE_RULE, "metrics": []}), r"slices.metrics must be a non-empty list"),
])
def test_config_errors_name_the_offending_entry(config, message):
    with pytest.raises(ValueError, match=message):
        run(config, analysis())


def test_config_errors_are_raised_on_the_first_night_too_and_are_not_retryable():
    with pytest.raises(GateConfigError) as raised:
        run(gate(entry(change={"max_loss": -1.0})), analysis(champion=False))
    assert isinstance(raised.value, ValueError) and isinstance(raised.value, NonRetryableError)


def test_a_metric_computed_only_at_another_cutoff_is_accepted_for_floors():
    assert run(gate(entry(metric="ndcg@20")), {**analysis(), "models": {
        name: {"metrics": {"ndcg@20": 0.3}} for name in ("candidate", "champion", "MostPop")}})["blessed"]


# --------------------------------------------------------------------------- agreement with the rest

def test_computed_names_match_what_analyse_produces():
    rng = np.random.default_rng(0)
    n_users, n_items = 40, 30
    ranks = {name: ModelRanks(rng.integers(0, n_items, n_users), rng.integers(0, n_items, (n_users, 20)))
             for name in ("candidate", "champion", "MostPop")}
    result = analyse(ranks, ks=KS, k=K, n_items=n_items, popularity=rng.integers(1, 50, n_items).astype(float),
                     n_train_users=n_users, slices={"all": np.ones(n_users, dtype=bool)}, n_resamples=20)
    computed = Computed.for_cutoffs(KS, K)
    group_metrics = {f"{name}@{K}" for name in GROUP_METRICS}  # pipelines.evaluate.groups' (tested there)
    assert computed.values == set(result["models"]["candidate"]["metrics"]) - {"users"} | group_metrics
    assert computed.paired == set(result["paired"])
    assert computed.sliced == set(result["slices"]["all"]["models"]["candidate"]) - {"users"}


def test_the_shipped_gate_is_valid_and_can_bless():
    settings = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())["evaluate"]
    assert "thresholds" not in settings
    config = parse_gate(settings["gate"], Computed.for_cutoffs(settings["ks"], settings["k"]))
    assert config.metrics and all(rule.floor is not None or rule.vs_mostpop is not None for rule in config.metrics)
