"""The optional pair re-ranker: its training data, its scorer's contract, its artifact, its switch."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

from pipelines.evaluation import rank_eval_set
from pipelines.evaluation import test_set as last_item_split
from pipelines.reranker import (CONFIG_FILE, RERANKER_DIR, RerankerConfig, load_reranker,
                                profile_text, rerank_scores, reranking_scorer, save_reranker, train_reranker,
                                training_pairs, training_settings, with_reranker)

N_ITEMS = 12
ITEM_IDS = [f"i{i}" for i in range(N_ITEMS)]
TEXTS = [f"Film number {i} ({1990 + i}). {'comedy' if i % 2 else 'drama'}" for i in range(N_ITEMS)]
SETTINGS = {"enabled": True, "top_n": 4, "negatives": 2, "positions_per_user": 2, "profile_items": 2,
            "max_tokens": 32, "fusion_weights": [0.0, 1.0], "batch_size": 16, "epochs": 2, "patience": 2,
            "learning_rate": 0.005, "seed": 3}


def cycle_sequences(n_users: int = 8) -> pd.DataFrame:
    """Users walk the cycle i -> i + 1; the last two steps are the validation and test targets."""
    rows = []
    for user in range(n_users):
        walk = [ITEM_IDS[(user + step) % N_ITEMS] for step in range(7)]
        rows.append((f"u{user}", walk[:-2], walk[-2], walk[-1]))
    return pd.DataFrame(rows, columns=["user_id", "train_items", "valid_item", "test_item"])


class NextInCycle:
    """A first stage that ranks items by their distance after the last item; records what it scored."""

    def __init__(self) -> None:
        self.seen: list[list[str]] = []

    def __call__(self, histories: list[list[str]]) -> torch.Tensor:
        self.seen.extend(list(h) for h in histories)
        scores = torch.zeros(len(histories), N_ITEMS)
        for row, history in enumerate(histories):
            last = ITEM_IDS.index(history[-1]) if history else 0
            scores[row] = -((torch.arange(N_ITEMS) - last - 1) % N_ITEMS).float()
        return scores


@pytest.fixture(scope="module")
def trained():
    sequences = cycle_sequences()
    first_stage = NextInCycle()
    reranker, result = train_reranker(first_stage, sequences, ITEM_IDS, TEXTS, SETTINGS)
    return reranker, result, sequences, first_stage


def test_training_pairs_come_from_training_items_only(trained):
    _, _, sequences, first_stage = trained
    targets = {u: {v, t} for u, v, t in zip(sequences["user_id"], sequences["valid_item"], sequences["test_item"])}
    # Whatever the first stage was asked to score (training prefixes, validation histories), no
    # user's history ever held that user's validation or test target.
    train = {tuple(h): u for u, h in zip(sequences["user_id"], sequences["train_items"])}
    for history in first_stage.seen:
        owners = [u for h, u in train.items() if list(h[:len(history)]) == history]
        assert owners and all(not targets[u] & set(history) for u in owners), history

    pairs = training_pairs(list(sequences["train_items"]), NextInCycle(), ITEM_IDS, 2, 2, 4, torch.Generator())
    positives = [(p, i) for p, i, y in zip(pairs.prefixes, pairs.items, pairs.labels) if y == 1.0]
    assert len(positives) == 2 * len(sequences)
    for prefix, item in positives:
        history = next(h for h in sequences["train_items"] if h[:len(prefix)] == prefix)
        assert len(prefix) >= len(history) - 2 and history[len(prefix)] == item


def test_test_targets_change_nothing(trained):
    reranker, result, sequences, _ = trained
    corrupted = sequences.assign(test_item=[ITEM_IDS[0]] * len(sequences))
    again, again_result = train_reranker(NextInCycle(), corrupted, ITEM_IDS, TEXTS, SETTINGS)
    untimed = lambda curve: [{k: v for k, v in row.items() if k != "seconds"} for row in curve]  # noqa: E731
    assert untimed(again_result.curve) == untimed(result.curve)
    state = reranker.trainable_state()
    assert all(torch.equal(state[name], value) for name, value in again.trainable_state().items())


def test_negatives_exclude_the_positive_and_the_history():
    sequences = cycle_sequences()

    def history_first(histories: list[list[str]]) -> torch.Tensor:
        """Scores every item of the user's whole walk above the rest: all of them must be skipped."""
        scores = torch.rand(len(histories), N_ITEMS, generator=torch.Generator().manual_seed(0))
        for row, history in enumerate(histories):
            walk = next(h for h in sequences["train_items"] if h[:len(history)] == history)
            scores[row, [ITEM_IDS.index(i) for i in walk]] += 10.0
        return scores

    pairs = training_pairs(list(sequences["train_items"]), history_first, ITEM_IDS, 2, 3, 5, torch.Generator())
    assert pairs.labels.count(0.0) == 3 * pairs.labels.count(1.0)
    for prefix, item, label in zip(pairs.prefixes, pairs.items, pairs.labels):
        walk = next(h for h in sequences["train_items"] if h[:len(prefix)] == prefix)
        if label == 0.0:
            assert item not in walk, (prefix, item)


class ReversedReranker:
    """A stand-in re-ranker that prefers the candidates the first stage liked least."""

    def __init__(self, top_n: int, fusion_weight: float = 0.0) -> None:
        self.config = RerankerConfig(top_n=top_n, profile_items=2, fusion_weight=fusion_weight)

    def score_pairs(self, profiles: list[str], candidates: list[str], chunk: int = 256) -> torch.Tensor:
        return torch.tensor([float(TEXTS.index(c)) for c in candidates])


def test_reranked_scorer_reorders_only_the_top_n_unseen_items():
    base_scores = torch.linspace(2.0, -2.0, N_ITEMS)  # first stage: i0 > i1 > ... > i11 for everyone
    first_stage = lambda histories: base_scores.expand(len(histories), -1).clone()  # noqa: E731
    histories = [["i0", "i2"], ["i5"]]
    scorer = reranking_scorer(first_stage, ReversedReranker(top_n=4), ITEM_IDS, TEXTS)
    scores = scorer(histories)

    assert scores.shape == (2, N_ITEMS)
    for row, history in enumerate(histories):
        unseen = [c for c in range(N_ITEMS) if ITEM_IDS[c] not in history]
        top, rest = unseen[:4], unseen[4:]
        order = sorted(unseen, key=lambda c: -float(scores[row, c]))
        assert order[:4] == sorted(top, reverse=True)  # re-ordered by the stand-in
        assert order[4:] == rest  # the first stage's order outside the candidates
        assert torch.equal(scores[row, rest], base_scores[rest])
        seen = [ITEM_IDS.index(i) for i in history]
        assert torch.equal(scores[row, seen], base_scores[seen])  # seen items untouched ...
    outcome = rank_eval_set(scorer, last_item_split(pd.DataFrame({
        "user_id": ["a", "b"], "train_items": [["i0"], ["i5"]], "valid_item": ["i2", "i6"],
        "test_item": ["i9", "i1"]})), ITEM_IDS, 6)
    assert not {0, 2} & set(outcome.top_items[0]) and not {5, 6} & set(outcome.top_items[1])  # ... and excluded


def test_a_large_fusion_weight_keeps_the_first_stage_order():
    base = torch.tensor([[3.0, 2.0, 1.0, 0.0, -1.0]])
    top, valid = torch.tensor([[0, 1, 2]]), torch.ones(1, 3, dtype=torch.bool)
    logits = torch.tensor([[0.0, 0.1, 0.2]])
    assert torch.argsort(rerank_scores(base, top, valid, logits, 0.0), descending=True)[0, :3].tolist() == [2, 1, 0]
    fused = rerank_scores(base, top, valid, logits, 100.0)
    assert torch.argsort(fused, descending=True)[0].tolist() == [0, 1, 2, 3, 4]
    assert fused[0, 2] > base[0, 3] and torch.equal(fused[0, 3:], base[0, 3:])


def test_the_real_reranker_keeps_the_candidate_set(trained):
    reranker, *_ = trained
    first_stage = NextInCycle()
    histories = [["i3", "i4"], ["i10"]]
    scores = reranking_scorer(first_stage, reranker, ITEM_IDS, TEXTS)(histories)
    base = first_stage(histories)
    for row, history in enumerate(histories):
        unseen = torch.tensor([ITEM_IDS[c] not in history for c in range(N_ITEMS)])
        expect = set(torch.topk(base[row].masked_fill(~unseen, -math.inf), 4).indices.tolist())
        got = set(torch.topk(scores[row].masked_fill(~unseen, -math.inf), 4).indices.tolist())
        assert got == expect


def test_training_records_validation_and_moves_the_adapters(trained):
    reranker, result, *_ = trained
    assert [row["epoch"] for row in result.curve] == [1, 2] and 1 <= result.best_epoch <= 2
    assert result.best_valid_ndcg == max(row["valid_ndcg"] for row in result.curve)
    assert result.train_pairs == 8 * 2 * 3 and result.valid_pairs == 8 * 4
    assert reranker.config.fusion_weight == result.fusion_weight in (0.0, 1.0)
    lora_b = [p for n, p in reranker.named_parameters() if "lora_B" in n]
    assert lora_b and any(bool(p.abs().sum() > 0) for p in lora_b)  # B starts at zero


def test_split_forward_equals_the_classifier_forward(trained):
    reranker, *_ = trained
    reranker.eval()
    batch = reranker.tokenize(["Film number 3; Film number 2", ""], [TEXTS[4], TEXTS[7]])
    with torch.no_grad():
        expected = reranker.lm(**batch).logits.squeeze(-1)
    assert torch.allclose(reranker.score_pairs(["Film number 3; Film number 2", ""], [TEXTS[4], TEXTS[7]]),
                          expected, atol=1e-5)


def test_save_and_load_give_identical_scores_from_safetensors_only(trained, tmp_path):
    reranker, *_ = trained
    save_reranker(reranker, tmp_path / RERANKER_DIR)
    files = {p.name for p in (tmp_path / RERANKER_DIR).iterdir()}
    assert {"adapter_model.safetensors", "adapter_config.json", CONFIG_FILE, "tokenizer.json"} <= files
    assert not [f for f in files if f.endswith((".bin", ".pt", ".pth", ".pkl", ".pickle"))]
    loaded = load_reranker(tmp_path / RERANKER_DIR)
    assert loaded.config == reranker.config
    profiles = [profile_text(["i1", "i2", "i3"], dict(zip(ITEM_IDS, TEXTS)), 2, 40)] * 3
    assert torch.equal(loaded.score_pairs(profiles, TEXTS[:3]), reranker.score_pairs(profiles, TEXTS[:3]))
    histories = [["i1", "i2"], ["i8"]]
    wrapped = with_reranker(NextInCycle(), tmp_path, ITEM_IDS, TEXTS)
    assert torch.equal(wrapped(histories), reranking_scorer(NextInCycle(), reranker, ITEM_IDS, TEXTS)(histories))
    plain = NextInCycle()
    assert with_reranker(plain, tmp_path / "no-reranker-here", ITEM_IDS, TEXTS) is plain


def test_profile_is_newest_first_and_cut():
    text_of = {"a": "Alpha film", "b": "Beta film", "c": "Gamma film"}
    assert profile_text(["a", "b", "c", "unknown"], text_of, 2, 5) == "Gamma; Beta"
    assert profile_text([], text_of, 2, 5) == ""


def test_disabled_reranker_trains_nothing(monkeypatch):
    import pipelines.evaluation
    import pipelines.reranker
    from tasks.finetune import optional_reranker

    calls = []
    monkeypatch.setattr(pipelines.evaluation, "model_scorer", lambda model, catalogue: NextInCycle())
    monkeypatch.setattr(pipelines.reranker, "train_reranker", lambda *args, **kwargs: calls.append(args) or ("r", "x"))
    catalogue = SimpleNamespace(item_ids=ITEM_IDS)
    profiles = SimpleNamespace(sequences=cycle_sequences(), items={"text": TEXTS})
    for settings in ({"base_model": "auto", "reranker": {**SETTINGS, "enabled": False}}, {"base_model": "auto"}):
        assert optional_reranker(settings, None, catalogue, profiles, None) == (None, None)
    assert calls == []
    # The switch is what stops it: enabled, the same call trains.
    assert optional_reranker({"base_model": "auto", "reranker": SETTINGS}, None, catalogue, profiles, None) == ("r", "x")
    assert len(calls) == 1


def test_bad_settings_name_the_key():
    with pytest.raises(ValueError, match="finetune.reranker.negatives"):
        training_settings({"negatives": 0})
    with pytest.raises(ValueError, match=r"unknown keys \['top_k'\]"):
        training_settings({"top_k": 20})
    with pytest.raises(ValueError, match="finetune.reranker.top_n"):
        RerankerConfig.from_params({"top_n": 0}, "auto")


def test_no_validation_users_still_trains(trained):
    _, _, sequences, _ = trained
    no_targets = sequences.assign(valid_item=None, test_item=None)
    reranker, result = train_reranker(NextInCycle(), no_targets, ITEM_IDS, TEXTS, {**SETTINGS, "epochs": 1})
    assert result.valid_pairs == 0 and result.best_valid_ndcg == 0.0 and result.best_epoch == 1
