"""Evaluation groups drawn inside interest groups: people who share a taste and choose together.

A night without explicit groups still judges group lists: for each size, groups of that many
users are drawn from one interest group at a time (an interest group is picked with probability
proportional to the number of such groups it can form), members without replacement.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def sample_groups(labels: np.ndarray, sizes: Sequence[int], per_size: int, seed: int) -> list[np.ndarray]:
    """Up to ``per_size`` groups per size, each an array of row indices into ``labels`` whose
    members share one label. Sizes no interest group is large enough for give no group."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    members = {label: np.flatnonzero(labels == label) for label in np.unique(labels)}
    groups: list[np.ndarray] = []
    for size in sizes:
        eligible = [label for label, rows in members.items() if len(rows) >= size]
        if not eligible or per_size == 0:
            continue
        weights = np.array([len(members[label]) for label in eligible], dtype=np.float64)
        picks = rng.choice(len(eligible), size=per_size, p=weights / weights.sum())
        groups += [np.sort(rng.choice(members[eligible[pick]], size=size, replace=False)) for pick in picks]
    return groups
