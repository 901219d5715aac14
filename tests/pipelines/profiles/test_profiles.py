"""Leave-last-out split by timestamp with ties in the source's row order."""

import pandas as pd
import pytest

from pipelines.profiles.build import build_profiles, split_sequences
from tests.conftest import shipped_params

T = pd.Timestamp("2026-01-01")


def frame(rows):
    return pd.DataFrame(rows, columns=["event_id", "user_id", "item_id", "event_type", "rating", "ts"])


def test_last_is_test_second_last_is_valid():
    events = frame([
        (3, "u1", "c", "view", None, T + pd.Timedelta(hours=3)),
        (1, "u1", "a", "view", None, T + pd.Timedelta(hours=1)),
        (2, "u1", "b", "view", None, T + pd.Timedelta(hours=2)),
        (4, "u1", "d", "view", None, T + pd.Timedelta(hours=4)),
    ])
    row = split_sequences(events, 3).iloc[0]
    assert (list(row.train_items), row.valid_item, row.test_item) == (["a", "b"], "c", "d")
    start = int(T.timestamp())  # naive times are UTC
    assert list(row.train_ts) == [start + 3600, start + 7200]  # each training item's time, for warm nights
    assert (row.valid_ts, row.test_ts) == (start + 3 * 3600, start + 4 * 3600)  # for the recency prior


def test_a_user_under_the_minimum_has_no_held_out_times():
    events = frame([(1, "u1", "a", "view", None, T), (2, "u1", "b", "view", None, T + pd.Timedelta(hours=1))])
    row = split_sequences(events, 3).iloc[0]
    assert pd.isna(row.valid_ts) and pd.isna(row.test_ts)


def test_timestamp_ties_keep_source_order():
    events = frame([
        (2, "u1", "y", "view", None, T),
        (1, "u1", "x", "view", None, T),
        (3, "u1", "z", "view", None, T),
    ])
    row = split_sequences(events, 3).iloc[0]
    assert (list(row.train_items), row.valid_item, row.test_item) == (["x"], "y", "z")


def test_short_users_keep_everything_for_training():
    events = frame([(1, "u2", "a", "view", None, T), (2, "u2", "b", "view", None, T)])
    row = split_sequences(events, 3).iloc[0]
    assert list(row.train_items) == ["a", "b"] and row.valid_item is None and row.test_item is None


def test_minimum_below_three_is_rejected():
    with pytest.raises(ValueError, match="min_user_interactions"):
        split_sequences(frame([]), 2)


def test_profiles_texts_and_counts():
    events = frame([(i, "u1", item, "view", None, T + pd.Timedelta(hours=i)) for i, item in enumerate("abcd", 1)])
    items = pd.DataFrame({"item_id": list("abcde"), "title": ["A", "B", "C", "D", "E"],
                          "categories": ["x|y"] * 5, "description": ["d"] * 5, "created_at": [None] * 5})
    users = pd.DataFrame({"user_id": ["u1"], "attributes": ["age 30"], "created_at": [None]})
    profiles = build_profiles(events, items, users, shipped_params().profiles.updated(
        min_user_interactions=3, max_text_chars=100, profile_items=2))
    assert profiles.items.set_index("item_id").loc["a", "text"] == "A. x, y. d"
    assert profiles.items.set_index("item_id")["train_count"].to_dict() == {"a": 1, "b": 1, "c": 0, "d": 0, "e": 0}
    assert profiles.users.iloc[0].profile_text == "age 30. Recently: A; B"
    assert profiles.users.iloc[0].n_interactions == 4
