"""The benchmark's baselines: correct on hand-checkable cases, learn a pattern, never read test targets."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

import pipelines.ranking.scoring
from bench import baselines
from bench.baselines import SASRec, SASRecConfig
from pipelines.evaluate.baselines import ease_weights
from pipelines.ranking.scoring import evaluate_scorer, most_popular_scorer
from pipelines.profiles.build import build_profiles, split_sequences
from tests.conftest import shipped_params

N_ITEMS = 40
ITEM_IDS = [f"i{i}" for i in range(N_ITEMS)]
TINY_SASREC = dict(max_len=16, hidden=32, batch_size=32, patience=100)


def chain_interactions(n_users: int = 120, seed: int = 0) -> pd.DataFrame:
    """Users walk a cycle of items (i -> i + 1) from a random start: a pattern popularity cannot capture."""
    rng = np.random.default_rng(seed)
    rows, event_id = [], 0
    for user in range(n_users):
        start, length = int(rng.integers(N_ITEMS)), int(rng.integers(6, 12))
        for step in range(length):
            event_id += 1
            rows.append((event_id, f"u{user}", ITEM_IDS[(start + step) % N_ITEMS], "rating", 4.0,
                         pd.Timestamp("2026-01-01") + pd.Timedelta(minutes=step)))
    return pd.DataFrame(rows, columns=["event_id", "user_id", "item_id", "event_type", "rating", "ts"])


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny models gain nothing from threads, and on a busy machine threads waiting for each other
    turn seconds into minutes."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def sequences() -> pd.DataFrame:
    return split_sequences(chain_interactions(), 3)


@pytest.fixture(scope="module")
def most_popular_test(sequences) -> dict[str, float]:
    return evaluate_scorer(baselines.fit_most_popular(sequences, ITEM_IDS).scorer, pipelines.ranking.scoring.test_set(sequences),
                           ITEM_IDS, 10)[0]


def with_column(sequences: pd.DataFrame, column: str, values: list) -> pd.DataFrame:
    changed = sequences.copy()
    changed[column] = values
    return changed


# -- MostPop --------------------------------------------------------------------------------------
def test_popularity_counts_training_items_only():
    counts = baselines.popularity([["b", "a"], ["b"], ["zz"]], ["a", "b", "c"])
    assert counts.tolist() == [1.0, 2.0, 0.0]  # "zz" is outside the catalogue


def test_most_popular_is_the_evaluate_stages_most_popular(sequences):
    """Same split, same scores: the bench's MostPop equals the one built from items.train_count."""
    interactions = chain_interactions()
    items = pd.DataFrame({"item_id": ITEM_IDS, "title": ITEM_IDS, "categories": "", "description": ""})
    users = pd.DataFrame({"user_id": sorted(set(interactions["user_id"])), "attributes": ""})
    profiles = build_profiles(interactions, items, users,
                              shipped_params().profiles.updated(min_user_interactions=3, max_text_chars=64,
                                                                profile_items=2))
    stage = most_popular_scorer(profiles.items["train_count"].to_numpy())
    ours = baselines.fit_most_popular(profiles.sequences, ITEM_IDS).scorer
    histories = pipelines.ranking.scoring.test_set(profiles.sequences).histories
    assert torch.equal(stage(histories), ours(histories).float())


# -- EASE -----------------------------------------------------------------------------------------
def test_ease_weights_solve_one_ridge_regression_per_item():
    """Each column of B regresses that item on all the others with an L2 penalty (Steck 2019)."""
    x = (torch.rand(30, 6, generator=torch.Generator().manual_seed(1)) < 0.4).double()
    gram, lam = x.T @ x, 3.0
    weights = ease_weights(gram, lam).double()
    assert torch.all(torch.diagonal(weights) == 0)
    for j in range(6):
        others = [i for i in range(6) if i != j]
        ridge = torch.linalg.solve(gram[others][:, others] + lam * torch.eye(5, dtype=torch.float64),
                                   gram[others, j])
        assert torch.allclose(weights[others, j], ridge, atol=1e-5)


def test_ease_beats_most_popular_on_a_learnable_pattern(sequences, most_popular_test):
    fitted = baselines.fit_ease(sequences, ITEM_IDS, (1, 10, 100), k=10)
    metrics, _ = evaluate_scorer(fitted.scorer, pipelines.ranking.scoring.test_set(sequences), ITEM_IDS, 10)
    assert metrics["ndcg@10"] > most_popular_test["ndcg@10"] + 0.2
    assert fitted.info["lambda"] in (1.0, 10.0, 100.0) and fitted.train_s > 0


def test_ease_lambda_is_chosen_on_validation_and_never_reads_test_targets(sequences):
    lambdas = (1, 10, 100, 1000)
    reference = baselines.fit_ease(sequences, ITEM_IDS, lambdas)
    # Test targets that are not even in the catalogue: any read of them would fail or change something.
    corrupted = with_column(sequences, "test_item", ["no-such-item"] * len(sequences))
    again = baselines.fit_ease(corrupted, ITEM_IDS, lambdas)
    assert again.info == reference.info
    histories = pipelines.ranking.scoring.test_set(sequences).histories
    assert torch.equal(again.scorer(histories), reference.scorer(histories))
    # ...while the validation targets do decide: other validation targets, other validation curve.
    shuffled = sequences["valid_item"].sample(frac=1.0, random_state=3).tolist()
    moved = baselines.fit_ease(with_column(sequences, "valid_item", shuffled), ITEM_IDS, lambdas)
    assert moved.info["valid_ndcg"] != reference.info["valid_ndcg"]


def test_ease_for_the_test_is_refitted_on_train_and_validation_items():
    # u1's validation item "c" follows "b" only there: the refit must have learned b -> c.
    sequences = pd.DataFrame({"user_id": ["u1", "u2"], "train_items": [["a", "b"], ["a", "d"]],
                              "valid_item": ["c", "b"], "test_item": ["d", "c"]})
    fitted = baselines.fit_ease(sequences, ["a", "b", "c", "d"], (1,))
    scores = fitted.scorer([["b"]])[0]
    assert scores[2] > 0  # "c" co-occurs with "b" only through the validation item


# -- SASRec ---------------------------------------------------------------------------------------
def test_left_padding_keeps_the_newest_items_on_the_right():
    rows = baselines.left_padded([["a", "b", "c"], ["b"], []], {"a": 0, "b": 1, "c": 2}, 2)
    assert rows.tolist() == [[2, 3], [0, 2], [0, 0]]


def test_length_batches_cover_every_example_once():
    lengths = torch.tensor([5, 1, 9, 3, 3, 7, 2])
    batches = baselines.length_batches(lengths, 3, torch.Generator().manual_seed(0))
    assert sorted(torch.cat(batches).tolist()) == list(range(7))
    assert max(len(b) for b in batches) == 3


def test_sasrec_is_causal_and_ignores_padding():
    torch.manual_seed(0)
    model = SASRec(10, SASRecConfig(max_len=8, hidden=16)).eval()
    rows = torch.tensor([[0, 0, 3, 5, 7, 2]])
    hidden = model(rows)
    future_changed = model(torch.tensor([[0, 0, 3, 5, 7, 9]]))
    assert torch.allclose(hidden[0, :5], future_changed[0, :5], atol=1e-6)  # no look-ahead
    assert not torch.allclose(hidden[0, 5], future_changed[0, 5])
    more_padding = model(torch.tensor([[0, 0, 0, 0, 3, 5, 7, 2]]))
    assert torch.allclose(hidden[0, -1], more_padding[0, -1], atol=1e-6)  # padding is invisible
    assert torch.isfinite(model(torch.zeros(1, 4, dtype=torch.long))).all()  # an empty history


def test_sasrec_loss_predicts_the_next_item_at_every_real_position():
    torch.manual_seed(0)
    model = SASRec(10, SASRecConfig(max_len=8, hidden=16)).eval()
    batch = torch.tensor([[0, 0, 0, 4, 6, 1], [0, 2, 3, 4, 5, 6]])
    hidden = model(batch[:, :-1])
    # Real inputs: row 0 positions 3, 4 (-> 6, 1); row 1 positions 1..4 (-> 3, 4, 5, 6).
    picked = torch.cat([hidden[0, 3:5], hidden[1, 1:5]])
    expected = F.cross_entropy(model.logits(picked), torch.tensor([6, 1, 3, 4, 5, 6]) - 1)
    assert torch.allclose(baselines.sasrec_batch_loss(model, batch), expected, atol=1e-6)


def test_sasrec_beats_most_popular_on_a_learnable_pattern(sequences, most_popular_test):
    fitted = baselines.fit_sasrec(sequences, ITEM_IDS, budget_s=30, k=10, max_epochs=40, eval_every=5,
                                  **TINY_SASREC)
    metrics, top = evaluate_scorer(fitted.scorer, pipelines.ranking.scoring.test_set(sequences), ITEM_IDS, 10)
    assert metrics["ndcg@10"] > most_popular_test["ndcg@10"] + 0.3
    assert metrics["hr@10"] > 0.9  # the next item of the cycle is one of the 10 recommended


def test_sasrec_selects_on_validation_and_never_reads_test_targets(sequences):
    settings = dict(budget_s=60, k=10, max_epochs=4, eval_every=2, **TINY_SASREC)
    reference = baselines.fit_sasrec(sequences, ITEM_IDS, **settings)
    corrupted = with_column(sequences, "test_item", ["no-such-item"] * len(sequences))
    again = baselines.fit_sasrec(corrupted, ITEM_IDS, **settings)
    assert again.info == reference.info and reference.info["epochs"] == 4
    histories = pipelines.ranking.scoring.test_set(sequences).histories
    assert torch.allclose(again.scorer(histories), reference.scorer(histories))


def test_sasrec_stops_at_the_wall_clock_budget(sequences):
    fitted = baselines.fit_sasrec(sequences, ITEM_IDS, budget_s=0.5, k=10, **TINY_SASREC)
    assert fitted.info["stopped_by"] == "budget" and fitted.train_s < 5


# -- one measuring path ---------------------------------------------------------------------------
def test_baselines_are_measured_by_the_pipelines_code(sequences):
    """No private copy of ranking or metrics: the bench calls the functions the evaluate stage calls."""
    assert baselines.evaluate_scorer is pipelines.ranking.scoring.evaluate_scorer
    assert baselines.validation_set is pipelines.ranking.scoring.validation_set
    fitted = baselines.fit_ease(sequences, ITEM_IDS, (10,))
    split = pipelines.ranking.scoring.test_set(sequences)
    _, top = evaluate_scorer(fitted.scorer, split, ITEM_IDS, 10)
    column = {item: i for i, item in enumerate(ITEM_IDS)}
    for history, target, row in zip(split.histories, split.targets, top):
        assert not ({column[i] for i in history} - {column[target]}) & set(row.tolist())  # history excluded

