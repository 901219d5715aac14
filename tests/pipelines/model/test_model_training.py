"""The recommender trains for real: LoRA adapters move, the base model does not, artifacts reload."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from pipelines.ranking.scoring import evaluate_scorer, model_scorer, most_popular_scorer, validation_set
from pipelines.model.recommender import Catalogue, RecommenderConfig, SequenceRecommender, load_model, save_model
from pipelines.profiles.build import split_sequences
from pipelines.model.training import train
from tests.conftest import PROJECT_ROOT, shipped_params

N_ITEMS = 40


def chain_sequences(n_users: int = 60) -> pd.DataFrame:
    """Users walk a fixed cycle of items (i -> i + 1): a pattern popularity cannot capture."""
    rows, event_id = [], 0
    for user in range(n_users):
        start = (user * 7) % N_ITEMS
        for step in range(8):
            event_id += 1
            rows.append((event_id, f"u{user}", f"i{(start + step) % N_ITEMS}", "view", None,
                         pd.Timestamp("2026-01-01") + pd.Timedelta(minutes=step)))
    return pd.DataFrame(rows, columns=["event_id", "user_id", "item_id", "event_type", "rating", "ts"])


@pytest.fixture(scope="module")
def trained():
    params = shipped_params().finetune.updated(epochs=6, batch_size=16, text_refresh_steps=5, max_seq_len=10,
                                               learning_rate=0.005)
    item_ids = [f"i{i}" for i in range(N_ITEMS)]
    texts = [f"Item number {i} in the cycle" for i in range(N_ITEMS)]
    sequences = split_sequences(chain_sequences(), 3)
    torch.manual_seed(0)
    model = SequenceRecommender(RecommenderConfig.from_params(params, item_ids))
    initial = {n: p.detach().clone() for n, p in model.named_parameters()}
    catalogue = Catalogue(model, item_ids, texts)
    result = train(model, catalogue, list(sequences["train_items"]), validation_set(sequences), params)
    return model, catalogue, sequences, initial, result


def test_only_lora_and_head_are_trainable(trained):
    model, *_ = trained
    lm_trainable = [n for n, p in model.text.named_parameters() if p.requires_grad]
    assert lm_trainable and all("lora_" in n for n in lm_trainable)


def test_training_moves_adapters_and_keeps_base_frozen(trained):
    model, _, _, initial, result = trained
    params = dict(model.named_parameters())
    lora_b = [n for n in params if "lora_B" in n]
    assert any(not torch.equal(params[n], initial[n]) for n in lora_b)  # B starts at zero
    frozen = [n for n, p in params.items() if not p.requires_grad]
    assert frozen and all(torch.equal(params[n], initial[n]) for n in frozen)
    assert result.curve[-1]["loss"] < result.curve[0]["loss"]


def test_learns_the_sequence_far_better_than_popularity(trained):
    model, catalogue, sequences, _, _ = trained
    valid = validation_set(sequences)
    ours, _ = evaluate_scorer(model_scorer(model, catalogue), valid, catalogue.item_ids, 10)
    popularity = torch.ones(N_ITEMS).numpy()
    baseline, _ = evaluate_scorer(most_popular_scorer(popularity), valid, catalogue.item_ids, 10)
    assert ours["hr@10"] > 0.6 > baseline["hr@10"] + 0.3


def test_saved_artifacts_reload_identically(trained, tmp_path):
    from peft import PeftModel
    from transformers import AutoModel

    from pipelines.model.recommender import resolve_base_model

    model, catalogue, sequences, _, _ = trained
    save_model(model, tmp_path, card={"base model": "auto"})
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    assert not list(tmp_path.rglob("*.bin")) and not list(tmp_path.rglob("*.pt"))
    reloaded = load_model(tmp_path)
    valid = validation_set(sequences)
    before, _ = evaluate_scorer(model_scorer(model, catalogue), valid, catalogue.item_ids, 10)
    after, _ = evaluate_scorer(model_scorer(reloaded, Catalogue(reloaded, catalogue.item_ids,
                                                                 [f"Item number {i} in the cycle" for i in range(N_ITEMS)])),
                               valid, catalogue.item_ids, 10)
    assert after == before
    plain = PeftModel.from_pretrained(AutoModel.from_pretrained(resolve_base_model("auto")), tmp_path / "adapter")
    ours = {n: p for n, p in model.text.lm.named_parameters() if "lora_" in n}
    theirs = {n: p for n, p in plain.named_parameters() if "lora_" in n}
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[n], theirs[n]) for n in ours)


def test_unknown_items_get_a_text_vector_but_no_id_vector(trained):
    model, *_ = trained
    assert model.ids_for(["i0", "brand-new"]).tolist() == [1, 0]


def test_base_model_must_be_a_local_directory(tmp_path):
    from pipelines.model.recommender import resolve_base_model

    with pytest.raises(FileNotFoundError, match="never downloaded"):
        resolve_base_model(str(tmp_path / "sentence-transformers/all-MiniLM-L6-v2"))


def test_long_histories_are_cut_into_windows_that_cover_every_transition(trained):
    from pipelines.model.training import training_examples

    _, catalogue, *_ = trained
    history = [f"i{i}" for i in range(12)]
    rows = training_examples([history, ["i0"]], catalogue, max_len=5)
    transitions = {(int(a), int(b)) for row in rows for a, b in zip(row[:-1], row[1:]) if a > 0 and b > 0}
    assert transitions == {(i + 1, i + 2) for i in range(11)}  # catalogue rows are 1-based
    assert len(rows) == 3  # windows end at items 12, 7 and 2; a single-item history yields none


def test_saved_artifact_is_byte_identical_across_processes(tmp_path):
    """Hash randomisation must not leak into the artifact (its hash identifies a registry version)."""
    import os
    import subprocess
    import sys

    from pipelines.core.io import sha256_dir

    script = ("import sys, torch, yaml; from pipelines.model.recommender import *; torch.manual_seed(0); "
              "from pipelines.config import load_params; p = load_params('params.yaml', environ={}).finetune; "
              "save_model(SequenceRecommender(RecommenderConfig.from_params(p, ['a', 'b'])), sys.argv[1])")
    for seed in ("0", "1"):  # these two seeds iterate {"query", "value"} in opposite orders
        env = {**os.environ, "PYTHONHASHSEED": seed, "HF_HUB_OFFLINE": "1"}
        subprocess.run([sys.executable, "-c", script, str(tmp_path / seed)], cwd=PROJECT_ROOT, env=env, check=True,
                       capture_output=True)
    assert sha256_dir(tmp_path / "0") == sha256_dir(tmp_path / "1")


def test_item_index_rows_carry_the_catalogue_ids_they_were_computed_for(trained, tmp_path):
    from safetensors import safe_open

    from pipelines.model.recommender import ITEM_INDEX_FILE

    model, *_ = trained
    order = ["i3", "i0", "new item"]  # not the model's ID-map order, and one item it has never seen
    catalogue = Catalogue(model, order, ["three", "zero", "a new one"])
    with torch.no_grad():
        table = catalogue.item_table(catalogue.text_vectors())
    save_model(model, tmp_path, item_table=table, item_ids=catalogue.item_ids)
    with safe_open(str(tmp_path / ITEM_INDEX_FILE), "pt") as index:
        assert json.loads(index.metadata()["item_ids"]) == order
        torch.testing.assert_close(index.get_tensor("item_vectors"), table[1:])
    with pytest.raises(ValueError, match="one item id per row"):
        save_model(model, tmp_path / "other", item_table=table, item_ids=order[:2])


def test_keep_start_keeps_the_starting_weights_unless_an_epoch_beats_them(trained):
    """A warm night validates the champion first (epoch 0): training that only makes it worse (here a
    learning rate far too high) leaves it exactly as it was; training that helps replaces it."""
    model, catalogue, sequences, _, result = trained
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    valid = validation_set(sequences)
    harmful = shipped_params().finetune.updated(epochs=2, batch_size=16, max_seq_len=10, learning_rate=5.0,
                                                patience=2)
    kept = train(model, catalogue, list(sequences["train_items"]), valid, harmful, keep_start=True)
    assert kept.best_epoch == 0 and kept.curve[0]["epoch"] == 0
    assert all(row["valid_ndcg"] < kept.best_valid_ndcg for row in kept.curve[1:]), kept.curve
    assert all(torch.equal(p, start[n]) for n, p in model.named_parameters())  # adapters included

    fresh = SequenceRecommender(RecommenderConfig.from_params(harmful, catalogue.item_ids))
    fresh_catalogue = Catalogue(fresh, catalogue.item_ids, [f"Item number {i} in the cycle" for i in range(N_ITEMS)])
    helpful = harmful.updated(learning_rate=0.005, epochs=3)
    trained_fresh = train(fresh, fresh_catalogue, list(sequences["train_items"]), valid, helpful, keep_start=True)
    assert trained_fresh.best_epoch > 0 and trained_fresh.best_valid_ndcg > trained_fresh.curve[0]["valid_ndcg"]
