"""The shortcuts that make training cheap change nothing but the cost.

Cutting batches to their longest sequence, length-sorted text passes, the byte-mask dropout and the
chunked cross-entropy are each checked against the plain computation they replace.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pipelines.model.recommender import Catalogue, FastDropout, RecommenderConfig, SequenceRecommender
from pipelines.model.training import (ChunkedSoftmaxCrossEntropy, catalogue_cross_entropy, next_item_pairs,
                                training_examples, trim_padding)
from tests.conftest import shipped_params

N_ITEMS = 30


@pytest.fixture(scope="module")
def model_and_catalogue():
    params = shipped_params().finetune.updated(max_seq_len=12)
    item_ids = [f"i{i}" for i in range(N_ITEMS)]
    # Texts of very different token counts, so length-sorted chunks really are cut.
    texts = [f"Item {i} " + "drama comedy " * (i % 6) for i in range(N_ITEMS)]
    torch.manual_seed(0)
    model = SequenceRecommender(RecommenderConfig.from_params(params, item_ids)).eval()
    return model, Catalogue(model, item_ids, texts)


def test_a_batch_cut_to_its_longest_sequence_gives_the_same_states(model_and_catalogue):
    model, catalogue = model_and_catalogue
    histories = [[f"i{j}" for j in range(n)] for n in (3, 5, 1, 4)]
    rows = catalogue.rows_for(histories, 12)
    trimmed = trim_padding(rows)
    assert trimmed.shape == (4, 5)
    with torch.no_grad():
        table = catalogue.item_table(catalogue.text_vectors())
        full, cut = model.encode_sequences(table, rows), model.encode_sequences(table, trimmed)
        real = trimmed > 0
        torch.testing.assert_close(cut[real], full[:, :5][real])
        last = model.last_hidden(table, rows)
    torch.testing.assert_close(last[1], full[1, 4])  # the state after the last real item
    torch.testing.assert_close(last[2], full[2, 0])


def test_training_rows_are_right_padded_windows(model_and_catalogue):
    _, catalogue = model_and_catalogue
    rows = training_examples([[f"i{j}" for j in range(3)]], catalogue, max_len=5)
    assert rows.tolist() == [[1, 2, 3, 0, 0, 0]]


def test_training_predicts_each_next_item_from_the_state_inference_uses(model_and_catalogue):
    """A short window's prediction of its last item sees the same state as scoring that prefix."""
    model, catalogue = model_and_catalogue
    rows = training_examples([["i0", "i1", "i2"]], catalogue, max_len=5)
    inputs, targets = next_item_pairs(rows)
    assert inputs.tolist() == [[1, 2, 0, 0, 0]] and targets.tolist() == [[2, 3, 0, 0, 0]]
    with torch.no_grad():
        table = catalogue.item_table(catalogue.text_vectors())
        training_state = model.encode_sequences(table, inputs)[0, 1]  # predicts i2 from i0, i1
        inference_state = model.last_hidden(table, catalogue.rows_for([["i0", "i1"]], 5))[0]
    torch.testing.assert_close(training_state, inference_state)


def test_length_sorted_text_passes_match_the_full_width_computation(model_and_catalogue):
    model, catalogue = model_and_catalogue
    with torch.no_grad():
        full_width = model.text.bert(input_ids=catalogue.input_ids, attention_mask=catalogue.attention_mask,
                                     output_hidden_states=True).hidden_states[model.text.first_adapted_layer]
        real = catalogue.attention_mask.bool()
        torch.testing.assert_close(catalogue.states[real], full_width[real], atol=1e-5, rtol=1e-5)
        reference = model.text.upper(catalogue.states, catalogue.attention_mask)
        torch.testing.assert_close(catalogue.text_vectors(chunk=7), reference, atol=1e-5, rtol=1e-5)
        some = torch.tensor([4, 30, 1, 4])
        torch.testing.assert_close(catalogue.text_vectors(some, chunk=2), reference[some - 1], atol=1e-5, rtol=1e-5)


def test_byte_mask_dropout_drops_at_its_rate_and_keeps_the_mean():
    torch.manual_seed(0)
    dropout = FastDropout(0.2).train()
    x = torch.ones(200_000)
    out = dropout(x)
    assert abs(float((out == 0).float().mean()) - 51 / 256) < 0.005  # p quantised to 1/256
    assert abs(float(out.mean()) - 1.0) < 0.01
    assert torch.equal(dropout.eval()(x), x)
    assert torch.equal(FastDropout(0.0).train()(x), x)
    with pytest.raises(ValueError, match="outside"):
        FastDropout(1.0)


@pytest.mark.parametrize("chunk", [1, 7, 256])
def test_chunked_cross_entropy_has_the_loss_and_gradients_of_the_plain_one(chunk):
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(50, 16, generator=generator, requires_grad=True)
    table = torch.randn(40, 16, generator=generator, requires_grad=True)
    targets = torch.randint(0, 40, (50,), generator=generator)
    plain = F.cross_entropy(hidden @ table.T, targets)
    expected = torch.autograd.grad(plain * 3.0, (hidden, table))  # an upstream gradient other than 1
    chunked = ChunkedSoftmaxCrossEntropy.apply(hidden, table, targets, chunk)
    torch.testing.assert_close(chunked, plain)
    for got, want in zip(torch.autograd.grad(chunked * 3.0, (hidden, table)), expected):
        torch.testing.assert_close(got, want)


def test_the_training_loss_is_the_chunked_one_on_the_cpu():
    hidden, table, targets = torch.randn(600, 8), torch.randn(30, 8), torch.randint(0, 30, (600,))
    torch.testing.assert_close(catalogue_cross_entropy(hidden, table, targets), F.cross_entropy(hidden @ table.T, targets))
    hidden.requires_grad_(True)
    assert type(catalogue_cross_entropy(hidden, table, targets).grad_fn).__name__ == "ChunkedSoftmaxCrossEntropyBackward"
