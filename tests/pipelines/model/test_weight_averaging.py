"""The run serves the mean of its best epochs' weights only where validation prefers it, and a
checkpoint carries the kept weights so that a resumed run averages the same epochs."""

from __future__ import annotations

import pytest
import torch

from pipelines.model import training
from pipelines.model.checkpoint import load_checkpoint, save_checkpoint, trainable_state
from pipelines.model.training import TrainResult, mean_weights
from tests.pipelines.model.test_lr_schedule import tiny_trainer


def shifted(state: dict[str, torch.Tensor], amount: float) -> dict[str, torch.Tensor]:
    """``state`` with every floating-point tensor moved by ``amount`` times a fixed random direction."""
    generator = torch.Generator().manual_seed(7)
    return {name: value + amount * torch.randn(value.shape, generator=generator) if value.is_floating_point()
            else value for name, value in state.items()}


def closeness_to(target: dict[str, torch.Tensor]):
    """A stand-in for validation: higher the nearer the model's trainable weights are to ``target``."""
    def score(model, *_args, **_kwargs) -> float:
        state = trainable_state(model)
        return -float(sum(((state[name].double() - value.double()) ** 2).sum()
                          for name, value in target.items() if value.is_floating_point()))
    return score


def trainer_with_kept_epochs(monkeypatch, target_of):
    """A trainer holding three kept epochs (5, 2, 8, best first) and a validation that prefers the
    weights ``target_of(kept)`` returns."""
    trainer, _, valid = tiny_trainer(average_best_epochs=3)
    start = trainable_state(trainer.model)
    kept = [shifted(start, 0.1), shifted(start, -0.3), shifted(start, 0.6)]
    validate = closeness_to(target_of(kept))
    monkeypatch.setattr(training, "validate", validate)
    trainer.model.load_state_dict(kept[0], strict=False)
    best_score = validate(trainer.model)
    trainer.top, trainer.state.top = kept, [[best_score, 5], [best_score - 1, 2], [best_score - 2, 8]]
    trainer.best, trainer.state.best_valid_ndcg, trainer.state.best_epoch = kept[0], best_score, 5
    return trainer, valid, kept


def test_a_mean_that_validates_higher_than_the_best_epoch_is_served(monkeypatch):
    trainer, valid, kept = trainer_with_kept_epochs(monkeypatch, mean_weights)
    result = TrainResult(best_valid_ndcg=trainer.state.best_valid_ndcg, best_epoch=5)
    trainer._serve_best_mean(valid, 10, result)
    served = trainable_state(trainer.model)
    expected = mean_weights(kept)
    assert result.averaged_epochs == [5, 2, 8]
    assert all(torch.allclose(served[name], expected[name]) for name in expected)
    assert result.best_valid_ndcg == result.averaging["mean"] > result.averaging["best epoch"]


def test_the_best_epoch_is_served_where_the_mean_does_not_beat_it(monkeypatch):
    trainer, valid, kept = trainer_with_kept_epochs(monkeypatch, lambda kept: kept[0])
    result = TrainResult(best_valid_ndcg=trainer.state.best_valid_ndcg, best_epoch=5)
    trainer._serve_best_mean(valid, 10, result)
    served = trainable_state(trainer.model)
    assert result.averaged_epochs == []
    assert all(torch.equal(served[name], kept[0][name]) for name in kept[0])
    assert result.best_valid_ndcg == result.averaging["best epoch"] > result.averaging["mean"]


def test_only_the_best_epochs_are_kept_best_first():
    trainer, _, _ = tiny_trainer(average_best_epochs=2)
    for epoch, ndcg in enumerate([0.10, 0.30, 0.20, 0.30], start=1):
        trainer._keep_if_among_best(ndcg, epoch)
    assert trainer.state.top == [[0.30, 2], [0.30, 4]]  # an equal later epoch stays behind the earlier one
    assert len(trainer.top) == 2


def test_averaging_off_keeps_no_copies_and_serves_the_best_epoch():
    trainer, examples, valid = tiny_trainer(epochs=3, patience=10, average_best_epochs=1)
    result = trainer.fit(examples, valid)
    assert trainer.top == [] and trainer.state.top == []
    assert result.averaged_epochs == [] and result.averaging == {}
    best = max(row["valid_ndcg"] for row in result.curve)
    assert result.best_valid_ndcg == best


def test_a_short_run_serves_the_mean_or_its_best_epoch_as_validation_says():
    trainer, examples, valid = tiny_trainer(epochs=4, patience=10, average_best_epochs=3, learning_rate=0.005)
    result = trainer.fit(examples, valid)
    assert len(trainer.state.top) == len(trainer.top) == 3
    assert set(result.averaging) == {"best epoch", "mean"}
    served = trainable_state(trainer.model)
    if result.averaged_epochs:
        expected = mean_weights(trainer.top)
        assert result.averaged_epochs == [epoch for _, epoch in trainer.state.top]
        assert result.best_valid_ndcg == result.averaging["mean"] > result.averaging["best epoch"]
    else:
        expected = trainer.best
        assert result.best_valid_ndcg == result.averaging["best epoch"] >= result.averaging["mean"]
    assert all(torch.allclose(served[name], expected[name]) for name in expected)
    assert result.best_valid_ndcg == pytest.approx(training.validate(trainer.model, trainer.catalogue, valid, 10,
                                                                     trainer.catalogue.text_vectors().float()))


def test_a_warm_start_counts_the_starting_weights_as_epoch_0():
    trainer, examples, valid = tiny_trainer(epochs=2, patience=10, average_best_epochs=5)
    start = trainable_state(trainer.model)
    trainer.fit(examples, valid, keep_start=True)
    epochs = [epoch for _, epoch in trainer.state.top]
    assert sorted(epochs) == [0, 1, 2]
    kept_start = trainer.top[epochs.index(0)]
    assert all(torch.equal(kept_start[name], start[name]) for name in start)


def test_a_checkpoint_carries_the_kept_weights_in_order(tmp_path):
    trainer, _, _ = tiny_trainer(average_best_epochs=3)
    start = trainable_state(trainer.model)
    kept = [shifted(start, 0.2), shifted(start, -0.5)]
    save_checkpoint(tmp_path, model=trainer.model, best=kept[0], optimizer=trainer.optimizer, tensors={},
                    state={"top": [[0.2, 3], [0.1, 1]]}, top=kept)
    found = load_checkpoint(tmp_path)
    assert len(found["top"]) == 2
    for loaded, original in zip(found["top"], kept):
        assert loaded.keys() == original.keys()
        assert all(torch.equal(loaded[name], original[name]) for name in original)
    save_checkpoint(tmp_path, model=trainer.model, best=kept[0], optimizer=trainer.optimizer, tensors={},
                    state={}, top=[])
    assert load_checkpoint(tmp_path)["top"] == []
