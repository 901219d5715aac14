"""Profiles: leave-last-out split, user sequences, user text profiles and item texts.

The split follows the protocol of published sequential-recommendation results: per user, the
last interaction (by timestamp, ties in the source's row order) is the test target, the second
to last the validation target, and the rest is training history.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from pipelines.config import ProfilesParams


@dataclass(frozen=True)
class Profiles:
    """Everything later stages need, as plain DataFrames."""

    sequences: pd.DataFrame   # user_id, train_items (list[str]), valid_item, test_item
    items: pd.DataFrame       # item_id, text, train_count
    users: pd.DataFrame       # user_id, profile_text, n_interactions


def order_events(interactions: pd.DataFrame) -> pd.DataFrame:
    """Events sorted per user by time, ties kept in the source's row order (event_id)."""
    return interactions.sort_values(["user_id", "ts", "event_id"], kind="stable")


def split_sequences(interactions: pd.DataFrame, min_user_interactions: int) -> pd.DataFrame:
    """Leave-last-out per user. Users under the minimum keep everything as training history."""
    if min_user_interactions < 3:
        raise ValueError("profiles.min_user_interactions must be >= 3 (train, valid and test)")
    grouped = order_events(interactions).groupby("user_id", sort=True)["item_id"].agg(list)
    rows = []
    for user_id, items in grouped.items():
        if len(items) >= min_user_interactions:
            rows.append((user_id, items[:-2], items[-2], items[-1]))
        else:
            rows.append((user_id, items, None, None))
    return pd.DataFrame(rows, columns=["user_id", "train_items", "valid_item", "test_item"])


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
    """Reads what ``build_profiles`` wrote (lists come back as Python lists)."""
    from pathlib import Path

    directory = Path(directory)
    sequences = pd.read_parquet(directory / "sequences.parquet")
    sequences["train_items"] = sequences["train_items"].map(list)
    return Profiles(sequences=sequences, items=pd.read_parquet(directory / "items.parquet"),
                    users=pd.read_parquet(directory / "users.parquet"))
