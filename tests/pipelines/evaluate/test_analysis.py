"""Per-user outcomes, bootstrap intervals, the paired comparison and slices."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.evaluate.analysis import (PER_USER_METRICS, analyse, bootstrap_interval, paired_difference,
                                         per_user_values, ratio_interval, resample_indices, user_slices)
from pipelines.ranking.metrics import compute_metrics
from pipelines.ranking.scoring import ModelRanks


def test_per_user_values_average_to_every_metric_of_the_library():
    rng = np.random.default_rng(5)
    outcome = ModelRanks(rng.integers(0, 30, 200), rng.integers(0, 40, (200, 20)))
    popularity = rng.integers(0, 60, 40)
    library = compute_metrics(outcome.rankings(40, popularity, 50), [5, 10])
    for metric in PER_USER_METRICS:
        for k in (5, 10):
            values = per_user_values(outcome, metric, k, popularity, 50)
            assert values.shape == (200,) and values.mean() == pytest.approx(library[f"{metric}@{k}"])
    assert per_user_values(ModelRanks(np.array([0, 3, 12]), np.zeros((3, 10), int)), "mrr", 10).tolist() == \
        pytest.approx([1, 0.25, 0])
    with pytest.raises(ValueError, match="coverage"):
        per_user_values(outcome, "coverage", 10)
    with pytest.raises(ValueError, match="popularity"):
        per_user_values(outcome, "novelty", 10)


def test_bootstrap_interval_covers_the_mean_and_shrinks_with_more_users():
    rng = np.random.default_rng(0)
    small, large = rng.random(100), rng.random(10_000)
    low_s, high_s = bootstrap_interval(small, resample_indices(100, 500, 1))
    low_l, high_l = bootstrap_interval(large, resample_indices(10_000, 500, 1))
    assert low_s < small.mean() < high_s and low_l < large.mean() < high_l
    assert (high_l - low_l) < (high_s - low_s) / 5  # about sqrt(100) times narrower
    # The standard error of a mean of uniforms is 0.2887 / sqrt(n): the interval is about +-1.96 SE.
    assert (high_l - low_l) == pytest.approx(2 * 1.96 * 0.2887 / 100, rel=0.15)
    assert all(np.isnan(bootstrap_interval(np.empty(0), resample_indices(0, 10, 1))))


def test_paired_difference_sees_a_small_consistent_gain_that_unpaired_intervals_miss():
    rng = np.random.default_rng(0)
    difficulty = rng.random(2000)  # users differ a lot; the candidate is better by 0.01 on each
    champion, candidate = difficulty, difficulty + 0.01
    indices = resample_indices(2000, 500, 0)
    paired = paired_difference(candidate, champion, indices)
    assert paired["delta"] == pytest.approx(0.01)
    assert 0 < paired["low"] <= paired["delta"] <= paired["high"]
    low_cand, _ = bootstrap_interval(candidate, indices)
    _, high_champ = bootstrap_interval(champion, indices)
    assert low_cand < high_champ  # the separate intervals overlap: only pairing shows the gain


def test_ratio_interval_is_paired_narrows_with_users_and_drops_resamples_without_a_ratio():
    rng = np.random.default_rng(1)
    cold = rng.random(400)
    warm = 0.9 * cold  # every user loses 10%: the paired ratio is exactly 0.9 in every resample
    low, high = ratio_interval(warm, cold, resample_indices(400, 300, 0))
    assert low == pytest.approx(0.9) and high == pytest.approx(0.9)
    noisy = np.clip(cold + rng.normal(0, 0.3, 400), 0, None)
    few = ratio_interval(noisy[:40], cold[:40], resample_indices(40, 500, 0))
    many = ratio_interval(noisy, cold, resample_indices(400, 500, 0))
    assert few[0] < many[0] <= many[1] < few[1]
    # one user with a value: resamples of only the zero user have no ratio and are left out
    assert ratio_interval(np.array([1.0, 0.0]), np.array([2.0, 0.0]), resample_indices(2, 200, 0)) == (0.5, 0.5)
    assert np.isnan(ratio_interval(np.array([1.0]), np.array([0.0]), resample_indices(1, 10, 0))[0])


def test_user_slices_split_by_activity_target_popularity_and_group():
    train_lengths = np.array([1, 5, 6, 20, 50, 100, 7, 8, 9, 10, 11, 12])
    popularity = np.array([100, 50, 10, 5, 1, 0, 0, 0, 0, 0])  # head (top 20%): columns 0 and 1
    targets = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1])
    groups = ["a", "b"] * 6
    slices = user_slices(train_lengths, targets, popularity, groups)
    assert slices["users: cold (<=5 train)"].tolist() == [True, True] + [False] * 10
    heavy = slices["users: heavy (top 10%)"]
    assert heavy[5] and heavy.sum() == 1  # the most active tenth of the 10 warm users
    tail = slices["users: long tail"]
    assert not (tail & heavy).any() and (tail | heavy | slices["users: cold (<=5 train)"]).all()
    assert np.flatnonzero(slices["items: head target"]).tolist() == [0, 1, 10, 11]
    assert slices["group: a"].sum() == 6 and not (slices["group: a"] & slices["group: b"]).any()


def test_analyse_reports_every_k_intervals_pairs_and_slices():
    rng = np.random.default_rng(3)
    n_users, n_items = 300, 50
    champion = ModelRanks(rng.integers(0, 40, n_users), rng.integers(0, n_items, (n_users, 20)))
    candidate = ModelRanks(np.maximum(champion.ranks - 2, 0), champion.top_items)
    popularity = rng.integers(0, 100, n_items)
    slices = {"all": np.ones(n_users, bool), "none": np.zeros(n_users, bool), "half": np.arange(n_users) < 150}
    report = analyse({"candidate": candidate, "champion": champion}, ks=[1, 10, 20], k=10, n_items=n_items,
                     popularity=popularity, n_train_users=n_users, slices=slices, n_resamples=200)
    metrics = report["models"]["candidate"]["metrics"]
    assert {"ndcg@1", "ndcg@20", "hr@10", "recall@10", "coverage@20", "novelty@10", "popularity_bias@10"} <= set(metrics)
    for metric in PER_USER_METRICS:
        low, high = report["models"]["candidate"]["intervals"][f"{metric}@10"]
        assert low <= metrics[f"{metric}@10"] <= high
    assert set(report["paired"]) == {f"{m}@10" for m in PER_USER_METRICS}
    gain = report["paired"]["hr@10"]
    assert gain["delta"] > 0 and gain["low"] > 0  # every rank improved: a clear, certain gain
    assert set(report["slices"]) == {"all", "half"}  # an empty slice is left out
    assert report["slices"]["all"]["models"]["champion"]["ndcg@10"] == pytest.approx(
        report["models"]["champion"]["metrics"]["ndcg@10"])
    assert report["slices"]["half"]["users"] == 150
