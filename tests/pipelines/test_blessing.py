"""The gate: no thresholds never blesses; every check has a reason; the first-night rule."""

import pytest

from pipelines.evaluation import BOOTSTRAP_RULE, bless

CANDIDATE = {"ndcg@10": 0.20, "hr@10": 0.30}
MOSTPOP = {"ndcg@10": 0.05, "hr@10": 0.10}


def test_no_thresholds_never_blesses():
    blessing = bless([], CANDIDATE, None, MOSTPOP)
    assert blessing["decision"] == "NOT_BLESSED"
    assert "no thresholds" in blessing["reason"]


def test_first_night_uses_the_bootstrap_rule():
    thresholds = [{"metric": "ndcg@10", "min_value": 0.1, "min_gain": 0.0, "min_gain_vs_mostpop": 0.0}]
    blessing = bless(thresholds, CANDIDATE, None, MOSTPOP)
    assert blessing["blessed"]
    skipped = [c for c in blessing["checks"] if c.get("skipped")]
    assert skipped and skipped[0]["reason"] == BOOTSTRAP_RULE


def test_loss_against_champion_is_refused_with_reason():
    thresholds = [{"metric": "ndcg@10", "min_gain": 0.0}]
    blessing = bless(thresholds, CANDIDATE, {"ndcg@10": 0.25}, MOSTPOP)
    assert not blessing["blessed"]
    check = blessing["checks"][0]
    assert check["delta"] == pytest.approx(-0.05)
    assert "0.2000 - champion 0.2500" in check["reason"]


def test_floor_and_mostpop_checks():
    thresholds = [{"metric": "hr@10", "min_value": 0.5, "min_gain_vs_mostpop": 0.1}]
    blessing = bless(thresholds, CANDIDATE, None, MOSTPOP)
    assert [c["passed"] for c in blessing["checks"]] == [False, True]
    assert "floor" in blessing["reason"]


def test_unknown_threshold_key_is_an_error():
    with pytest.raises(ValueError, match="unknown keys"):
        bless([{"metric": "ndcg@10", "max_loss": 0.1}], CANDIDATE, None, MOSTPOP)
