"""Group strategies: each equals the reference implementation of the grouprec library on random
score matrices, and each behaves as its definition says on small hand-made groups."""

from __future__ import annotations

import numpy as np
import pytest
from grouprec.aggregators.fairness import GFARAggregator
from grouprec.aggregators.social_choice import (AverageAggregator, BordaCountAggregator, LeastMiseryAggregator,
                                                MostPleasureAggregator)

from pipelines.groups.aggregation import STRATEGIES, group_scores, relevance_probabilities, standardised

REFERENCE = {"average": AverageAggregator(), "least_misery": LeastMiseryAggregator(),
             "most_pleasure": MostPleasureAggregator(), "borda": BordaCountAggregator()}
K = 10


def top_k(scores: np.ndarray, k: int = K) -> list[int]:
    """The list a group gets: highest first, ties to the lower column (the reference's convention)."""
    return [int(i) for i in np.argsort(-scores, kind="stable")[:k] if np.isfinite(scores[i])]


@pytest.mark.parametrize("strategy", sorted(REFERENCE))
@pytest.mark.parametrize("members", [2, 4, 8])
def test_score_rules_match_the_reference_library(strategy, members):
    rng = np.random.default_rng(members)
    for _ in range(20):
        scores = rng.normal(size=(members, 60)) * rng.uniform(0.5, 3.0, size=(members, 1))
        exclude = rng.choice(60, size=7, replace=False)
        # The reference takes scores as they come: give it the standardised ones our rules use.
        reference_input = scores if strategy == "borda" else standardised(scores)
        expected = REFERENCE[strategy].aggregate(reference_input, K, exclude=exclude).tolist()
        assert top_k(group_scores(scores, strategy, k=K, exclude=exclude)) == expected


def greedy_gains(picks: list[int], relevance: np.ndarray) -> list[float]:
    """Each pick's marginal gain given the picks before it (Kaya et al., Eq. 5)."""
    unserved, gains = np.ones(relevance.shape[0]), []
    for item in picks:
        gains.append(float(unserved @ relevance[:, item]))
        unserved = unserved * (1.0 - relevance[:, item])
    return gains


@pytest.mark.parametrize("members", [2, 4, 8])
def test_gfar_matches_the_reference_library(members):
    """Same list, or where Borda shares tie exactly, a list of the same gains at every step (the two
    sum the gains in a different order, so an exact tie can fall either way)."""
    rng = np.random.default_rng(100 + members)
    for _ in range(20):
        scores = rng.normal(size=(members, 80))
        expected = GFARAggregator(relevant_max_items=20).aggregate(scores, K).tolist()
        ours = top_k(group_scores(scores, "gfar", k=K, relevant_items=20))
        relevance = relevance_probabilities(scores, 20, np.ones(80, dtype=bool))
        assert greedy_gains(ours, relevance) == pytest.approx(greedy_gains(expected, relevance), abs=1e-12)
        assert len(set(ours)) == K


def test_least_misery_and_most_pleasure_follow_the_unhappiest_and_happiest_member():
    scores = np.array([[3.0, 2.0, 1.0, 0.0],    # member A loves item 0
                       [0.0, 2.0, 1.0, 3.0]])   # member B loves item 3; both like item 1
    assert top_k(group_scores(scores, "least_misery", k=4), 1) == [1]
    assert set(top_k(group_scores(scores, "most_pleasure", k=4), 2)) == {0, 3}
    assert top_k(group_scores(scores, "average", k=4), 1) == [1]


def test_standardising_stops_one_member_with_wide_scores_from_deciding_alone():
    quiet = np.array([0.0, 0.1, 0.2, 0.3])  # prefers item 3
    loud = np.array([30.0, 20.0, 10.0, 0.0])  # the mirror image, prefers item 0, on a wider scale
    scores = np.vstack([quiet, loud])
    assert int(scores.mean(axis=0).argmax()) == 0  # a raw mean follows the loud member alone
    shares = group_scores(scores, "average", k=4)
    assert shares[0] == pytest.approx(shares[3])  # on one scale, the two preferences weigh the same


def test_gfar_serves_each_member_before_repeating_one():
    # Three members: two share a taste (items 0-4), one differs (items 5-9). Average gives the
    # whole list to the majority; GFAR's second pick is the minority's favourite.
    rng = np.random.default_rng(0)
    scores = rng.uniform(0, 0.1, size=(3, 30))
    scores[0:2, 0:5] += np.linspace(2.0, 1.6, 5)
    scores[2, 5:10] += np.linspace(2.0, 1.6, 5)
    average, gfar = (top_k(group_scores(scores, s, k=5), 5) for s in ("average", "gfar"))
    assert set(average) <= set(range(5))
    assert gfar[0] in range(5) and gfar[1] in range(5, 10)


def test_relevance_is_a_borda_share_of_each_members_top_items_among_the_available():
    scores = np.array([[5.0, 4.0, 3.0, 2.0, 1.0]])
    available = np.array([False, True, True, True, True])
    probabilities = relevance_probabilities(scores, 3, available)
    # Item 0 is excluded: the top 3 available are items 1, 2, 3 with Borda points 2, 1, 0.
    assert probabilities.tolist() == [[0.0, 2 / 3, 1 / 3, 0.0, 0.0]]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_excluded_items_are_never_recommended_and_every_other_item_is_ranked(strategy):
    rng = np.random.default_rng(1)
    scores = rng.normal(size=(3, 25))
    exclude = np.zeros(25, dtype=bool)
    exclude[[0, 4, 9]] = True
    result = group_scores(scores, strategy, k=5, exclude=exclude)
    assert np.isneginf(result[exclude]).all()
    assert np.isfinite(result[~exclude]).all()  # a full ranking: the group's held-out item has a rank


def test_gfar_puts_its_list_above_every_other_item():
    rng = np.random.default_rng(2)
    scores = rng.normal(size=(4, 40))
    result = group_scores(scores, "gfar", k=6)
    listed = np.argsort(-result, kind="stable")[:6]
    assert result[listed].min() > np.delete(result, listed).max()


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="unknown group strategy 'median'; known: average, least_misery"):
        group_scores(np.zeros((2, 3)), "median", k=2)
    with pytest.raises(ValueError, match="at least one member"):
        group_scores(np.zeros((0, 3)), "average", k=2)
