"""Drift distances on hand-computed cases: identical nights give 0, disjoint ones the maximum."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from pipelines.validate.drift import (
    ACTIVITY_BIN_EDGES,
    activity_divergence,
    activity_histogram,
    jensen_shannon,
    new_share,
    night_drift,
    popularity_divergence,
    total_variation,
)


def s(*values: str) -> pd.Series:
    return pd.Series(list(values), dtype=object)


def test_total_variation_by_hand() -> None:
    # shares {view .5, click .25, like .25} vs {view .25, click .75}: 0.5 * (.25 + .5 + .25)
    assert total_variation(s("view", "view", "click", "like"), s("view", "click", "click", "click")) == 0.5
    assert total_variation(s("view", "click"), s("click", "view", "view", "click")) == 0.0
    assert total_variation(s("view"), s("purchase")) == 1.0


def test_total_variation_of_an_empty_night_is_none() -> None:
    assert total_variation(s(), s("view")) is None
    assert total_variation(s("view"), pd.Series([None], dtype=object)) is None


def test_jensen_shannon_by_hand() -> None:
    assert jensen_shannon([1, 1], [2, 2]) == 0.0
    assert jensen_shannon([1, 0], [0, 1]) == 1.0
    # p = (1, 0), q = (.5, .5), m = (.75, .25): 0.5 * log2(4/3) + 0.5 * (0.5 * log2(2/3) + 0.5 * log2(2))
    expected = 0.5 * math.log2(4 / 3) + 0.5 * (0.5 * math.log2(2 / 3) + 0.5)
    assert jensen_shannon([1, 0], [1, 1]) == pytest.approx(expected)
    # One pseudo-count each: p = (2/3, 1/3), q = (1/3, 2/3), m = (.5, .5).
    smoothed = 2 / 3 * math.log2(4 / 3) + 1 / 3 * math.log2(2 / 3)
    assert jensen_shannon([1, 0], [0, 1], smoothing=1.0) == pytest.approx(smoothed)
    assert jensen_shannon([1, 0], [0, 1], smoothing=1.0) < 1.0  # smoothing shrinks towards 0


def test_jensen_shannon_empty_and_bad_input() -> None:
    assert jensen_shannon([0, 0], [1, 2]) is None
    assert jensen_shannon([], []) is None
    with pytest.raises(ValueError, match="differ in length"):
        jensen_shannon([1, 2], [1])
    with pytest.raises(ValueError, match=">= 0"):
        jensen_shannon([1, -1], [1, 1])
    with pytest.raises(ValueError, match=">= 0"):
        jensen_shannon([1, 1], [1, 1], smoothing=-0.5)


def test_popularity_divergence_aligns_items_by_id() -> None:
    assert popularity_divergence(s("i1", "i2", "i2"), s("i2", "i1", "i2"), smoothing=0.5) == 0.0
    assert popularity_divergence(s("i1", "i1"), s("i2"), smoothing=0.0) == 1.0
    # The same as the vectors (2, 0) and (1, 1) over (i1, i2).
    assert popularity_divergence(s("i1", "i1"), s("i1", "i2"), 0.0) == pytest.approx(jensen_shannon([1, 0], [1, 1]))
    assert popularity_divergence(s(), s("i1"), 0.5) is None


def test_activity_histogram_bins_by_powers_of_two() -> None:
    users = s("a", "b", "b", "c", "c", "c", *["d"] * 5, *["bot"] * 300)
    expected = np.zeros(len(ACTIVITY_BIN_EDGES))
    expected[[0, 1, 2, 3, 9]] = 1  # 1, 2, 3-4, 5-8, 257+
    np.testing.assert_array_equal(activity_histogram(users), expected)
    assert activity_histogram(s()).sum() == 0


def test_activity_divergence() -> None:
    night = s("a", "b", "b", "c")
    assert activity_divergence(night, s("x", "y", "y", "z")) == 0.0  # other users, same shape
    assert activity_divergence(s("a"), s(*["bot"] * 300)) == 1.0
    assert activity_divergence(s(), night) is None


def test_new_share() -> None:
    assert new_share(s("a", "b", "c", "c"), s("a", "z")) == pytest.approx(2 / 3)
    assert new_share(s("a", "a"), s("a")) == 0.0
    assert new_share(s("a"), s()) == 1.0
    assert new_share(s(), s("a")) is None


def test_night_drift_collects_every_distance() -> None:
    def frame(users: list[str], items: list[str], types: list[str]) -> pd.DataFrame:
        return pd.DataFrame({"user_id": users, "item_id": items, "event_type": types})

    previous = frame(["u1", "u2"], ["i1", "i2"], ["view", "view"])
    night = frame(["u1", "u3"], ["i1", "i3"], ["view", "click"])
    drift = night_drift(night, previous, previous, history_nights=1, smoothing=0.0)
    assert (drift.rows, drift.previous_rows, drift.history_nights) == (2, 2, 1)
    assert drift.event_mix_tv == 0.5
    assert drift.popularity_js == pytest.approx(0.5)  # half the mass on a shared item, half on disjoint ones
    assert drift.activity_js == 0.0
    assert (drift.new_user_share, drift.new_item_share) == (0.5, 0.5)
    assert drift.as_dict()["event_mix_tv"] == 0.5
