"""Warm nights: a night that starts from the champion trains only on what is new since it.

The champion has already learnt every transition of the data it was trained on. A warm night
trains on the sequence windows that end in an event newer than the champion's data (with up to
``max_seq_len`` earlier items as their context), plus a sample of the earlier windows
(``replay_ratio`` times as many) so that the model does not drift towards the new windows alone,
for a few epochs at a reduced learning rate (``finetune.warm_nights``). It keeps the champion's
weights unless an epoch beats them on validation. By default it also
keeps the champion's LoRA adapters: the text tower is then not trained at all, every unchanged
item text keeps the champion's vector, and only new or edited texts go through the tower.
See docs/nights.md for what this saves, stage by stage.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipelines.config import FinetuneParams
    from pipelines.model.recommender import SequenceRecommender

log = logging.getLogger(__name__)


def cutoff_seconds(data_interval_end: str) -> int:
    """Unix seconds of the end of a model's data interval (ISO date or datetime; naive means UTC)."""
    moment = dt.datetime.fromisoformat(data_interval_end)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return int(moment.timestamp())


def split_windows(histories: Sequence[Sequence[str]], times: Sequence[Sequence[int]], cutoff_s: int,
                  max_len: int) -> tuple[list[list[str]], list[list[str]]]:
    """The training windows (cut from each history's end, as ``training_examples`` cuts them), split
    into those whose last item is an event at or after ``cutoff_s`` and the earlier ones. Histories
    are in time order, so a user's new events are the end of their history.

    Raises:
        ValueError: a history and its times differ in length.
    """
    new, old = [], []
    for history, stamps in zip(histories, times):
        if len(history) != len(stamps):
            raise ValueError(f"a training history has {len(history)} items but {len(stamps)} timestamps")
        first_new = next((i for i, t in enumerate(stamps) if t >= cutoff_s), len(stamps))
        end = len(history)
        while end >= 2:
            (new if end - 1 >= first_new else old).append(list(history[max(0, end - max_len - 1):end]))
            end -= max_len
    return new, old


def new_event_windows(histories: Sequence[Sequence[str]], times: Sequence[Sequence[int]], cutoff_s: int,
                      max_len: int) -> list[list[str]]:
    """The windows of ``split_windows`` that end in an event at or after ``cutoff_s``."""
    return split_windows(histories, times, cutoff_s, max_len)[0]


def replay_sample(windows: Sequence[list[str]], count: int, seed: int) -> list[list[str]]:
    """``count`` of the earlier ``windows`` (all where there are fewer), drawn reproducibly: trained
    beside the new ones, they keep a warm night from drifting towards the new windows alone."""
    if count >= len(windows):
        return list(windows)
    return random.Random(seed).sample(list(windows), count)


def warm_settings(settings: FinetuneParams) -> FinetuneParams:
    """The training settings of a warm night: ``warm_nights``' epochs, patience and scaled rates;
    with the text tower kept, no item text gets gradients."""
    warm = settings.warm_nights
    changes = {"epochs": warm.epochs, "patience": warm.patience,
               "learning_rate": settings.learning_rate * warm.learning_rate_scale,
               "lm_learning_rate": settings.lm_learning_rate * warm.learning_rate_scale}
    if not warm.train_text_tower:
        changes.update(lm_learning_rate=0.0, text_items_per_step=0)
    return settings.updated(**changes)


def freeze_text_tower(model: SequenceRecommender) -> None:
    """No gradient reaches the language model: its adapters stay the champion's."""
    for parameter in model.text.parameters():
        parameter.requires_grad_(False)
