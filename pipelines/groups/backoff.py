"""Cold and long-tail users back off to their interest group.

A user with few interactions is served a blend of their own (standardised) scores and their
interest group's: ``w * z(own) + (1 - w) * z(group)`` with ``w = n / (n + c)``, ``n`` the user's
training interactions and ``c`` the backoff strength (chosen on validation; 0 turns backoff off).
A user with one interaction leans on the group. Users with more than ``max_interactions``
(``groups.backoff_max_interactions``) are served their own scores, unchanged: the blend is for
what the model does not know, and a warm user's own scores are what they are judged on. The
group's scores are the ``average`` strategy over its members (the mean of their standardised scores).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from pipelines.groups.aggregation import standardised


def backoff_weights(n_interactions: np.ndarray, strength: float, max_interactions: int | None = None
                    ) -> np.ndarray:
    """The weight of each user's own scores: ``n / (n + strength)``; 1 when ``strength`` is 0 and
    for users with more than ``max_interactions`` (None: no cap).

    Raises:
        ValueError: a negative strength.
    """
    if strength < 0:
        raise ValueError(f"backoff strength must be >= 0, got {strength}")
    n = np.asarray(n_interactions, dtype=np.float64)
    if strength == 0:
        return np.ones_like(n)
    weights = n / (n + strength)
    return weights if max_interactions is None else np.where(n > max_interactions, 1.0, weights)


def interest_group_scores(member_scores: np.ndarray, labels: np.ndarray, n_groups: int) -> np.ndarray:
    """(groups, items): the mean standardised scores of each group's members (zeros for an empty group)."""
    labels = np.asarray(labels, dtype=np.int64)
    membership = np.zeros((n_groups, len(labels)))
    membership[labels, np.arange(len(labels))] = 1.0
    sums = membership @ standardised(np.asarray(member_scores, dtype=np.float64))  # np.add.at is several times slower
    return sums / np.maximum(membership.sum(1), 1.0)[:, None]


def blend_with_group(own_scores: np.ndarray, group_scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Row-wise ``w * z(own) + (1 - w) * z(group)``; ``group_scores`` has one row per user (their group's)."""
    w = np.asarray(weights, dtype=np.float64)[:, None]
    return w * standardised(np.asarray(own_scores, dtype=np.float64)) + (1.0 - w) * standardised(
        np.asarray(group_scores, dtype=np.float64))


def choose_strength(strengths: Sequence[float], validation_metric: Callable[[float], float]) -> tuple[float, dict]:
    """The strength with the best validation metric (ties: the smaller, i.e. less backoff), and
    every strength's value."""
    if not strengths:
        raise ValueError("groups.backoff_strengths is empty; list at least 0 (no backoff)")
    values = {float(c): float(validation_metric(float(c))) for c in strengths}
    best = max(values, key=lambda c: (values[c], -c))
    return best, values
