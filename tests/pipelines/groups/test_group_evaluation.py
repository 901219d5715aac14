"""Group metrics: pessimistic full-catalogue ranks with the group's history excluded, checked
against a brute-force count on random scores and on hand-made cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipelines.groups.evaluation import hit_at_k, member_satisfaction, ndcg_at_k, target_ranks


def brute_force_rank(row: np.ndarray, target: int, excluded: set[int]) -> int:
    """Items other than the target, not excluded, scoring at least as high (ties count against it)."""
    return sum(1 for item, score in enumerate(row)
               if item != target and item not in excluded and score >= row[target])


def test_ranks_equal_a_brute_force_count_with_ties_and_exclusions():
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 5, size=(200, 30)).astype(float)  # many ties
    targets = rng.integers(0, 30, size=200)
    excluded = [set(rng.choice(30, size=rng.integers(0, 8), replace=False).tolist()) for _ in range(200)]
    ranks = target_ranks(scores, targets, [sorted(e) for e in excluded])
    expected = [brute_force_rank(row, int(t), e - {int(t)}) for row, t, e in zip(scores, targets, excluded)]
    assert ranks.tolist() == expected


def test_ranks_equal_the_sorted_ranking_of_the_user_metrics_with_minus_infinity_scores():
    from pipelines.ranking.metrics import ranks_from_scores

    rng = np.random.default_rng(5)
    scores = rng.integers(0, 4, size=(100, 20)).astype(float)
    scores[rng.random(scores.shape) < 0.3] = -np.inf  # excluded-style scores tie with each other
    targets = rng.integers(0, 20, size=100)
    excluded = [sorted(rng.choice(20, size=3, replace=False).tolist()) for _ in range(100)]
    expected = ranks_from_scores(scores, [[int(t)] for t in targets], excluded)[:, 0]
    assert target_ranks(scores, targets, excluded).tolist() == expected.tolist()


def test_a_target_in_the_history_is_still_ranked():
    scores = np.array([[0.9, 0.5, 0.1]])
    assert target_ranks(scores, [0], [[0, 1]]).tolist() == [0]


def test_ndcg_and_hits_of_single_relevant_items():
    ranks = np.array([0, 1, 9, 10])
    assert ndcg_at_k(ranks, 10).tolist() == pytest.approx([1.0, 1 / math.log2(3), 1 / math.log2(11), 0.0])
    assert hit_at_k(ranks, 10).tolist() == [1.0, 1.0, 1.0, 0.0]


def test_member_satisfaction_is_the_mean_and_the_lowest_member_ndcg():
    group = np.array([0.9, 0.8, 0.7, 0.1, 0.0])
    # Members' held-out items 0 and 2; item 1 is in the group's history, so item 2 ranks second.
    mean, least = member_satisfaction(group, [0, 2], excluded=[1], k=10)
    assert least == pytest.approx(1 / math.log2(3))
    assert mean == pytest.approx((1.0 + 1 / math.log2(3)) / 2)
    assert member_satisfaction(group, [4], excluded=[], k=3) == (0.0, 0.0)  # rank 4: outside the top 3


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="2 targets for 1 rows"):
        target_ranks(np.zeros((1, 3)), [0, 1], [[], []])
    with pytest.raises(ValueError, match="at least one member"):
        member_satisfaction(np.zeros(3), [], excluded=[], k=10)
    assert target_ranks(np.zeros((0, 3)), [], []).tolist() == []
