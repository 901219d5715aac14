"""The learning-rate schedule: a warm-up, then a decay that ends where the run is expected to end."""

from __future__ import annotations

import math
import typing

import pytest
import torch

from pipelines.config import FinetuneParams, ParamsError, parse_params
from pipelines.ranking.scoring import validation_set
from pipelines.model.recommender import Catalogue, RecommenderConfig, SequenceRecommender
from pipelines.profiles.build import split_sequences
from pipelines.model.training import LR_SCHEDULES, Runtime, Trainer, lr_factor, training_examples
from tests.conftest import shipped_params
from tests.pipelines.model.test_model_training import N_ITEMS, chain_sequences


def test_warm_up_rises_linearly_to_the_base_rate():
    assert [lr_factor(step, 100, 4, "linear") for step in range(4)] == [0.25, 0.5, 0.75, 1.0]


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_decay_falls_steadily_to_the_floor_at_the_planned_end(schedule):
    factors = [lr_factor(step, 100, 10, schedule, floor=0.05) for step in range(10, 121)]
    assert factors[0] == pytest.approx(1.0)
    assert all(later <= earlier for earlier, later in zip(factors, factors[1:]))
    assert factors[90] == pytest.approx(0.05)  # step 100, the planned end
    assert factors[-1] == pytest.approx(0.05)  # past the plan (a budget estimate can fall short) it stays there
    assert lr_factor(55, 100, 10, schedule) == pytest.approx(0.525, abs=0.01)  # half-way: half-way between 1 and floor


def test_warm_up_takes_at_most_a_tenth_of_a_short_run():
    assert lr_factor(0, 20, 50, "linear") == 0.5  # two warm-up steps, not fifty
    assert lr_factor(2, 20, 50, "linear") == pytest.approx(1.0)
    assert lr_factor(0, 9, 50, "constant") == 1.0  # under ten steps: no warm-up at all


def test_constant_schedule_keeps_the_base_rate():
    assert {lr_factor(step, 50, 0, "constant") for step in range(80)} == {1.0}


def test_an_unknown_schedule_is_named_before_training_starts():
    with pytest.raises(ValueError, match="finetune.lr_schedule='step'"):
        lr_factor(0, 10, 0, "step")
    params = shipped_params().as_dict()
    params["finetune"]["lr_schedule"] = "step"
    with pytest.raises(ParamsError, match="finetune.lr_schedule: Input should be 'constant', 'linear' or 'cosine'"):
        parse_params(params)  # when params.yaml is loaded, before any stage starts


def test_the_typed_params_allow_exactly_the_schedules_the_trainer_knows():
    assert set(typing.get_args(FinetuneParams.model_fields["lr_schedule"].annotation)) == set(LR_SCHEDULES)


def tiny_trainer(**overrides) -> tuple[Trainer, torch.Tensor, object]:
    params = shipped_params().finetune.updated(batch_size=16, max_seq_len=10, checkpoint_every_steps=0, **overrides)
    item_ids = [f"i{i}" for i in range(N_ITEMS)]
    sequences = split_sequences(chain_sequences(), 3)
    torch.manual_seed(0)
    model = SequenceRecommender(RecommenderConfig.from_params(params, item_ids))
    catalogue = Catalogue(model, item_ids, [f"Item number {i}" for i in range(N_ITEMS)])
    examples = training_examples(list(sequences["train_items"]), catalogue, model.config.max_seq_len)
    return Trainer(model, catalogue, params, Runtime(torch.device("cpu"))), examples, validation_set(sequences)


def test_a_run_bounded_by_epochs_ends_on_the_floor_rate():
    trainer, examples, valid = tiny_trainer(epochs=8, patience=10, lr_schedule="linear", warmup_steps=2)
    result = trainer.fit(examples, valid)
    assert trainer.state.planned_steps == result.steps == 8 * math.ceil(len(examples) / 16)
    base = trainer.base_lrs
    # The last optimizer step ran at step planned - 1: one step short of the floor.
    expected = lr_factor(result.steps - 1, result.steps, 2, "linear")
    assert [group["lr"] for group in trainer.optimizer.param_groups] == pytest.approx([b * expected for b in base])
    assert expected < 0.1


def test_a_wall_clock_budget_plans_the_steps_it_leaves_room_for():
    trainer, _, _ = tiny_trainer(epochs=100, lr_schedule="linear")
    trainer.state.steps, trainer.state.elapsed_s = 40, 20.0  # 0.5 s a step so far
    trainer._plan(max_steps=1000, budget_s=60.0)
    assert trainer.state.planned_steps == 40 + 80  # 40 s left at 0.5 s a step
    trainer._plan(max_steps=100, budget_s=60.0)
    assert trainer.state.planned_steps == 100  # max_steps ends the run first
