"""Warm start: the next night starts from the champion; old ID rows are carried over unchanged."""

from __future__ import annotations

import pytest
import torch

from pipelines.model.recommender import (WEIGHTS_FILE, RecommenderConfig, SequenceRecommender, export_merged,
                                         extend_item_ids, load_model, save_model, warm_start_model)
from tests.conftest import shipped_params


def params():
    return shipped_params().finetune


def test_id_map_is_append_only():
    assert extend_item_ids(["b", "a"], ["c", "a", "d"]) == ["b", "a", "c", "d"]
    assert extend_item_ids([], ["z", "y"]) == ["y", "z"]


@pytest.fixture(scope="module")
def champion_dir(tmp_path_factory):
    torch.manual_seed(1)
    champion = SequenceRecommender(RecommenderConfig.from_params(params(), ["a", "b", "c"]))
    with torch.no_grad():  # stand-in for training: make every trained tensor distinctive
        for name, parameter in champion.named_parameters():
            if parameter.requires_grad:
                parameter.add_(torch.randn_like(parameter) * 0.1)
    directory = tmp_path_factory.mktemp("champion")
    save_model(champion, directory)
    return directory, champion


def test_warm_start_carries_old_rows_and_adapter_unchanged(champion_dir):
    directory, champion = champion_dir
    tonight = RecommenderConfig.from_params(params(), ["c", "d", "a"])  # b left, d is new
    model = warm_start_model(directory, tonight)
    assert model.config.item_ids == ["a", "b", "c", "d"]
    old_rows = champion.id_embedding.weight.detach()
    assert torch.equal(model.id_embedding.weight.detach()[:4], old_rows)  # padding + a, b, c
    assert model.ids_for(["c", "d", "a"]).tolist() == [3, 4, 1]
    ours = dict(model.named_parameters())
    for name, parameter in champion.named_parameters():
        if parameter.requires_grad and name != "id_embedding.weight":
            assert torch.equal(ours[name].detach(), parameter.detach()), name
    assert any("lora_" in n and p.requires_grad for n, p in model.named_parameters())  # adapters train on


def test_changed_architecture_falls_back_to_a_cold_start(champion_dir):
    directory, _ = champion_dir
    config = RecommenderConfig.from_params(params().updated(hidden_dim=32), ["a"])
    assert warm_start_model(directory, config) is None


def test_merged_export_is_a_plain_model_with_the_adapter_folded_in(champion_dir, tmp_path):
    from transformers import AutoModel

    _, champion = champion_dir
    export_merged(champion, tmp_path)
    merged = AutoModel.from_pretrained(tmp_path)
    assert not [n for n, _ in merged.named_parameters() if "lora_" in n]
    ids = champion.text.tokenize(["a merged check"])
    champion.eval()
    with torch.no_grad():
        expected = champion.text.bert(input_ids=ids[0], attention_mask=ids[1]).last_hidden_state
        got = merged(input_ids=ids[0], attention_mask=ids[1]).last_hidden_state
    assert torch.allclose(expected, got, atol=1e-4)
    assert any(p.name.endswith(".safetensors") for p in tmp_path.iterdir())


def test_items_never_chosen_are_scored_from_their_text_alone(tmp_path):
    torch.manual_seed(2)
    model = SequenceRecommender(RecommenderConfig.from_params(params(), ["a", "b", "c"]))
    assert model.mark_chosen_items([["a", "c"], ["c", "gone"]]) == 1  # b is never chosen
    text = torch.randn(3, model.text.output_dim)
    masked = model.item_vectors(model.ids_for(["a", "b", "c"]), text)
    as_new = model.item_vectors(model.ids_for(["brand-new"]), text[1:2])  # row 0: no ID vector
    assert torch.allclose(masked[1], as_new[0], atol=1e-6)
    assert not torch.allclose(masked[0], model.text_proj(text[0]))  # a keeps its ID row
    save_model(model, tmp_path)
    assert torch.equal(load_model(tmp_path).id_known, model.id_known)


def test_items_without_a_known_row_share_the_unknown_item_vector():
    model = SequenceRecommender(RecommenderConfig.from_params(params(), ["a", "b"]))
    model.mark_chosen_items([["a"]])
    with torch.no_grad():
        model.unknown_id.fill_(0.5)  # as id_dropout training leaves it
    text = torch.zeros(3, model.text.output_dim)
    vectors = model.item_vectors(model.ids_for(["a", "b", "brand-new"]), text)
    bias = model.text_proj(text[0])
    assert torch.allclose(vectors[1], model.unknown_id + bias) and torch.allclose(vectors[2], vectors[1])
    assert torch.allclose(vectors[0], model.id_embedding.weight[1] + bias)


def test_models_saved_without_the_mask_keep_every_id_row(tmp_path):
    from safetensors.torch import load_file, save_file

    model = SequenceRecommender(RecommenderConfig.from_params(params(), ["a", "b"]))
    model.mark_chosen_items([["a"]])
    save_model(model, tmp_path)
    weights = load_file(tmp_path / WEIGHTS_FILE)
    del weights["id_known"], weights["unknown_id"]
    save_file(weights, tmp_path / WEIGHTS_FILE)
    reloaded = load_model(tmp_path)
    assert reloaded.id_known.tolist() == [1.0, 1.0, 1.0] and not reloaded.unknown_id.any()


def test_warm_start_leaves_the_mask_to_tonights_data(tmp_path):
    champion = SequenceRecommender(RecommenderConfig.from_params(params(), ["a", "b"]))
    champion.mark_chosen_items([["a"]])  # b unchosen last night
    save_model(champion, tmp_path)
    model = warm_start_model(tmp_path, RecommenderConfig.from_params(params(), ["a", "b", "c"]))
    assert model.id_known.tolist() == [1.0, 1.0, 1.0, 1.0]
    assert model.mark_chosen_items([["b", "a"]]) == 1  # b chosen tonight, c not yet
    assert model.id_known.tolist() == [0.0, 1.0, 1.0, 0.0]
