"""Distribution drift of one night against the night before it: small pure functions.

Each distance compares two nights' events and lies in a fixed range, so one threshold means the
same thing whatever the traffic. Empty input never raises: a distance between a night and an
empty one is undefined and comes back as None, which the validation suite reports as "skipped"
rather than as a number that looks like "no drift".

* ``total_variation``: event-type mix, half the L1 distance of the two shares, in [0, 1].
* ``jensen_shannon``: item popularity (and per-user activity), base-2 Jensen-Shannon divergence of
  the two count vectors after additive smoothing, in [0, 1]; 0 for identical shares, 1 for
  disjoint supports without smoothing.
* ``new_share``: the share of the night's distinct users (or items) that no earlier event in the
  extract mentions, in [0, 1].
* ``activity_histogram``: events per active user, binned by powers of two, the input of the
  per-user activity distance.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

# Events per user binned as 1, 2, 3-4, 5-8, ..., 257+: a bot or a broken client moves mass to
# the upper bins without the noise of one bin per count.
ACTIVITY_BIN_EDGES = (1, 2, 3, 5, 9, 17, 33, 65, 129, 257)


def _aligned_counts(current: pd.Series, previous: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """The value counts of both series over the union of their values, in one order."""
    a, b = current.value_counts(dropna=True), previous.value_counts(dropna=True)
    keys = a.index.union(b.index)
    return (a.reindex(keys, fill_value=0).to_numpy(dtype=float),
            b.reindex(keys, fill_value=0).to_numpy(dtype=float))


def total_variation(current: pd.Series, previous: pd.Series) -> float | None:
    """Total variation distance between the value shares of two series (e.g. event types).

    Returns:
        0.5 * sum |p - q| over the union of values, in [0, 1]: 0 for the same shares, 1 when no
        value occurs in both. None when either series has no non-null value.
    """
    p, q = _aligned_counts(current, previous)
    if p.sum() == 0 or q.sum() == 0:
        return None
    return float(0.5 * np.abs(p / p.sum() - q / q.sum()).sum())


def jensen_shannon(p_counts: Iterable[float], q_counts: Iterable[float], smoothing: float = 0.0) -> float | None:
    """Base-2 Jensen-Shannon divergence of two aligned count vectors.

    ``smoothing`` is added to every entry of both vectors first (additive smoothing): on a small
    night most items are seen once or not at all, and the pseudo-counts keep that sampling noise
    from reading as drift, while on a large night they weigh nothing.

    Returns:
        A value in [0, 1]: 0 for proportional vectors, 1 for disjoint supports (without
        smoothing). None when either vector sums to 0 before smoothing (an empty night).

    Raises:
        ValueError: vectors of different lengths, a negative count or a negative smoothing.
    """
    p, q = np.asarray(list(p_counts), dtype=float), np.asarray(list(q_counts), dtype=float)
    if p.shape != q.shape:
        raise ValueError(f"jensen_shannon: count vectors differ in length ({len(p)} vs {len(q)})")
    if smoothing < 0 or (p < 0).any() or (q < 0).any():
        raise ValueError("jensen_shannon: counts and smoothing must be >= 0")
    if p.sum() == 0 or q.sum() == 0:
        return None
    p, q = p + smoothing, q + smoothing
    p, q = p / p.sum(), q / q.sum()
    m = 0.5 * (p + q)

    def kl(x: np.ndarray) -> float:
        mask = x > 0  # 0 * log 0 = 0; m > 0 wherever x > 0
        return float((x[mask] * np.log2(x[mask] / m[mask])).sum())

    return float(min(max(0.5 * kl(p) + 0.5 * kl(q), 0.0), 1.0))  # clip float rounding


def popularity_divergence(current_items: pd.Series, previous_items: pd.Series, smoothing: float) -> float | None:
    """Jensen-Shannon divergence of two nights' item event counts (see ``jensen_shannon``)."""
    return jensen_shannon(*_aligned_counts(current_items, previous_items), smoothing=smoothing)


def activity_histogram(users: pd.Series) -> np.ndarray:
    """Active users per events-per-user bin (``ACTIVITY_BIN_EDGES``); all zeros for no events."""
    per_user = users.dropna().value_counts().to_numpy()
    bins = np.searchsorted(np.asarray(ACTIVITY_BIN_EDGES), per_user, side="right") - 1
    return np.bincount(bins, minlength=len(ACTIVITY_BIN_EDGES)).astype(float)


def activity_divergence(current_users: pd.Series, previous_users: pd.Series) -> float | None:
    """Jensen-Shannon divergence (no smoothing) of two nights' events-per-user histograms.

    Returns:
        A value in [0, 1]; None when either night has no events.
    """
    return jensen_shannon(activity_histogram(current_users), activity_histogram(previous_users))


def new_share(current: pd.Series, before: pd.Series) -> float | None:
    """Share of the distinct values of ``current`` that ``before`` never holds.

    Returns:
        A value in [0, 1] (1: every user or item of the night is new); None when ``current`` has
        no non-null value.
    """
    night = pd.Index(current.dropna().unique())
    if len(night) == 0:
        return None
    return float((~night.isin(before.dropna().unique())).sum() / len(night))


@dataclass(frozen=True)
class NightDrift:
    """The night's distances to the night before it (None where one side is empty).

    Attributes:
        rows, previous_rows: events in the night and in the night before it.
        history_nights: whole intervals of data before the night (how far "new" looks back).
        event_mix_tv: ``total_variation`` of event types.
        popularity_js: ``popularity_divergence`` of item counts.
        activity_js: ``activity_divergence`` of events per user.
        new_user_share, new_item_share: ``new_share`` of users and items against all earlier events.
    """

    rows: int
    previous_rows: int
    history_nights: int
    event_mix_tv: float | None
    popularity_js: float | None
    activity_js: float | None
    new_user_share: float | None
    new_item_share: float | None

    def as_dict(self) -> dict[str, Any]:
        return {key: round(value, 4) if isinstance(value, float) else value
                for key, value in asdict(self).items()}


def night_drift(night: pd.DataFrame, previous: pd.DataFrame, before: pd.DataFrame, *,
                history_nights: int, smoothing: float) -> NightDrift:
    """Every distance of ``night`` to ``previous``; ``before`` is everything earlier than the night.

    Each frame needs the columns event_type, item_id and user_id.
    """
    return NightDrift(
        rows=len(night), previous_rows=len(previous), history_nights=history_nights,
        event_mix_tv=total_variation(night["event_type"], previous["event_type"]),
        popularity_js=popularity_divergence(night["item_id"], previous["item_id"], smoothing),
        activity_js=activity_divergence(night["user_id"], previous["user_id"]),
        new_user_share=new_share(night["user_id"], before["user_id"]),
        new_item_share=new_share(night["item_id"], before["item_id"]))
