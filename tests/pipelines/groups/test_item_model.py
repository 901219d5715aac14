"""The group item model: EASE scores without the items x items weights, and the choice on validation."""

import numpy as np
import pytest

from pipelines.groups.aggregation import standardised
from pipelines.groups.baselines import EaseFamily, binary_rows
from pipelines.groups.item_model import choose_item_model, fitted_item_part, gram_matrix, item_scores

N_ITEMS = 12


def random_histories(n: int, seed: int = 0) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [sorted(rng.choice(N_ITEMS, size=rng.integers(1, 6), replace=False).tolist()) for _ in range(n)]


def test_scores_through_the_eigenvectors_equal_the_rows_times_the_weights():
    family = EaseFamily(binary_rows(random_histories(40), N_ITEMS))
    rows = binary_rows(random_histories(5, seed=1), N_ITEMS)
    assert family.scores(rows, 20.0) == pytest.approx(rows @ family.weights(20.0), abs=1e-10)


def test_one_inverse_gives_the_standardised_scores_of_the_eigendecomposition():
    histories, cases = random_histories(40), random_histories(5, seed=1)
    family = EaseFamily(gram=gram_matrix(histories, N_ITEMS))
    expected = standardised(family.scores(binary_rows(cases, N_ITEMS), 20.0))
    assert item_scores(gram_matrix(histories, N_ITEMS), cases, 20.0) == pytest.approx(expected, abs=1e-9)


def test_the_sparse_gram_equals_the_dense_one_and_a_repeated_item_counts_once():
    histories = [[0, 1, 1], [1, 2], [3]]
    dense = binary_rows(histories, 4)
    assert gram_matrix(histories, 4) == pytest.approx(dense.T @ dense)
    assert gram_matrix(histories, 4)[1, 1] == 2.0


def pairs_world():
    """Items come in pairs (0,1), (2,3), ...: whoever chose one of a pair chose the other. Each case's
    history holds one item of a pair and its target is the other; the base scores know nothing."""
    fit = [[2 * p, 2 * p + 1] for p in range(N_ITEMS // 2) for _ in range(5)]
    histories = [[2 * p] for p in range(N_ITEMS // 2)]
    targets = [2 * p + 1 for p in range(N_ITEMS // 2)]
    base = np.zeros((len(histories), N_ITEMS))
    for row, history in enumerate(histories):
        base[row, history] = -np.inf
    return fit, histories, base, targets


def test_validation_turns_the_item_model_on_where_co_occurrence_predicts_the_choice():
    fit, histories, base, targets = pairs_world()
    choice, part = choose_item_model(fit, histories, base, targets, histories, lambdas=[1.0, 10.0],
                                     weights=[0.0, 1.0], max_items=100, k=1)
    assert choice.active and choice.weight == 1.0 and choice.lam == 1.0  # ties go to the earlier pair
    assert choice.validation["1/1"] == 1.0 and choice.validation["1/0"] < 1.0
    ranked = np.argmax(base + part, axis=1)
    assert ranked.tolist() == targets


def test_base_scores_that_already_rank_the_target_first_keep_the_item_model_off():
    fit, histories, base, targets = pairs_world()
    perfect = base.copy()
    perfect[np.arange(len(targets)), targets] = 100.0
    choice, part = choose_item_model(fit, histories, perfect, targets, histories, lambdas=[1.0],
                                     weights=[0.0, 1.0], max_items=100, k=1)
    assert not choice.active and part is None and choice.reason == "off: chosen on validation"


def test_a_catalogue_above_the_cap_skips_the_item_model_and_says_why():
    fit, histories, base, targets = pairs_world()
    choice, part = choose_item_model(fit, histories, base, targets, histories, lambdas=[1.0], weights=[0.0, 1.0],
                                     max_items=N_ITEMS - 1, k=1)
    assert part is None and f"{N_ITEMS} items exceed groups.item_model_max_items ({N_ITEMS - 1})" in choice.reason
    on, _ = choose_item_model(fit, histories, base, targets, histories, lambdas=[1.0], weights=[0.0, 1.0],
                              max_items=100, k=1)
    assert fitted_item_part(fit, histories, N_ITEMS, on, max_items=N_ITEMS - 1) is None


def test_the_refitted_part_is_the_weighted_standardised_scores_at_the_chosen_lambda():
    fit, histories, base, targets = pairs_world()
    choice, _ = choose_item_model(fit, histories, base, targets, histories, lambdas=[10.0], weights=[0.0, 2.0],
                                  max_items=100, k=1)
    part = fitted_item_part(fit, histories, N_ITEMS, choice, max_items=100)
    assert part == pytest.approx(2.0 * item_scores(gram_matrix(fit, N_ITEMS), histories, 10.0))
