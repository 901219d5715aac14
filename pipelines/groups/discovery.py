"""Interest groups found in the crowd: clusters of the model's user vectors, kept stable night to night.

* ``cluster_users``: spherical k-means (k-means on unit vectors, so a heavy user's longer vector
  does not pull a centroid); with ``n_groups`` 0 the number of groups is the one with the best
  silhouette between 2 and ``max_groups``. The candidates are fitted and scored on a sample of
  users, so that the choice stays cheap however large the crowd; only the chosen number is fitted
  on every user.
* ``merge_small_groups``: a group below ``min_size`` users is folded into the group whose centroid
  is nearest, so that no published group describes a handful of people.
* ``stable_ids``: tonight's groups take last night's ids by maximum Jaccard overlap of members
  (Hungarian matching); a group that matches none (overlap below ``MIN_MATCH_JACCARD``) gets a
  new id, never a retired one.
* ``membership_churn``: how many of the users in both nights changed group.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

MIN_MATCH_JACCARD = 0.2  # below this overlap two nights' groups are different groups
SWEEP_SAMPLE = 2000  # users each candidate k is fitted and its silhouette measured on
KMEANS_RESTARTS = 2


@dataclass(frozen=True)
class Clustering:
    labels: np.ndarray  # (users,) group index 0..k-1
    centroids: np.ndarray  # (k, dim) unit vectors
    silhouettes: dict[int, float]  # candidate k -> cosine silhouette (empty when k was given)


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)


def cluster_users(vectors: np.ndarray, n_groups: int, *, max_groups: int, seed: int) -> Clustering:
    """Groups of users from their vectors.

    Raises:
        ValueError: fewer than two users, or ``n_groups`` larger than the number of users.
    """
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score
    from threadpoolctl import threadpool_limits

    points = unit_rows(np.asarray(vectors, dtype=np.float64))
    users = len(points)
    if users < 2:
        raise ValueError(f"cannot find interest groups among {users} user(s); at least 2 are needed")
    if n_groups > users:
        raise ValueError(f"groups.n_groups is {n_groups} but only {users} users have a vector")

    def fit(rows: np.ndarray, k: int) -> KMeans:
        # One thread: beside torch's pool, OpenMP threads oversubscribe the cores (40x slower on 2 cores).
        with threadpool_limits(limits=1):
            return KMeans(n_clusters=k, n_init=KMEANS_RESTARTS, random_state=seed).fit(rows)

    silhouettes: dict[int, float] = {}
    if n_groups > 0:
        model = fit(points, n_groups)
    else:
        sample = (points if users <= SWEEP_SAMPLE
                  else points[np.random.default_rng(seed).permutation(users)[:SWEEP_SAMPLE]])
        distances = cosine_distances(sample)  # once for every k: the sample does not change
        fitted = {}
        for k in range(2, min(max_groups, len(sample) - 1) + 1):
            fitted[k] = fit(sample, k)
            labels = fitted[k].labels_
            silhouettes[k] = (float(silhouette_score(distances, labels, metric="precomputed"))
                              if len(set(labels.tolist())) > 1 else -1.0)
        best = max(silhouettes, key=lambda k: (silhouettes[k], -k)) if fitted else 1
        model = fitted[best] if sample is points and fitted else fit(points, best)
    return Clustering(labels=model.labels_.astype(np.int64), centroids=unit_rows(model.cluster_centers_),
                      silhouettes=silhouettes)


def cosine_distances(unit_points: np.ndarray) -> np.ndarray:
    """Pairwise ``1 - cos`` of unit (or zero) rows, clipped to [0, 2], zero on the diagonal (as
    scikit-learn's cosine metric computes it)."""
    distances = np.clip(1.0 - unit_points @ unit_points.T, 0.0, 2.0)
    np.fill_diagonal(distances, 0.0)
    return distances


def merge_small_groups(labels: np.ndarray, vectors: np.ndarray, min_size: int) -> tuple[np.ndarray, int]:
    """Labels where every group below ``min_size`` users has been folded, smallest first, into the
    group with the nearest centroid; returns the labels (renumbered 0..k-1 by size) and how many
    groups were merged away. With fewer than ``min_size`` users in all, one group remains."""
    labels = np.asarray(labels).copy()
    points = unit_rows(np.asarray(vectors, dtype=np.float64))
    merged = 0
    while True:
        groups, sizes = np.unique(labels, return_counts=True)
        if len(groups) <= 1 or sizes.min() >= min_size:
            break
        small = groups[np.argmin(sizes)]
        others = groups[groups != small]
        centroid = unit_rows(points[labels == small].mean(0, keepdims=True))[0]
        targets = unit_rows(np.stack([points[labels == g].mean(0) for g in others]))
        labels[labels == small] = others[int(np.argmax(targets @ centroid))]
        merged += 1
    order = {g: i for i, g in enumerate(sorted(np.unique(labels), key=lambda g: (-(labels == g).sum(), g)))}
    return np.array([order[g] for g in labels], dtype=np.int64), merged


def stable_ids(members: Mapping[int, set[str]], previous: Mapping[int, set[str]], next_id: int) -> dict[int, int]:
    """Tonight's group index -> its id: last night's id where the members overlap enough, else a
    new id counting up from ``next_id`` (one above every id ever used)."""
    tonight, before = sorted(members), sorted(previous)
    ids: dict[int, int] = {}
    if tonight and before:
        overlap = np.array([[_jaccard(members[t], previous[b]) for b in before] for t in tonight])
        for row, column in zip(*linear_sum_assignment(-overlap)):
            if overlap[row, column] >= MIN_MATCH_JACCARD:
                ids[tonight[row]] = before[column]
    for group in tonight:
        if group not in ids:
            ids[group] = next_id
            next_id += 1
    return ids


def _jaccard(a: set[str], b: set[str]) -> float:
    union = len(a | b)
    return len(a & b) / union if union else 0.0


def membership_churn(previous: Mapping[str, int], current: Mapping[str, int]) -> dict[str, float | int]:
    """Users in both nights, how many changed group, and that share; groups kept, new and gone."""
    common = previous.keys() & current.keys()
    moved = sum(previous[u] != current[u] for u in common)
    before, now = set(previous.values()), set(current.values())
    return {"users_in_both": len(common), "moved": int(moved), "churn": moved / len(common) if common else 0.0,
            "groups_kept": len(before & now), "groups_new": len(now - before), "groups_gone": len(before - now)}
