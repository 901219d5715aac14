"""One ranking for a group from its members' scores over the catalogue.

The strategies are the social-choice rules of the group-recommendation literature (Masthoff,
"Group Recommender Systems", 2015) and one fairness-aware list builder:

- ``average``: the mean of the members' scores (every member counts equally);
- ``least_misery``: the lowest member score (no member is left with an item they dislike);
- ``most_pleasure``: the highest member score (someone loves it);
- ``borda``: the sum of each member's Borda points (an item's place in the member's ranking);
- ``gfar``: Kaya, Bridge and Tintarev (RecSys 2020): a member's relevance probability for an item
  is its Borda share within the member's top ``relevant_items``; the list is built greedily, each
  step taking the item most likely to be the first relevant one for the members not yet served.

Model scores of different members are not on one scale (a heavy user's logits spread wider), so
the score-based rules standardise each member's scores first; Borda and GFAR use ranks only.
Every function returns one score per item (higher is better, excluded items ``-inf``), so a group
is ranked over the full catalogue with the same pessimistic-tie code as a user.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.stats import rankdata

STRATEGIES = ("average", "least_misery", "most_pleasure", "borda", "gfar")


def group_scores(member_scores: np.ndarray, strategy: str, *, k: int, relevant_items: int = 20,
                 exclude: np.ndarray | None = None) -> np.ndarray:
    """The group's score for every item.

    Args:
        member_scores: (members, items) scores of one model, higher is better.
        strategy: one of ``STRATEGIES``.
        k: the list length; only ``gfar`` uses it (it builds a list of ``k``, then ranks the rest
            by their summed relevance probability).
        relevant_items: ``gfar``'s top-N per member that can be relevant (the paper's 20).
        exclude: item columns never recommended (the group's history), boolean (items,) or indices.

    Raises:
        ValueError: an unknown strategy, or no member.
    """
    scores = np.asarray(member_scores, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[0] == 0:
        raise ValueError(f"member_scores must be (members, items) with at least one member, got {scores.shape}")
    available = _available(scores.shape[1], exclude)
    if strategy == "gfar":
        return gfar_scores(scores, k, relevant_items, available)
    if strategy not in REDUCTIONS:
        raise ValueError(f"unknown group strategy {strategy!r}; known: {', '.join(STRATEGIES)}")
    return np.where(available, REDUCTIONS[strategy](scores), -np.inf)


def standardised(scores: np.ndarray) -> np.ndarray:
    """Each member's scores with mean 0 and standard deviation 1 (a constant row becomes zeros)."""
    spread = scores.std(axis=1, keepdims=True)
    return (scores - scores.mean(axis=1, keepdims=True)) / np.where(spread > 0, spread, 1.0)


def borda_points(scores: np.ndarray) -> np.ndarray:
    """Per member, an item's points: how many items it beats (ties share the lower count)."""
    return rankdata(scores, method="min", axis=1) - 1.0


REDUCTIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "average": lambda s: standardised(s).mean(axis=0),
    "least_misery": lambda s: standardised(s).min(axis=0),
    "most_pleasure": lambda s: standardised(s).max(axis=0),
    "borda": lambda s: borda_points(s).sum(axis=0),
}


def relevance_probabilities(scores: np.ndarray, relevant_items: int, available: np.ndarray) -> np.ndarray:
    """GFAR's p(relevant | member, item): Borda points within the member's top ``relevant_items``
    available items (ties share the higher count), normalised to sum to 1 per member."""
    members, items = scores.shape
    top_n = min(relevant_items, int(available.sum()))
    probabilities = np.zeros((members, items))
    if top_n == 0:
        return probabilities
    masked = np.where(available, scores, -np.inf)
    top = np.argsort(-masked, axis=1, kind="stable")[:, :top_n]
    points = rankdata(np.take_along_axis(masked, top, axis=1), method="max", axis=1) - 1.0
    totals = points.sum(axis=1, keepdims=True)
    np.put_along_axis(probabilities, top, np.divide(points, totals, out=np.zeros_like(points), where=totals > 0),
                      axis=1)
    return probabilities


def gfar_scores(scores: np.ndarray, k: int, relevant_items: int, available: np.ndarray) -> np.ndarray:
    """GFAR's greedy list of ``k`` on top (first pick highest), then every other available item by
    its summed relevance probability; excluded items ``-inf``."""
    relevance = relevance_probabilities(scores, relevant_items, available)
    members = scores.shape[0]
    unserved = np.ones(members)  # per member, the probability that no item picked so far is relevant
    open_items = available.copy()
    group = np.where(available, relevance.sum(axis=0), -np.inf)  # <= members: below every pick
    for position in range(min(k, int(available.sum()))):
        gain = np.where(open_items, unserved @ relevance, -np.inf)
        pick = int(np.argmax(gain))
        group[pick] = members + 1.0 + (k - position)
        open_items[pick] = False
        unserved = unserved * (1.0 - relevance[:, pick])
    return group


def _available(items: int, exclude: np.ndarray | None) -> np.ndarray:
    available = np.ones(items, dtype=bool)
    if exclude is not None:
        exclude = np.asarray(exclude)
        if exclude.dtype == bool:
            available &= ~exclude
        else:
            available[exclude.astype(np.int64)] = False
    return available


GROUP_MODEL = "group_model"  # explicit groups only: they have a history of their own


def group_model_scores(own_scores: np.ndarray, member_scores: np.ndarray, *, exclude: np.ndarray | None = None,
                       item_part: np.ndarray | None = None) -> np.ndarray:
    """A group with its own history: the model's standardised scores for that history (what the
    group chose together) plus the ``average`` of its members' scores, plus ``item_part`` (the
    weighted item-item scores of the whole history, ``pipelines.groups.item_model``) where given;
    excluded items ``-inf``."""
    own = standardised(np.asarray(own_scores, dtype=np.float64)[None, :])[0]
    scores = own + group_scores(member_scores, "average", k=1, exclude=exclude)
    return scores if item_part is None else scores + item_part
