"""The groups section of the evaluation on a small world where the right answers are known."""

import numpy as np
import pandas as pd
import pytest
import torch

from pipelines.config import GroupsParams
from pipelines.evaluate.gate import GROUP_METRICS
from pipelines.evaluate.groups import choose_strategy, evaluate_groups, population
from tests.conftest import shipped_params

ITEMS = [f"i{n:02d}" for n in range(20)]
TASTES = {0: ITEMS[:10], 1: ITEMS[10:]}  # each interest group likes half the catalogue, in this order


def taste_scorer(histories):
    """Scores the items of the taste most of the history belongs to, best first; 0 elsewhere."""
    rows = []
    for history in histories:
        taste = int(np.mean([ITEMS.index(i) >= 10 for i in history]) > 0.5) if history else 0
        row = np.zeros(len(ITEMS), dtype=np.float32)
        for rank, item in enumerate(TASTES[taste]):
            row[ITEMS.index(item)] = len(ITEMS) - rank
        rows.append(row)
    return torch.tensor(np.array(rows))


def popularity_scorer(histories):
    return torch.tensor(np.arange(len(ITEMS), 0, -1, dtype=np.float32)).expand(len(histories), -1)


def world(n_per_taste=30, seed=0):
    rng = np.random.default_rng(seed)
    rows, vectors = [], []
    for taste, items in TASTES.items():
        for u in range(n_per_taste):
            length = 2 if u < 5 else 6  # the first five of each taste are cold (<= 5 training items)
            picks = list(rng.permutation(items)[:length + 2])
            rows.append((f"t{taste}u{u:02d}", picks[:length], picks[length], picks[length + 1]))
            vectors.append(np.eye(4)[taste] + 0.01 * rng.standard_normal(4))
    sequences = pd.DataFrame(rows, columns=["user_id", "train_items", "valid_item", "test_item"])
    return sequences, np.array(vectors)


def settings(**changes) -> GroupsParams:
    return shipped_params().groups.updated(sampled_groups=20, min_group_size=10, **changes)


def test_every_model_gets_the_gate_metrics_and_the_candidate_a_choice():
    sequences, vectors = world()
    section = evaluate_groups({"candidate": taste_scorer, "MostPop": popularity_scorer}, vectors, sequences, None,
                              ITEMS, settings(), k=10, n_resamples=50, seed=0)
    assert section["interest_groups"]["groups"] == 2 and section["interest_groups"]["sizes"] == [30, 30]
    assert section["strategy"] in settings().strategies and section["strategy_chosen_on"] == "sampled groups"
    assert set(section["strategies"]) == set(settings().strategies)
    for name in ("candidate", "MostPop"):
        assert set(section["models"][name]) == {"member_mean_ndcg@10", "member_min_ndcg@10", "cold_ndcg@10",
                                                "cold_hr@10"}
        low, high = section["intervals"][name]["member_mean_ndcg@10"]
        assert low <= section["models"][name]["member_mean_ndcg@10"] <= high
    # the taste scorer ranks members' held-out items inside their half; popularity mixes both halves
    assert section["models"]["candidate"]["member_mean_ndcg@10"] > section["models"]["MostPop"]["member_mean_ndcg@10"]
    backoff = section["backoff"]
    assert backoff["cold"]["users"] == 10 and backoff["warm"]["users"] == 50
    assert set(backoff["cold"]) == {"users", "with backoff", "without", "MostPop"}
    assert str(backoff["strength"]) in {str(float(c)) for c in settings().backoff_strengths}


def last_item_scorer(histories):
    """Each user's own order: the catalogue counted on from their last item (users differ from their group)."""
    start = [ITEMS.index(h[-1]) if h else 0 for h in histories]
    return torch.tensor(np.array([np.roll(np.arange(len(ITEMS), 0, -1), s) for s in start], dtype=np.float32))


def test_users_above_the_backoff_cap_are_judged_on_their_own_scores():
    sequences, vectors = world()
    backoff = {}
    for cap in (5, 10):
        backoff[cap] = evaluate_groups({"candidate": last_item_scorer, "MostPop": popularity_scorer}, vectors,
                                       sequences, None, ITEMS,
                                       settings(backoff_strengths=[1000.0], backoff_max_interactions=cap), k=10,
                                       n_resamples=10, seed=0)["backoff"]
        assert backoff[cap]["max_interactions"] == cap and backoff[cap]["strength"] == 1000.0
    # warm users have 6 training items (7 at test): above a cap of 5, blended under a cap of 10
    assert backoff[5]["warm"]["with backoff"] == backoff[5]["warm"]["without"]
    assert backoff[10]["warm"]["with backoff"] != backoff[10]["warm"]["without"]
    assert backoff[5]["cold"] == backoff[10]["cold"]  # 2 (3 at test): blended under both
    assert backoff[5]["cold"]["with backoff"] != backoff[5]["cold"]["without"]


def test_explicit_groups_are_judged_on_their_own_choice_and_decide_the_strategy():
    sequences, vectors = world()
    explicit = pd.DataFrame([
        {"group_id": "h1", "members": ["t0u10", "t0u11"], "train_items": ["i00", "i01"], "valid_item": "i02",
         "test_item": "i03"},
        {"group_id": "h2", "members": ["t1u10", "nobody"], "train_items": ["i10"], "valid_item": "i11",
         "test_item": "i12"},
        {"group_id": "h3", "members": ["nobody"], "train_items": ["i10"], "valid_item": "i11", "test_item": "i12"},
    ])
    section = evaluate_groups({"candidate": taste_scorer, "MostPop": popularity_scorer}, vectors, sequences, explicit,
                              ITEMS, settings(), k=10, n_resamples=50, seed=0)
    assert section["explicit_groups"] == 2  # h3 has no profiled member
    assert set(section["models"]["candidate"]) == {f"{name}@10" for name in GROUP_METRICS}  # what the gate knows
    assert section["strategy_chosen_on"] == "explicit groups"
    assert "group_model" in section["strategies"] and section["strategy"] != "group_model"  # members-only choice
    assert section["explicit_strategy"] in section["strategies"]
    assert set(section["strategies"]["group_model"]["test"]) == {"group_ndcg@10", "group_hr@10"}
    assert section["models"]["candidate"]["group_hr@10"] == 1.0  # both held-out choices are in their taste's top 10
    # the taste scorer already ranks each held-out choice first: the item model stays off, every pair was tried
    assert section["item_model"]["weight"] == 0 and section["item_model"]["reason"] == "off: chosen on validation"
    assert len(section["item_model"]["validation"]) == (len(settings().item_model_lambdas)
                                                        * len(settings().item_model_weights))


def test_the_strategy_is_chosen_on_validation_never_on_test():
    strategies = {"average": {"validation": {"member_mean_ndcg@10": 0.2}, "test": {"member_mean_ndcg@10": 0.9}},
                  "gfar": {"validation": {"member_mean_ndcg@10": 0.3}, "test": {"member_mean_ndcg@10": 0.1}}}
    assert choose_strategy(strategies, 10, explicit=False) == "gfar"


def test_histories_become_catalogue_columns_with_unknown_items_left_out():
    sequences = pd.DataFrame([("u", ["i00", "gone"], "i01", None)],
                             columns=["user_id", "train_items", "valid_item", "test_item"])
    people = population(sequences, ITEMS)
    assert people.train == [[0]] and people.train_valid == [[0, 1]]
    assert people.test_target.tolist() == [-1] and people.evaluated.size == 0


def test_too_few_users_for_interest_groups_is_a_clear_error():
    sequences, vectors = world(n_per_taste=1)
    with pytest.raises(ValueError, match="groups.n_groups"):
        evaluate_groups({"candidate": taste_scorer}, vectors[:2], sequences[:2], None, ITEMS,
                        settings(n_groups=3), k=10, n_resamples=10, seed=0)


@pytest.mark.parametrize("strategy", ["average", "least_misery", "gfar"])
def test_members_ranked_together_score_as_group_by_group(strategy, monkeypatch):
    from pipelines.evaluate import groups as evaluate_groups_module
    from pipelines.groups.aggregation import group_scores
    from pipelines.groups.evaluation import member_satisfaction

    rng = np.random.default_rng(3)
    scores = rng.integers(0, 4, size=(30, 20)).astype(float)  # ties on purpose
    history = [sorted(rng.choice(20, size=3, replace=False).tolist()) for _ in range(30)]
    targets = rng.integers(0, 20, size=30)
    groups = [np.sort(rng.choice(30, size=size, replace=False)) for size in (2, 3, 5, 2, 4, 8, 3)]
    monkeypatch.setattr(evaluate_groups_module, "GROUP_CHUNK", 3)
    means, least = evaluate_groups_module.member_lists(scores, groups, targets, history, strategy, 5, 4)
    for group, mean, low in zip(groups, means, least):
        seen = sorted(set().union(*(history[r] for r in group)))
        ranked = group_scores(scores[group], strategy, k=5, relevant_items=4, exclude=np.array(seen))
        assert (mean, low) == pytest.approx(member_satisfaction(ranked, targets[group].tolist(), seen, 5))
