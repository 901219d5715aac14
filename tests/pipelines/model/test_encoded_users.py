"""EncodedUsers (what evaluate and publish score with) gives the scores and user vectors of a plain
encoder pass, and runs the encoder once per distinct history."""

from __future__ import annotations

import pytest
import torch

from pipelines.model.recommender import Catalogue, RecommenderConfig, SequenceRecommender
from pipelines.model.representations import EncodedUsers, user_vectors
from pipelines.ranking.scoring import model_scorer
from tests.conftest import shipped_params

ITEMS = [f"i{n}" for n in range(12)]
TEXTS = [f"Movie {n} ({1990 + n}). {'Drama' if n % 2 else 'Comedy'}" for n in range(12)]
HISTORIES = [["i1", "i2", "i3"], ["i4"], [], ["i1", "i2", "i3"], ["unknown", "i5", "i6", "i7", "i8", "i9"],
             ["i0"] * 40]


@pytest.fixture(scope="module")
def model_and_catalogue():
    torch.manual_seed(5)
    model = SequenceRecommender(RecommenderConfig.from_params(shipped_params().finetune, ITEMS))
    model.eval()
    return model, Catalogue(model, ITEMS, TEXTS)


def test_scores_equal_the_plain_scorer(model_and_catalogue):
    model, catalogue = model_and_catalogue
    expected = model_scorer(model, catalogue)(HISTORIES)
    torch.testing.assert_close(EncodedUsers(model, catalogue)(HISTORIES), expected, atol=1e-5, rtol=1e-5)


def test_each_distinct_history_is_encoded_once(model_and_catalogue):
    model, catalogue = model_and_catalogue
    encoded = EncodedUsers(model, catalogue)
    first = encoded(HISTORIES)
    assert encoded.encoded == 5  # the repeated history is encoded once
    vectors = encoded.user_vectors(HISTORIES[:2])
    again = encoded(list(reversed(HISTORIES)))
    assert encoded.encoded == 5  # vectors and scores of known histories come from memory
    torch.testing.assert_close(again, first.flip(0))
    assert vectors.shape == (2, 2 * model.config.hidden_dim)


def test_user_vectors_are_unit_halves_and_zero_without_known_items(model_and_catalogue):
    model, catalogue = model_and_catalogue
    vectors = torch.from_numpy(EncodedUsers(model, catalogue).user_vectors(HISTORIES, chunk=2))
    half = model.config.hidden_dim
    known = [0, 1, 3, 4, 5]
    torch.testing.assert_close(vectors[known, :half].norm(dim=1), torch.ones(len(known)))
    torch.testing.assert_close(vectors[known, half:].norm(dim=1), torch.ones(len(known)))
    assert torch.count_nonzero(vectors[2]) == 0
    torch.testing.assert_close(vectors, full_width_vectors(model, catalogue, HISTORIES), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(torch.from_numpy(user_vectors(model, catalogue, HISTORIES)), vectors)


def full_width_vectors(model, catalogue, histories) -> torch.Tensor:
    """The user vectors' definition, on one batch padded to the model's whole width."""
    with torch.no_grad():
        table = catalogue.item_table(catalogue.text_vectors())
        rows = catalogue.rows_for(histories, model.config.max_seq_len)
        states = model.encode_sequences(table, rows)
        real = (rows > 0).unsqueeze(-1).float()
        count = real.sum(1).clamp(min=1.0)
        taste, items = (states * real).sum(1) / count, (table[rows] * real).sum(1) / count
    unit = lambda v: v / v.norm(dim=1, keepdim=True).clamp(min=1e-12)  # noqa: E731
    return torch.cat([unit(taste), unit(items)], dim=1)


def test_nothing_is_kept_beyond_the_limit(model_and_catalogue):
    model, catalogue = model_and_catalogue
    encoded = EncodedUsers(model, catalogue, max_remembered=2)
    first = encoded(HISTORIES)
    second = encoded(HISTORIES)
    assert encoded.encoded == 5 + 3  # two histories kept, the other three encoded again
    torch.testing.assert_close(second, first, atol=1e-5, rtol=1e-5)
