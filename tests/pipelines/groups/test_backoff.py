import numpy as np
import pytest

from pipelines.groups.aggregation import standardised
from pipelines.groups.backoff import backoff_weights, blend_with_group, choose_strength, interest_group_scores


def test_the_own_weight_grows_with_what_is_known():
    weights = backoff_weights(np.array([1, 5, 100]), 5.0)
    assert weights.tolist() == pytest.approx([1 / 6, 0.5, 100 / 105])
    assert backoff_weights(np.array([1, 2]), 0.0).tolist() == [1.0, 1.0]
    with pytest.raises(ValueError, match=">= 0"):
        backoff_weights(np.array([1]), -1.0)


def test_users_above_the_cap_keep_their_own_scores():
    weights = backoff_weights(np.array([1, 10, 11, 100]), 5.0, max_interactions=10)
    assert weights.tolist() == pytest.approx([1 / 6, 10 / 15, 1.0, 1.0])


def test_group_scores_are_the_mean_standardised_scores_of_the_members():
    scores = np.array([[1.0, 2.0, 3.0], [10.0, 0.0, 5.0], [0.0, 0.0, 9.0]])
    groups = interest_group_scores(scores, np.array([0, 0, 2]), 3)
    z = standardised(scores)
    assert np.allclose(groups[0], z[:2].mean(0)) and np.allclose(groups[1], 0.0) and np.allclose(groups[2], z[2])


def test_a_blend_leans_on_the_group_where_little_is_known():
    own = np.array([[3.0, 2.0, 1.0], [3.0, 2.0, 1.0]])
    group = np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    blended = blend_with_group(own, group, np.array([0.1, 0.9]))
    assert np.argmax(blended[0]) == 2 and np.argmax(blended[1]) == 0
    assert np.allclose(blend_with_group(own, group, np.ones(2)), standardised(own))


def test_the_strength_with_the_best_validation_value_wins_and_ties_go_to_less_backoff():
    values = {0.0: 0.10, 2.0: 0.12, 5.0: 0.12, 10.0: 0.11}
    best, seen = choose_strength([0, 2, 5, 10], lambda c: values[c])
    assert best == 2.0 and seen == values
    with pytest.raises(ValueError, match="empty"):
        choose_strength([], lambda c: 0.0)
