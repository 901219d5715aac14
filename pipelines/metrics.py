"""Ranking metrics for leave-one-out evaluation over the full catalogue.

Every metric takes the 0-based rank of each user's held-out item (ties broken pessimistically:
the item is placed after every other item with the same score) and a cut-off ``k``. An empty
input gives 0.0.
"""

from __future__ import annotations

import numpy as np


def hit_rate_at_k(ranks: np.ndarray, k: int) -> float:
    """Share of users whose held-out item is in the top k. Range [0, 1]."""
    ranks = np.asarray(ranks)
    return float(np.mean(ranks < k)) if ranks.size else 0.0


def ndcg_at_k(ranks: np.ndarray, k: int) -> float:
    """Mean 1/log2(rank + 2) for hits in the top k, 0 otherwise (one relevant item). Range [0, 1]."""
    ranks = np.asarray(ranks, dtype=np.float64)
    if not ranks.size:
        return 0.0
    gains = np.where(ranks < k, 1.0 / np.log2(ranks + 2.0), 0.0)
    return float(gains.mean())


def mrr_at_k(ranks: np.ndarray, k: int) -> float:
    """Mean reciprocal rank, 0 past the top k. Range [0, 1]."""
    ranks = np.asarray(ranks, dtype=np.float64)
    if not ranks.size:
        return 0.0
    return float(np.where(ranks < k, 1.0 / (ranks + 1.0), 0.0).mean())


def coverage_at_k(top_k: np.ndarray, n_items: int) -> float:
    """Share of the catalogue that appears in at least one user's top-k list. Range [0, 1]."""
    top_k = np.asarray(top_k)
    if not top_k.size or n_items <= 0:
        return 0.0
    return float(np.unique(top_k).size / n_items)


def ranking_metrics(ranks: np.ndarray, top_k: np.ndarray, n_items: int, k: int) -> dict[str, float]:
    return {
        f"ndcg@{k}": ndcg_at_k(ranks, k),
        f"hr@{k}": hit_rate_at_k(ranks, k),
        f"mrr@{k}": mrr_at_k(ranks, k),
        f"coverage@{k}": coverage_at_k(top_k, n_items),
        "users": int(np.asarray(ranks).size),
    }
