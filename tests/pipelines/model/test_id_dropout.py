"""ID dropout: at each training step some items are scored from their text alone, as new items are."""

from __future__ import annotations

import torch

from tests.pipelines.model.test_lr_schedule import tiny_trainer


def test_no_id_dropout_keeps_every_id_row():
    trainer, _, _ = tiny_trainer(id_dropout=0.0)
    assert trainer._id_rows() is trainer.catalogue.id_rows


def test_id_dropout_drops_a_seeded_share_of_the_items():
    trainer, _, _ = tiny_trainer(id_dropout=0.5, seed=7)
    rows = trainer.catalogue.id_rows
    draws = [trainer._id_rows() for _ in range(20)]
    for drawn in draws:
        assert torch.all((drawn == rows) | (drawn == 0))  # an item keeps its own row or has none
    dropped = torch.stack([drawn == 0 for drawn in draws]).float().mean()
    assert 0.4 < dropped < 0.6
    again, _, _ = tiny_trainer(id_dropout=0.5, seed=7)
    assert all(torch.equal(drawn, again._id_rows()) for drawn in draws)  # reruns drop the same items


def test_a_step_with_every_id_dropped_trains_no_id_row():
    trainer, examples, _ = tiny_trainer(id_dropout=0.999999, weight_decay=0.0)
    before = trainer.model.id_embedding.weight.detach().clone()
    head_before = trainer.model.text_proj.weight.detach().clone()
    trainer.cached_text = trainer.catalogue.text_vectors().detach().float()
    trainer._step(examples[:16], accumulate=1, micro=0)
    assert torch.equal(trainer.model.id_embedding.weight.detach(), before)
    assert not torch.equal(trainer.model.text_proj.weight.detach(), head_before)  # the text path learnt


def test_the_unknown_item_vector_learns_only_where_items_are_dropped():
    still, examples, _ = tiny_trainer(id_dropout=0.0)
    assert not still.model.unknown_id.requires_grad
    learning, _, _ = tiny_trainer(id_dropout=0.5, weight_decay=0.0)
    learning.model.mark_chosen_items([[f"i{i}" for i in range(40)]])  # every row known: only drops use it
    learning.cached_text = learning.catalogue.text_vectors().detach().float()
    learning._step(examples[:16], accumulate=1, micro=0)
    assert learning.model.unknown_id.requires_grad and learning.model.unknown_id.detach().abs().sum() > 0
