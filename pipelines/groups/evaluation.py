"""Group recommendation judged with the care of the user metrics: the full catalogue ranked, the
group's own history excluded, ties counted against the target.

Two protocols:

- **a group's own choice** (explicit groups with group events): one case per (group, held-out
  item); the item's rank in the group's ranking gives NDCG@k and HR@k;
- **member-level relevance** (groups built from individual users, Kaya et al., RecSys 2020): the
  group gets one ranking, and each member's held-out item is relevant to it; per group, the mean
  of the members' NDCG@k (mean-member) and the lowest (least-satisfied member).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from pipelines.ranking.metrics import column_mask, ndcg_per_case


def target_ranks(scores: np.ndarray, targets: Sequence[int], excluded: Sequence[Iterable[int]]) -> np.ndarray:
    """Pessimistic 0-based rank of each row's target column among the columns not excluded.

    Args:
        scores: (cases, items), higher is better; a group with several held-out items is one row each.
        targets: the relevant column of each row (never excluded, even when also in its history).
        excluded: per row, the columns taken out of the ranking (the group's history).
    """
    if len(targets) != len(scores):
        raise ValueError(f"{len(targets)} targets for {len(scores)} rows of scores")
    if not len(targets):
        return np.empty(0, dtype=np.int64)
    # With one relevant column the rank is a count (what ranks_from_scores' sort gives, in linear
    # time): the other columns still in the ranking that score at least as high.
    scores = np.asarray(scores, dtype=np.float64)
    rows = np.arange(len(scores))
    columns = np.asarray(targets, dtype=np.int64)
    at_least = scores >= scores[rows, columns][:, None]
    at_least &= ~column_mask(excluded, scores.shape)
    at_least[rows, columns] = False
    return at_least.sum(axis=1).astype(np.int64)


ndcg_at_k = ndcg_per_case  # per case, NDCG@k of one relevant item at 0-based ranks


def hit_at_k(ranks: np.ndarray, k: int) -> np.ndarray:
    """Per case, 1.0 when the relevant item is in the top k, else 0.0. Range {0, 1}."""
    return (np.asarray(ranks) < k).astype(np.float64)


def member_satisfaction(group_scores: np.ndarray, member_targets: Sequence[int], excluded: Iterable[int],
                        k: int) -> tuple[float, float]:
    """One group's (mean-member, least-satisfied-member) NDCG@k: its one ranking ``group_scores``
    (items,), each member's held-out column, the group's excluded columns. Both in [0, 1].

    Raises:
        ValueError: a group without members.
    """
    if not len(member_targets):
        raise ValueError("a group needs at least one member with a held-out item")
    excluded = list(excluded)
    rows = np.repeat(np.asarray(group_scores, dtype=np.float64)[None, :], len(member_targets), axis=0)
    per_member = ndcg_at_k(target_ranks(rows, member_targets, [excluded] * len(member_targets)), k)
    return float(per_member.mean()), float(per_member.min())



def groups_member_ranks(group_scores: np.ndarray, member_targets: Sequence[Sequence[int]],
                        excluded: Sequence[Iterable[int]], chunk: int = 256) -> np.ndarray:
    """Pessimistic 0-based rank of every member's held-out column in its group's one ranking
    (``target_ranks`` of row ``g`` of ``group_scores`` for each of ``member_targets[g]``, with
    ``excluded[g]`` taken out), flat: groups in order, each group's members in order; ``chunk``
    groups are ranked per call.

    Raises:
        ValueError: a group without members, or lengths that differ.
    """
    scores = np.asarray(group_scores, dtype=np.float64)
    if not len(member_targets) == len(excluded) == len(scores):
        raise ValueError(f"{len(scores)} groups of scores, {len(member_targets)} of targets, {len(excluded)} excluded")
    if any(not len(targets) for targets in member_targets):
        raise ValueError("a group needs at least one member with a held-out item")
    parts = []
    for start in range(0, len(scores), chunk):
        groups = range(start, min(start + chunk, len(scores)))
        rows = np.repeat(np.arange(groups.start, groups.stop), [len(member_targets[g]) for g in groups])
        excluded_rows = {g: list(excluded[g]) for g in groups}
        parts.append(target_ranks(scores[rows], [int(t) for g in groups for t in member_targets[g]],
                                  [excluded_rows[g] for g in rows]))
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)


def per_group_mean_and_min(values: np.ndarray, counts: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Per group, the mean and the lowest of its members' consecutive ``values`` (``counts[g]`` each, >= 1)."""
    counts = np.asarray(counts, dtype=np.int64)
    if not len(counts):
        return np.empty(0), np.empty(0)
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    values = np.asarray(values, dtype=np.float64)
    return np.add.reduceat(values, offsets) / counts, np.minimum.reduceat(values, offsets)


def groups_satisfaction(group_scores: np.ndarray, member_targets: Sequence[Sequence[int]],
                        excluded: Sequence[Iterable[int]], k: int, chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """``member_satisfaction`` of many groups at once: row ``g`` of ``group_scores`` (groups, items)
    is group ``g``'s one ranking, ``member_targets[g]`` its members' held-out columns and
    ``excluded[g]`` its excluded columns. Returns per group (mean-member, least-satisfied-member)
    NDCG@k, both in [0, 1].

    Raises:
        ValueError: a group without members, or lengths that differ.
    """
    ranks = groups_member_ranks(group_scores, member_targets, excluded, chunk)
    return per_group_mean_and_min(ndcg_at_k(ranks, k), [len(t) for t in member_targets])
