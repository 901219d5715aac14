"""Item text vectors saved with a model are reused only for unchanged texts under the same adapter,
and reuse changes no vector."""

from __future__ import annotations

import pytest
import torch

from pipelines.model.recommender import Catalogue, RecommenderConfig, SequenceRecommender, load_model, save_model
from pipelines.model.text_vectors import (TEXT_VECTORS_FILE, catalogue_reusing, load_text_vectors, model_catalogue,
                                          text_hash)
from tests.conftest import shipped_params

ITEMS = ["a", "b", "c"]
TEXTS = ["Heat (1995). Action, crime", "Toy Story (1995). Animation, children", "Fargo (1996). Crime, drama"]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.manual_seed(3)
    model = SequenceRecommender(RecommenderConfig.from_params(shipped_params().finetune, ITEMS))
    with torch.no_grad():  # a trained adapter: distinctive LoRA weights
        for name, parameter in model.named_parameters():
            if "lora_" in name:
                parameter.add_(torch.randn_like(parameter) * 0.1)
    model.eval()
    with torch.no_grad():
        vectors = Catalogue(model, ITEMS, TEXTS).text_vectors()
    directory = tmp_path_factory.mktemp("model")
    save_model(model, directory, texts=TEXTS, text_vectors=vectors)
    return directory, vectors


def test_saved_vectors_are_keyed_by_text_hash(saved):
    directory, vectors = saved
    known = load_text_vectors(directory)
    assert set(known) == {text_hash(t) for t in TEXTS}
    torch.testing.assert_close(known[text_hash(TEXTS[1])], vectors[1])


def test_unchanged_texts_are_reused_and_only_changed_ones_computed(saved):
    directory, _ = saved
    model = load_model(directory)
    texts = [TEXTS[0], "Toy Story (1995). Animation, children, comedy", TEXTS[2], "Kundun (1997). Drama"]
    items = ITEMS + ["d"]
    catalogue, reuse = catalogue_reusing(model, items, texts, load_text_vectors(directory))
    assert (reuse.reused, reuse.computed) == (2, 2)  # b's text changed, d is new
    with torch.no_grad():
        reference = Catalogue(model, items, texts).text_vectors()  # the tower over every text
    torch.testing.assert_close(catalogue.text_vectors(), reference, atol=1e-5, rtol=1e-5)
    assert torch.equal(catalogue.text_vectors(torch.tensor([2, 4])), catalogue.text_vectors()[[1, 3]])


def test_scores_with_reused_vectors_equal_a_full_computation(saved):
    from pipelines.ranking.scoring import model_scorer

    directory, _ = saved
    model = load_model(directory)
    catalogue, vectors = model_catalogue(model, directory, ITEMS, TEXTS)
    histories = [["a"], ["b", "c"]]
    reused = model_scorer(model, catalogue, vectors)(histories)
    full = model_scorer(model, Catalogue(model, ITEMS, TEXTS))(histories)
    torch.testing.assert_close(reused, full, atol=1e-5, rtol=1e-5)


def test_vectors_of_another_adapter_are_never_reused(saved, tmp_path):
    import shutil

    directory, _ = saved
    copy = tmp_path / "other"
    shutil.copytree(directory, copy)
    other = SequenceRecommender(RecommenderConfig.from_params(shipped_params().finetune, ITEMS))
    other.text.lm.save_pretrained(copy / "adapter", safe_serialization=True)  # a different adapter
    assert (copy / TEXT_VECTORS_FILE).is_file()
    assert load_text_vectors(copy) == {}

