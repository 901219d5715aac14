"""Warm start: the next night starts from the champion; old ID rows are carried over unchanged."""

from __future__ import annotations

import pytest
import torch

from pipelines.model.recommender import (RecommenderConfig, SequenceRecommender, export_merged, extend_item_ids, save_model,
                             warm_start_model)
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
