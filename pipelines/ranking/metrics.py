"""Ranking metrics over the full catalogue (definitions as in Microsoft Recommenders).

Every metric is ``metric(rankings: Rankings, k: int) -> float``, vectorised over users.

A user's *rank* of a relevant (held-out) item is its 0-based position in the ranking of the whole
catalogue, the user's history removed, with ties broken pessimistically: a relevant item comes after
every non-relevant item with the same score (tied relevant items follow one another). Relevance is
binary and a *hit* is a relevant item with rank < K.

Accuracy metrics, averaged over the users with at least one relevant item (the others are left out):
  * ndcg@K: DCG / ideal DCG, where DCG sums 1/log2(rank + 2) over the hits and the ideal DCG puts
    min(n_relevant, K) hits at ranks 0, 1, ...
  * hr@K: 1 if the user has a hit.
  * mrr@K: 1/(rank + 1) of the best-ranked relevant item if it is a hit, else 0.
  * recall@K: hits / n_relevant.
  * precision@K: hits / K.

Beyond-accuracy metrics, over the first K recommendations of every user (with a target or not):
  * coverage@K: distinct recommended items / n_items.
  * novelty@K: mean self-information -log2(p_i / n_train_users) over all recommendation slots, p_i
    being the item's training popularity (users who interacted with it) clipped to
    [1, n_train_users]: an item unseen in training counts as seen once, the most novel an item can
    be, so novelty lies in [0, log2(n_train_users)].
  * popularity_bias@K: share of recommendation slots holding a popularity-head item. The head is the
    max(1, round(HEAD_SHARE * n_items)) items with the highest training popularity, ties going to
    the lower catalogue column.

With no users every metric is 0.0. K must be >= 1; the beyond-accuracy metrics also need K
recommendations per user (fewer only where the lists already hold the whole catalogue).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

HEAD_SHARE = 0.2  # share of the catalogue, by training popularity, that forms the popularity head


@dataclass(frozen=True)
class Rankings:
    """What every metric needs, one row per user.

    ``target_ranks`` (n_users, t): pessimistic rank of each relevant item, ``-1`` padding rows of
    users with fewer than t relevant items (a row of only ``-1``: a user with no target).
    ``top_items`` (n_users, k_max): recommended catalogue columns, best first.
    ``item_popularity`` (n_items,) and ``n_train_users``: training counts, needed (together) only by
    novelty and popularity bias.
    """

    target_ranks: np.ndarray
    top_items: np.ndarray
    n_items: int
    item_popularity: np.ndarray | None = None
    n_train_users: int | None = None

    def __post_init__(self) -> None:
        ranks = np.asarray(self.target_ranks, dtype=np.int64)
        top = np.asarray(self.top_items, dtype=np.int64)
        if ranks.ndim != 2 or top.ndim != 2 or len(ranks) != len(top):
            raise ValueError(f"target_ranks {ranks.shape}, top_items {top.shape}: need 2-D, a row per user")
        if (ranks < -1).any():
            raise ValueError("target_ranks hold ranks >= 0 and -1 padding only")
        if ((top < 0) | (top >= self.n_items)).any():
            raise ValueError(f"top_items must be catalogue columns in [0, {self.n_items})")
        object.__setattr__(self, "target_ranks", ranks)
        object.__setattr__(self, "top_items", top)
        if (self.item_popularity is None) != (self.n_train_users is None):
            raise ValueError("item_popularity and n_train_users come together")
        if self.item_popularity is not None:
            popularity = np.asarray(self.item_popularity, dtype=np.float64)
            if popularity.shape != (self.n_items,) or self.n_train_users < 1:
                raise ValueError("item_popularity needs one count per catalogue item and n_train_users >= 1")
            object.__setattr__(self, "item_popularity", popularity)

    @classmethod
    def from_single_targets(cls, ranks: np.ndarray, top_items: np.ndarray, n_items: int,
                            item_popularity: np.ndarray | None = None,
                            n_train_users: int | None = None) -> Rankings:
        """Leave-one-out: ``ranks`` holds one rank per user."""
        return cls(np.asarray(ranks, dtype=np.int64).reshape(-1, 1), top_items, n_items,
                   item_popularity, n_train_users)

    @classmethod
    def from_scores(cls, scores: np.ndarray, relevant_columns: Sequence[Iterable[int]],
                    excluded_columns: Sequence[Iterable[int]], k_max: int,
                    item_popularity: np.ndarray | None = None,
                    n_train_users: int | None = None) -> Rankings:
        """Ranks and top-``k_max`` lists from a (n_users, n_items) score matrix.

        As in the evaluation, a relevant column listed as excluded stays in the ranks and the lists.
        """
        excluded = [set(e) - set(r) for e, r in zip(excluded_columns, relevant_columns, strict=True)]
        return cls(ranks_from_scores(scores, relevant_columns, excluded),
                   top_items_from_scores(scores, excluded, k_max), np.shape(scores)[1],
                   item_popularity, n_train_users)


Metric = Callable[[Rankings, int], float]


def column_mask(columns: Sequence[Iterable[int]], shape: tuple[int, int]) -> np.ndarray:
    """(n_users, n_items) mask of each user's listed columns."""
    if len(columns) != shape[0]:
        raise ValueError(f"{len(columns)} column lists for {shape[0]} users")
    lists = [np.asarray(list(c), dtype=np.int64) for c in columns]
    mask = np.zeros(shape, dtype=bool)
    if lists:
        mask[np.repeat(np.arange(shape[0]), [len(c) for c in lists]), np.concatenate(lists)] = True
    return mask


def ranks_from_scores(scores: np.ndarray, relevant_columns: Sequence[Iterable[int]],
                      excluded_columns: Sequence[Iterable[int]]) -> np.ndarray:
    """Pessimistic ranks (n_users, max relevant), each row ascending and padded with -1.

    Excluded (history) columns leave the ranking, except relevant ones, which are never excluded.
    """
    scores = np.asarray(scores, dtype=np.float64)
    relevant = column_mask(relevant_columns, scores.shape)
    candidate = relevant | ~column_mask(excluded_columns, scores.shape)
    # Last key first: candidates before excluded, higher score first, relevant after non-relevant;
    # lexsort is stable, so remaining ties keep column order.
    order = np.lexsort((relevant, -scores, ~candidate), axis=1)
    position = np.argsort(order, axis=1)
    n_items = scores.shape[1]
    most_relevant = relevant.sum(axis=1).max(initial=0)
    ranks = np.sort(np.where(relevant, position, n_items), axis=1)[:, :most_relevant]
    return np.where(ranks < n_items, ranks, -1)


def top_items_from_scores(scores: np.ndarray, excluded_columns: Sequence[Iterable[int]], k: int
                          ) -> np.ndarray:
    """Top-k columns per user, best first; ties in column order, excluded columns only after all others."""
    scores = np.asarray(scores, dtype=np.float64)
    return np.lexsort((-scores, column_mask(excluded_columns, scores.shape)), axis=1)[:, :k]


def ndcg_per_case(ranks: np.ndarray, k: int) -> np.ndarray:
    """Per case, NDCG@k of one relevant item at 0-based ``ranks``: 1 / log2(rank + 2) inside the top
    k, else 0. Range [0, 1]."""
    ranks = np.asarray(ranks)
    return np.where(ranks < k, 1.0 / np.log2(ranks + 2.0), 0.0)


def _check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"K={k}: K must be >= 1")


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else 0.0


def _scored(rankings: Rankings, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Ranks and hit mask of the users with at least one target, the accuracy metrics' population."""
    _check_k(k)
    ranks = rankings.target_ranks
    ranks = ranks[(ranks >= 0).any(axis=1)]
    return ranks, (ranks >= 0) & (ranks < k)


def _discount(positions: np.ndarray) -> np.ndarray:
    return 1.0 / np.log2(positions + 2.0)


def ndcg_at_k(rankings: Rankings, k: int) -> float:
    ranks, hits = _scored(rankings, k)
    if not len(ranks):
        return 0.0
    dcg = np.where(hits, _discount(np.maximum(ranks, 0)), 0.0).sum(axis=1)
    ideal_hits = np.minimum((ranks >= 0).sum(axis=1), k)
    ideal_dcg = np.cumsum(_discount(np.arange(ideal_hits.max())))[ideal_hits - 1]
    return float((dcg / ideal_dcg).mean())


def hit_rate_at_k(rankings: Rankings, k: int) -> float:
    _, hits = _scored(rankings, k)
    return _mean(hits.any(axis=1))


def mrr_at_k(rankings: Rankings, k: int) -> float:
    ranks, hits = _scored(rankings, k)
    return _mean(np.where(hits, 1.0 / (np.maximum(ranks, 0) + 1.0), 0.0).max(axis=1, initial=0.0))


def recall_at_k(rankings: Rankings, k: int) -> float:
    ranks, hits = _scored(rankings, k)
    return _mean(hits.sum(axis=1) / (ranks >= 0).sum(axis=1))


def precision_at_k(rankings: Rankings, k: int) -> float:
    _, hits = _scored(rankings, k)
    return _mean(hits.sum(axis=1) / k)


def _top(rankings: Rankings, k: int) -> np.ndarray:
    """The first k recommendations of every user."""
    _check_k(k)
    width = rankings.top_items.shape[1]
    if k > width and width < rankings.n_items:
        raise ValueError(f"K={k} exceeds the {width} recommendations per user in top_items")
    return rankings.top_items[:, :k]


def _popularity(rankings: Rankings, metric: str) -> np.ndarray:
    if rankings.item_popularity is None:
        raise ValueError(f"{metric} needs item_popularity and n_train_users")
    return rankings.item_popularity


def coverage_at_k(rankings: Rankings, k: int) -> float:
    top = _top(rankings, k)
    return float(np.unique(top).size / rankings.n_items) if top.size else 0.0


def novelty_at_k(rankings: Rankings, k: int) -> float:
    top = _top(rankings, k)
    n_train = rankings.n_train_users
    share = np.clip(_popularity(rankings, "novelty"), 1, n_train) / n_train
    return _mean(-np.log2(share)[top])


def popularity_head(item_popularity: np.ndarray) -> np.ndarray:
    """Mask of the head items: the most popular HEAD_SHARE of the catalogue, ties to lower columns."""
    item_popularity = np.asarray(item_popularity)
    head = np.zeros(item_popularity.shape, dtype=bool)
    head[np.argsort(-item_popularity, kind="stable")[:max(1, round(HEAD_SHARE * head.size))]] = True
    return head


def popularity_bias_at_k(rankings: Rankings, k: int) -> float:
    top = _top(rankings, k)
    return _mean(popularity_head(_popularity(rankings, "popularity_bias"))[top])


METRICS: dict[str, Metric] = {
    "ndcg": ndcg_at_k,
    "hr": hit_rate_at_k,
    "mrr": mrr_at_k,
    "recall": recall_at_k,
    "precision": precision_at_k,
    "coverage": coverage_at_k,
    "novelty": novelty_at_k,
    "popularity_bias": popularity_bias_at_k,
}
NEED_POPULARITY = frozenset({"novelty", "popularity_bias"})


def compute_metrics(rankings: Rankings, ks: Iterable[int], names: Iterable[str] | None = None
                    ) -> dict[str, float]:
    """``{name}@{k}`` for every name and K, plus ``users`` (users with a target).

    ``names`` defaults to every metric in METRICS that ``rankings`` has the inputs for.
    """
    if names is None:
        names = [n for n in METRICS if rankings.item_popularity is not None or n not in NEED_POPULARITY]
    names, ks = list(names), list(ks)
    unknown = sorted(set(names) - METRICS.keys())
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; known: {sorted(METRICS)}")
    values: dict[str, float] = {f"{name}@{k}": METRICS[name](rankings, k) for name in names for k in ks}
    values["users"] = int((rankings.target_ranks >= 0).any(axis=1).sum())
    return values


def ranking_metrics(ranks: np.ndarray, top_k: np.ndarray, n_items: int, k: int) -> dict[str, float]:
    """Leave-one-out entry point of the evaluation: one held-out item's rank per user."""
    return compute_metrics(Rankings.from_single_targets(ranks, top_k, n_items), [k],
                           ["ndcg", "hr", "mrr", "coverage"])
