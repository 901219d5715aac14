"""Ranking metrics: hand-computed cases, the pessimistic rank, and a property test against a plain
loop-based reference (tests/pipelines/ranking/reference_metrics.py) on random score matrices."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.ranking.scoring import rank_targets
from pipelines.ranking.metrics import (METRICS, Rankings, compute_metrics, coverage_at_k, hit_rate_at_k, mrr_at_k,
                               ndcg_at_k, novelty_at_k, popularity_bias_at_k, popularity_head, precision_at_k,
                               ranking_metrics, ranks_from_scores, recall_at_k, top_items_from_scores)
from tests.pipelines.ranking.reference_metrics import reference_metrics


def single(ranks: list[int], n_items: int = 100) -> Rankings:
    return Rankings.from_single_targets(np.array(ranks), np.zeros((len(ranks), 0)), n_items)


def test_single_target_by_hand():
    rankings = single([0, 3, 12])
    assert ndcg_at_k(rankings, 10) == pytest.approx((1 + 1 / math.log2(5) + 0) / 3)
    assert hit_rate_at_k(rankings, 10) == pytest.approx(2 / 3)
    assert mrr_at_k(rankings, 10) == pytest.approx((1 + 1 / 4 + 0) / 3)
    assert recall_at_k(rankings, 10) == pytest.approx(2 / 3)
    assert precision_at_k(rankings, 10) == pytest.approx(2 / 30)
    assert hit_rate_at_k(rankings, 1) == pytest.approx(1 / 3)
    assert ndcg_at_k(rankings, 13) == pytest.approx((1 + 1 / math.log2(5) + 1 / math.log2(14)) / 3)


def test_multiple_targets_by_hand():
    rankings = Rankings(np.array([[1, 4, -1],    # one hit of two at K=3
                                  [0, 1, 2],     # all three on top
                                  [-1, -1, -1],  # no target: left out of the means
                                  [5, -1, -1]]),  # a miss
                        np.zeros((4, 0)), 100)
    a_ndcg = (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    assert ndcg_at_k(rankings, 3) == pytest.approx((a_ndcg + 1 + 0) / 3)
    assert hit_rate_at_k(rankings, 3) == pytest.approx(2 / 3)
    assert mrr_at_k(rankings, 3) == pytest.approx((1 / 2 + 1 + 0) / 3)
    assert recall_at_k(rankings, 3) == pytest.approx((1 / 2 + 1 + 0) / 3)
    assert precision_at_k(rankings, 3) == pytest.approx((1 / 3 + 1 + 0) / 3)
    assert compute_metrics(rankings, [3], ["hr"])["users"] == 3


def test_ideal_dcg_stops_at_k():
    rankings = Rankings(np.array([[0, 5, 7]]), np.zeros((1, 0)), 100)
    # Three targets but K=2: the ideal list has two hits.
    assert ndcg_at_k(rankings, 2) == pytest.approx(1 / (1 + 1 / math.log2(3)))
    assert recall_at_k(rankings, 2) == pytest.approx(1 / 3)


def test_users_without_target_are_left_out_of_accuracy_but_not_of_lists():
    rankings = Rankings(np.array([[0], [-1]]), np.array([[0, 1], [2, 3]]), 4)
    assert hit_rate_at_k(rankings, 1) == ndcg_at_k(rankings, 1) == recall_at_k(rankings, 1) == 1.0
    assert coverage_at_k(rankings, 2) == 1.0
    assert compute_metrics(rankings, [1])["users"] == 1


def test_empty_inputs_give_zero():
    popularity = np.arange(5)
    no_users = Rankings(np.empty((0, 1)), np.empty((0, 3)), 5, popularity, 4)
    no_targets = Rankings(np.full((2, 2), -1), np.zeros((2, 3)), 5, popularity, 4)
    for k in (1, 3):
        assert compute_metrics(no_users, [k]) == {**{f"{name}@{k}": 0.0 for name in METRICS}, "users": 0}
        for name in ("ndcg", "hr", "mrr", "recall", "precision"):
            assert METRICS[name](no_targets, k) == 0.0
    assert ranking_metrics(np.array([], dtype=int), np.empty((0, 10)), 5, 10)["users"] == 0


def test_coverage_counts_distinct_items():
    rankings = Rankings(np.full((2, 1), -1), np.array([[0, 1], [1, 2]]), 10)
    assert coverage_at_k(rankings, 2) == pytest.approx(0.3)
    assert coverage_at_k(rankings, 1) == pytest.approx(0.2)


def test_novelty_by_hand():
    # Self-information with 8 training users: 0, 1, 2, 3 bits; the unseen item is clipped to one user.
    rankings = Rankings(np.full((2, 1), -1), np.array([[0, 1], [3, 4]]), 5, np.array([8, 4, 2, 1, 0]), 8)
    assert novelty_at_k(rankings, 2) == pytest.approx((0 + 1 + 3 + 3) / 4)
    assert novelty_at_k(rankings, 1) == pytest.approx((0 + 3) / 2)


def test_popularity_head_and_bias_by_hand():
    popularity = np.array([9, 5, 5, 5, 0, 0, 0, 0, 0, 0])
    # 20% of 10 items: item 0, then the tie at 5 goes to the lowest column.
    assert list(np.flatnonzero(popularity_head(popularity))) == [0, 1]
    rankings = Rankings(np.full((2, 1), -1), np.array([[1, 2], [0, 3]]), 10, popularity, 20)
    assert popularity_bias_at_k(rankings, 2) == pytest.approx(2 / 4)
    assert popularity_bias_at_k(rankings, 1) == pytest.approx(1.0)
    # round(0.2 * n) items, never fewer than one.
    assert [popularity_head(np.zeros(n)).sum() for n in (1, 2, 3, 7, 8, 15)] == [1, 1, 1, 1, 2, 3]


def test_invalid_k_and_names_raise():
    rankings = Rankings(np.array([[0]]), np.array([[0, 1]]), 10, np.ones(10), 3)
    for metric in METRICS.values():
        with pytest.raises(ValueError, match="K=0"):
            metric(rankings, 0)
    for name in ("coverage", "novelty", "popularity_bias"):
        with pytest.raises(ValueError, match="K=3"):
            METRICS[name](rankings, 3)
    assert ndcg_at_k(rankings, 50) == 1.0  # ranks cover the whole catalogue, any K works
    with pytest.raises(ValueError, match="K=3"):
        compute_metrics(rankings, [1, 3])
    with pytest.raises(ValueError, match="unknown metrics"):
        compute_metrics(rankings, [1], ["auc"])
    without_popularity = Rankings(np.array([[0]]), np.array([[0, 1]]), 10)
    with pytest.raises(ValueError, match="novelty needs"):
        novelty_at_k(without_popularity, 1)


def test_lists_may_be_short_only_when_they_hold_the_whole_catalogue():
    rankings = Rankings(np.array([[0]]), np.array([[1, 0]]), 2)
    assert coverage_at_k(rankings, 10) == 1.0


def test_compute_metrics_keys():
    rankings = Rankings(np.array([[0]]), np.array([[0, 1, 2]]), 10, np.ones(10), 3)
    assert list(compute_metrics(rankings, [1, 3], ["ndcg", "coverage"])) == [
        "ndcg@1", "ndcg@3", "coverage@1", "coverage@3", "users"]
    assert len(compute_metrics(rankings, [2])) == len(METRICS) + 1
    assert "novelty@2" not in compute_metrics(Rankings(np.array([[0]]), np.array([[0, 1]]), 10), [2])


def test_ranking_metrics_keeps_its_keys_and_values():
    got = ranking_metrics(np.array([0, 1, 9, 10]), np.array([[0, 1]] * 4), 10, 2)
    assert list(got) == ["ndcg@2", "hr@2", "mrr@2", "coverage@2", "users"]
    got = ranking_metrics(np.array([0, 1, 9, 10]), np.zeros((4, 10), dtype=int), 20, 10)
    assert got["hr@10"] == pytest.approx(0.75)
    assert got["ndcg@10"] == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(11) + 0) / 4)
    assert got["mrr@10"] == pytest.approx((1 + 0.5 + 0.1 + 0) / 4)
    assert got["coverage@10"] == pytest.approx(1 / 20)
    assert got["users"] == 4


def test_ranks_from_scores_are_pessimistic_on_ties():
    scores = np.array([[1.0, 1.0, 1.0, 0.0],
                       [2.0, 2.0, 2.0, 1.0],
                       [5.0, 4.0, 3.0, 2.0]])
    ranks = ranks_from_scores(scores, [[0], [0, 1], [2, 3]], [[], [], [0, 1, 2]])
    # Row 0: after both tied items. Row 1: the non-relevant tied item goes first, the two targets
    # after it. Row 2: history 0 and 1 leave; 2 is a target, so it stays although listed.
    assert ranks.tolist() == [[2, -1], [1, 2], [0, 1]]
    assert top_items_from_scores(scores, [[], [], [0, 1]], 2).tolist() == [[0, 1], [0, 1], [2, 3]]


def test_ranks_from_scores_agree_with_the_evaluation():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 4, size=(30, 8)).astype(np.float32)
    targets = rng.integers(0, 8, size=30)
    histories = [list(rng.choice(8, size=rng.integers(0, 5), replace=False)) for _ in range(30)]
    expected, _ = rank_targets(torch.from_numpy(scores), histories, targets, k=3)
    assert ranks_from_scores(scores, [[t] for t in targets], histories)[:, 0].tolist() == expected.tolist()


def test_rank_is_pessimistic_on_ties():
    scores = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    ranks, _ = rank_targets(scores, [[]], np.array([0]), k=2)
    assert ranks[0] == 2  # placed after both items with the same score


def test_history_is_excluded_but_never_the_target():
    scores = torch.tensor([[5.0, 4.0, 3.0, 2.0]])
    ranks, top = rank_targets(scores, [[0, 1, 2]], np.array([2]), k=2)
    assert ranks[0] == 0  # items 0 and 1 are history; 2 is the target even though listed
    assert top[0, 0] == 2


def test_rank_with_history_moves_target_up():
    scores = torch.tensor([[5.0, 4.0, 3.0, 2.0], [5.0, 4.0, 3.0, 2.0]])
    ranks, _ = rank_targets(scores, [[], [0]], np.array([3, 3]), k=10)
    assert list(ranks) == [3, 2]


@st.composite
def cases(draw):
    """Small integer scores (many ties), 0-3 targets, random history (sometimes holding a target)."""
    n_items = draw(st.integers(1, 10))
    n_users = draw(st.integers(0, 6))
    k_max = draw(st.integers(1, n_items))
    columns = st.sets(st.integers(0, n_items - 1), max_size=n_items)
    scores = [draw(st.lists(st.integers(0, 3), min_size=n_items, max_size=n_items)) for _ in range(n_users)]
    relevant = [draw(st.sets(st.integers(0, n_items - 1), max_size=min(3, n_items))) for _ in range(n_users)]
    # Leave at least k_max items to recommend, so every list is a real top-k_max.
    excluded = [set(sorted(draw(columns))[:n_items - k_max]) for _ in range(n_users)]
    ks = sorted(draw(st.sets(st.integers(1, k_max), min_size=1, max_size=3)))
    n_train_users = draw(st.integers(1, 8))
    popularity = draw(st.lists(st.integers(0, n_train_users + 2), min_size=n_items, max_size=n_items))
    return scores, relevant, excluded, n_items, ks, k_max, popularity, n_train_users


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(cases())
def test_metrics_match_the_reference(case):
    scores, relevant, excluded, n_items, ks, k_max, popularity, n_train_users = case
    rankings = Rankings.from_scores(np.array(scores, dtype=np.float64).reshape(len(scores), n_items),
                                    relevant, excluded, k_max, np.array(popularity), n_train_users)
    got = compute_metrics(rankings, ks)
    expected = reference_metrics(scores, relevant, excluded, n_items, ks, popularity, n_train_users)
    assert got == pytest.approx(expected)
