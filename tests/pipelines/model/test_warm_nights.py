"""Warm nights train on the windows that end in events newer than the champion's data."""

from __future__ import annotations

import pytest

from pipelines.model.training import training_examples
from pipelines.model.warm import cutoff_seconds, new_event_windows, replay_sample, split_windows, warm_settings
from tests.conftest import shipped_params


def test_only_windows_ending_in_new_events_are_kept():
    histories = [list("abcdefgh"), list("xyz"), list("pq")]
    times = [[1, 2, 3, 4, 5, 6, 7, 8], [1, 2, 3], [9, 10]]
    windows = new_event_windows(histories, times, cutoff_s=7, max_len=3)
    # a's windows as training_examples cuts them: "efgh" (ends in h, new), "bcde" (ends in e, old): only the first;
    # xyz has nothing new; pq is new in full.
    assert windows == [list("efgh"), list("pq")]


def test_a_user_with_many_new_events_keeps_every_window_that_reaches_them():
    history = list("abcdefghij")
    windows = new_event_windows([history], [list(range(10))], cutoff_s=3, max_len=3)
    assert windows == [list("ghij"), list("defg"), list("abcd")]  # "abcd" ends in d (time 3): new


def test_windows_are_what_a_full_night_would_train_on_for_those_transitions():
    class Rows:  # the catalogue's rows_for, enough for training_examples
        def rows_for(self, windows, width):
            return [w for w in windows]

    history = list("abcdefghij")
    full = training_examples([history], Rows(), 3)
    assert new_event_windows([history], [list(range(10))], cutoff_s=0, max_len=3) == full


def test_the_earlier_windows_are_the_rest_of_a_full_nights_windows():
    histories = [list("abcdefgh"), list("xyz"), list("pq")]
    times = [[1, 2, 3, 4, 5, 6, 7, 8], [1, 2, 3], [9, 10]]
    new, old = split_windows(histories, times, cutoff_s=7, max_len=3)
    assert new == [list("efgh"), list("pq")]
    assert old == [list("bcde"), list("ab"), list("xyz")]


def test_replay_draws_the_same_sample_for_the_same_seed_and_all_when_asked_for_more():
    windows = [[str(i), str(i + 1)] for i in range(20)]
    sample = replay_sample(windows, 5, seed=42)
    assert len(sample) == 5 and all(w in windows for w in sample)
    assert replay_sample(windows, 5, seed=42) == sample and replay_sample(windows, 5, seed=7) != sample
    assert replay_sample(windows, 50, seed=42) == windows and replay_sample(windows, 0, seed=42) == []


def test_histories_and_times_must_agree():
    with pytest.raises(ValueError, match="3 items but 2 timestamps"):
        new_event_windows([list("abc")], [[1, 2]], cutoff_s=0, max_len=3)


def test_cutoff_reads_dates_and_datetimes_as_utc():
    assert cutoff_seconds("1970-01-02") == 86_400
    assert cutoff_seconds("1970-01-02T00:00:00+00:00") == 86_400


def test_warm_settings_scale_the_rates_and_keep_the_text_tower():
    settings = shipped_params().finetune
    warm = warm_settings(settings)
    assert warm.epochs == settings.warm_nights.epochs and warm.patience == settings.warm_nights.patience
    assert warm.learning_rate == pytest.approx(settings.learning_rate * settings.warm_nights.learning_rate_scale)
    if not settings.warm_nights.train_text_tower:
        assert (warm.lm_learning_rate, warm.text_items_per_step) == (0.0, 0)
