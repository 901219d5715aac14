"""Hand-computed cases for the ranking metrics and the pessimistic rank."""

import math

import numpy as np
import pytest
import torch

from pipelines.evaluation import rank_targets
from pipelines.metrics import coverage_at_k, hit_rate_at_k, mrr_at_k, ndcg_at_k, ranking_metrics


def test_metrics_by_hand():
    ranks = np.array([0, 1, 9, 10])
    assert hit_rate_at_k(ranks, 10) == pytest.approx(0.75)
    assert ndcg_at_k(ranks, 10) == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(11) + 0) / 4)
    assert mrr_at_k(ranks, 10) == pytest.approx((1 + 0.5 + 0.1 + 0) / 4)
    assert hit_rate_at_k(ranks, 1) == pytest.approx(0.25)


def test_empty_inputs_give_zero():
    empty = np.array([], dtype=int)
    assert ndcg_at_k(empty, 10) == hit_rate_at_k(empty, 10) == mrr_at_k(empty, 10) == 0.0
    assert coverage_at_k(np.empty((0, 10)), 100) == 0.0
    assert ranking_metrics(empty, np.empty((0, 10)), 5, 10)["users"] == 0


def test_coverage_counts_distinct_items():
    assert coverage_at_k(np.array([[0, 1], [1, 2]]), 10) == pytest.approx(0.3)


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
