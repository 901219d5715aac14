"""Profiles: leave-last-out split, user sequences, user text profiles and item texts.

The split follows the protocol of published sequential-recommendation results: per user, the
last interaction (by timestamp, ties in the source's row order) is the test target, the second
to last the validation target, and the rest is training history. Explicit groups (where the
extract has the group tables) are split the same way over the group's own events.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from pipelines.config import ProfilesParams


GROUP_COLUMNS = ("group_id", "members", "train_items", "valid_item", "test_item")


def empty_groups() -> pd.DataFrame:
    """The groups frame of an extract without group tables: no rows, the same columns."""
    return pd.DataFrame({name: pd.Series(dtype=object) for name in GROUP_COLUMNS})


@dataclass(frozen=True)
class Profiles:
    """Everything later stages need, as plain DataFrames."""

    # user_id, train_items (list[str]), valid_item, test_item, train_ts (list[int]), valid_ts, test_ts
    sequences: pd.DataFrame
    items: pd.DataFrame       # item_id, text, train_count
    users: pd.DataFrame       # user_id, profile_text, n_interactions
    # group_id, members (list[str], current), train_items (list[str]), valid_item, test_item; empty
    # when the extract has no group tables
    groups: pd.DataFrame = field(default_factory=empty_groups)


def order_events(interactions: pd.DataFrame) -> pd.DataFrame:
    """Events sorted per user by time, ties kept in the source's row order (event_id)."""
    return interactions.sort_values(["user_id", "ts", "event_id"], kind="stable")


def split_sequences(interactions: pd.DataFrame, min_user_interactions: int) -> pd.DataFrame:
    """Leave-last-out per user. Users under the minimum keep everything as training history.

    ``train_ts`` holds each training item's time (unix seconds): a warm night trains only on
    what is newer than its champion's data (``pipelines.model.warm``). ``valid_ts`` and ``test_ts``
    are the held-out items' times: the recency prior counts what came before them
    (``pipelines.ranking.recency``)."""
    ordered = order_events(interactions)
    seconds = pd.Series(unix_seconds(ordered["ts"]), index=ordered.index)
    grouped = ordered.assign(seconds=seconds).groupby("user_id", sort=True)
    items, times = grouped["item_id"].agg(list), grouped["seconds"].agg(list)
    frame = pd.DataFrame(_leave_last_out(items.items(), min_user_interactions),
                         columns=["user_id", "train_items", "valid_item", "test_item"])
    frame["train_ts"] = [stamps[:len(train)] for stamps, train in zip(times, frame["train_items"])]
    held_out = frame["valid_item"].notna()
    for offset, name in ((0, "valid_ts"), (1, "test_ts")):
        frame[name] = pd.array([stamps[len(train) + offset] if kept else None for stamps, train, kept
                                in zip(times, frame["train_items"], held_out)], dtype="Int64")
    return frame


def unix_seconds(timestamps: pd.Series) -> np.ndarray:
    """Whole unix seconds of event times (naive times are UTC)."""
    moments = pd.to_datetime(timestamps, utc=True)
    return ((moments - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).to_numpy(dtype="int64")


def _leave_last_out(histories: Iterable[tuple[Any, list[str]]],
                    minimum: int) -> list[tuple[Any, list[str], Any, Any]]:
    """Per (key, items in time order): the last item is the test target, the second to last the
    validation target; under ``minimum`` items everything is training history."""
    if minimum < 3:
        raise ValueError("profiles.min_user_interactions must be >= 3 (train, valid and test)")
    return [(key, items[:-2], items[-2], items[-1]) if len(items) >= minimum else (key, items, None, None)
            for key, items in histories]


def current_members(members: pd.DataFrame, interval_end: dt.datetime) -> pd.Series:
    """Per group, its members at the interval's end (left_at null or later), sorted, each once."""
    staying = members[members["left_at"].isna() | (members["left_at"] > pd.Timestamp(interval_end))]
    return staying.groupby("group_id", sort=True)["user_id"].agg(lambda users: sorted(set(users)))


def build_groups(members: pd.DataFrame, events: pd.DataFrame, interval_end: dt.datetime,
                 min_interactions: int) -> pd.DataFrame:
    """One row per group of ``GROUP_COLUMNS``: its current members and its events split leave-last-out
    like a user's (``profiles.min_user_interactions`` as the minimum).

    A group's events are in time order, ties by item_id then event_type (group events have no
    event_id). Every group of group_members or group_events has a row, sorted by group_id.
    """
    ordered = events.sort_values(["group_id", "ts", "item_id", "event_type"], kind="stable")
    histories = ordered.groupby("group_id", sort=True)["item_id"].agg(list)
    group_ids = sorted(set(members["group_id"]) | set(events["group_id"]))
    split = _leave_last_out(((group_id, histories.get(group_id, [])) for group_id in group_ids), min_interactions)
    if not split:
        return empty_groups()
    frame = pd.DataFrame(split, columns=["group_id", "train_items", "valid_item", "test_item"])
    present = current_members(members, interval_end)
    frame.insert(1, "members", [present.get(group_id, []) for group_id in frame["group_id"]])
    return frame[list(GROUP_COLUMNS)]


def item_texts(items: pd.DataFrame, max_chars: int) -> pd.Series:
    """The text the language model reads for an item: title, categories, description."""
    categories = items["categories"].fillna("").str.replace("|", ", ", regex=False)
    text = items["title"].fillna("") + ". " + categories + ". " + items["description"].fillna("")
    return text.str.strip(" .").str.slice(0, max_chars)


def user_texts(users: pd.DataFrame, sequences: pd.DataFrame, titles: dict[str, str],
               recent: int, max_chars: int) -> pd.Series:
    """A user's text profile: their attributes and the titles of their latest training items."""
    attributes = users.set_index("user_id")["attributes"].fillna("")
    texts = []
    for user_id, history in zip(sequences["user_id"], sequences["train_items"]):
        recent_titles = "; ".join(titles.get(item, item) for item in history[-recent:])
        texts.append(f"{attributes.get(user_id, '')}. Recently: {recent_titles}".strip(" .")[:max_chars])
    return pd.Series(texts, index=sequences.index)


def build_profiles(interactions: pd.DataFrame, items: pd.DataFrame, users: pd.DataFrame,
                   params: ProfilesParams) -> Profiles:
    sequences = split_sequences(interactions, params.min_user_interactions)
    max_chars = params.max_text_chars
    train_counts = pd.Series(
        np.concatenate([np.asarray(h, dtype=object) for h in sequences["train_items"]] or [np.empty(0, object)])
    ).value_counts()
    item_frame = pd.DataFrame({
        "item_id": items["item_id"].to_numpy(),
        "text": item_texts(items, max_chars).to_numpy(),
        "train_count": items["item_id"].map(train_counts).fillna(0).astype("int64").to_numpy(),
        # What an interest group's profile reads (publish): the title and the '|'-separated categories.
        "title": items["title"].fillna("").to_numpy(),
        "categories": items["categories"].fillna("").to_numpy(),
    })
    titles = dict(zip(items["item_id"], items["title"]))
    user_frame = pd.DataFrame({
        "user_id": sequences["user_id"],
        "profile_text": user_texts(users, sequences, titles, params.profile_items, max_chars),
        "n_interactions": sequences["train_items"].map(len)
        + sequences["valid_item"].notna().astype(int) + sequences["test_item"].notna().astype(int),
    })
    return Profiles(sequences=sequences, items=item_frame, users=user_frame)


def load_profiles(directory) -> Profiles:
    """Reads what the profiles stage wrote (lists come back as Python lists); ``groups`` is empty
    where it wrote no ``groups.parquet`` (an extract without group tables)."""
    from pathlib import Path

    directory = Path(directory)
    sequences = pd.read_parquet(directory / "sequences.parquet")
    sequences["train_items"] = sequences["train_items"].map(list)
    if "train_ts" in sequences:  # profiles written before it was recorded have none
        sequences["train_ts"] = sequences["train_ts"].map(list)
    groups = empty_groups()
    if (directory / "groups.parquet").is_file():
        groups = pd.read_parquet(directory / "groups.parquet")
        for name in ("members", "train_items"):
            groups[name] = groups[name].map(list)
    return Profiles(sequences=sequences, items=pd.read_parquet(directory / "items.parquet"),
                    users=pd.read_parquet(directory / "users.parquet"), groups=groups)
