"""Incremental publish: rescore only the users whose list can have changed, when that is exact.

A user's list is a function of the model, the catalogue (item ids and texts), ``publish.k`` and the
user's own history, unless the user backs off to an interest group (whose average changes with
everyone). So when tonight serves the very model of the previous publish (the same weights: a warm
night that kept the champion's weights is a new version of the same model) over the same catalogue
and ``k`` (a night whose candidate was refused, or a rerun), every user whose history is unchanged
and who does not back off keeps the previous night's rows; everyone else is scored again. In
every other case (a new champion, a changed catalogue, no previous lists) it falls back to a full
rescore and says why. The previous lists are the previous publish's ``user_lists.parquet``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

USER_LISTS_FILE = "user_lists.parquet"


# Files of a model artifact that describe it without entering its scores (the card, the manifest).
DESCRIPTIVE_FILES = frozenset({"README.md", "manifest.json"})


def model_digest(model_dir: Path) -> str:
    """A digest of every file of the artifact that serving reads: two versions with the same weights
    (their cards and manifests differ) have the same digest."""
    from pipelines.core.io import sha256_file

    root = Path(model_dir)
    files = sorted(path for path in root.rglob("*") if path.is_file() and path.relative_to(root).as_posix()
                   not in DESCRIPTIVE_FILES)
    listing = [(path.relative_to(root).as_posix(), sha256_file(path)) for path in files]
    return hashlib.sha256(json.dumps(listing).encode()).hexdigest()


def serving_basis(model_sha256: str, item_ids: Sequence[str], texts: Sequence[str], k: int,
                  recency: Mapping[str, Any] | None = None) -> str:
    """What every user's list depends on besides their own history (``model_sha256``: ``model_digest``;
    ``recency``: the recency prior and the day it counts to, when it is on: every night's counts differ)."""
    basis: dict[str, Any] = {"model": model_sha256, "items": list(item_ids), "texts": list(texts), "k": k}
    if recency:
        basis["recency"] = dict(recency)
    return hashlib.sha256(json.dumps(basis).encode()).hexdigest()


def history_hashes(histories: Sequence[Sequence[str]]) -> list[str]:
    return [hashlib.sha256("\x1f".join(h).encode()).hexdigest()[:32] for h in histories]


@dataclass(frozen=True)
class Reuse:
    """The previous night's rows kept (``kept``, users in ``kept_users``) and why, or why not."""

    kept: pd.DataFrame
    kept_users: set[str]
    reason: str


def previous_lists(publish_dir: Path, basis: str) -> tuple[pd.DataFrame | None, str]:
    """The previous publish's lists if they were made on ``basis``, else None and why not."""
    path = Path(publish_dir) / USER_LISTS_FILE
    summary = Path(publish_dir) / "summary.json"
    if not path.is_file() or not summary.is_file():
        return None, "full rescore: no previous lists"
    if json.loads(summary.read_text()).get("serving_basis") != basis:
        return None, ("full rescore: the model, the catalogue, publish.k or the recency prior changed since the "
                      "previous publish")
    return pd.read_parquet(path), ""


def reusable(previous: pd.DataFrame | None, why_not: str, user_ids: Sequence[str], hashes: Sequence[str],
             backs_off: np.ndarray) -> Reuse:
    """The previous rows of users whose history is unchanged and who do not back off."""
    empty = pd.DataFrame(columns=["user_id", "rank", "item_id", "score"])
    if previous is None:
        return Reuse(empty, set(), why_not)
    before = dict(zip(previous["user_id"], previous["history_hash"]))
    kept_users = {user for user, digest, backoff in zip(user_ids, hashes, backs_off)
                  if not backoff and before.get(user) == digest}
    kept = previous[previous["user_id"].isin(kept_users)][["user_id", "rank", "item_id", "score"]]
    reason = (f"incremental: {len(kept_users)} of {len(user_ids)} users unchanged under the same model kept "
              f"their lists; {len(user_ids) - len(kept_users)} rescored")
    return Reuse(kept.reset_index(drop=True), kept_users, reason)


def lists_with_hashes(recs: pd.DataFrame, user_ids: Sequence[str], hashes: Sequence[str]) -> pd.DataFrame:
    """The lists to keep for the next night: each row with its user's history hash."""
    digest = dict(zip(user_ids, hashes))
    return recs.assign(history_hash=recs["user_id"].map(digest))
