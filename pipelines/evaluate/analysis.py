"""What the nightly report says beyond one number: per-user outcomes, uncertainty and slices.

Every model is ranked once per test user (``pipelines.ranking.scoring.rank_eval_set``); from those
ranks come the metrics at every K, user-level bootstrap 95% intervals, the paired comparison of
two models on the same users (resampling users, not models, so the shared user difficulty
cancels), and the metrics per slice of users or target items.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from pipelines.ranking.metrics import compute_metrics, popularity_head

if TYPE_CHECKING:
    from pipelines.ranking.scoring import ModelRanks  # scoring imports torch: annotations only

# Metrics that are means over users (one target each), so their intervals come from resampling
# users. Coverage is a property of the whole set of lists: resampling users with replacement
# biases it downwards, so it gets no interval.
PER_USER_METRICS = ("ndcg", "hr", "mrr", "recall", "precision", "novelty", "popularity_bias")
COLD_USER_MAX = 5  # training interactions of a cold user
HEAVY_USER_SHARE = 0.1  # the most active tenth of the evaluated users


def per_user_values(outcome: ModelRanks, metric: str, k: int, popularity: np.ndarray | None = None,
                    n_train_users: int | None = None) -> np.ndarray:
    """Each user's contribution to a mean-over-users metric (one target per user).

    The definitions are those of ``pipelines.ranking.metrics``: the mean of these values is the metric.
    """
    ranks = np.asarray(outcome.ranks, dtype=np.float64)
    hit = ranks < k
    if metric == "ndcg":
        return np.where(hit, 1.0 / np.log2(ranks + 2.0), 0.0)
    if metric in ("hr", "recall"):  # one relevant item: recall is the hit
        return hit.astype(np.float64)
    if metric == "mrr":
        return np.where(hit, 1.0 / (ranks + 1.0), 0.0)
    if metric == "precision":
        return hit / k
    if metric in ("novelty", "popularity_bias"):
        if popularity is None or n_train_users is None:
            raise ValueError(f"{metric} needs the items' training popularity and the number of training users")
        top = outcome.top_items[:, :k]
        if metric == "novelty":
            share = np.clip(np.asarray(popularity, dtype=np.float64), 1, n_train_users) / n_train_users
            return (-np.log2(share))[top].mean(axis=1)
        return popularity_head(np.asarray(popularity))[top].mean(axis=1)
    raise ValueError(f"no per-user values for metric {metric!r}; known: {', '.join(PER_USER_METRICS)}")


def resample_indices(n_users: int, n_resamples: int, seed: int) -> np.ndarray:
    """(n_resamples, n_users) user indices drawn with replacement; shared by paired comparisons."""
    return np.random.default_rng(seed).integers(0, n_users, size=(n_resamples, n_users))


def percentile_interval(samples: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return float(low), float(high)


def bootstrap_interval(values: np.ndarray, indices: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the mean of ``values`` over user resamples."""
    if not len(values):
        return float("nan"), float("nan")
    return percentile_interval(np.asarray(values, dtype=np.float64)[indices].mean(axis=1), level)


def paired_difference(a: np.ndarray, b: np.ndarray, indices: np.ndarray, level: float = 0.95) -> dict[str, float]:
    """Mean of a - b over the same users, with its bootstrap interval."""
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if not len(diff):
        return {"delta": float("nan"), "low": float("nan"), "high": float("nan")}
    low, high = bootstrap_interval(diff, indices, level)
    return {"delta": float(diff.mean()), "low": low, "high": high}


def ratio_interval(a: np.ndarray, b: np.ndarray, indices: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of mean(a) / mean(b) over the same user resamples; resamples where b's mean
    is 0 have no ratio and are left out."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if not len(a):
        return float("nan"), float("nan")
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = a[indices].mean(axis=1) / b[indices].mean(axis=1)
    finite = ratios[np.isfinite(ratios)]
    return percentile_interval(finite, level) if len(finite) else (float("nan"), float("nan"))


def user_slices(train_lengths: np.ndarray, target_columns: np.ndarray, popularity: np.ndarray,
                groups: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Boolean masks over the test users: by activity, by the target's popularity, by group.

    Activity: cold (at most ``COLD_USER_MAX`` training interactions), heavy (the most active
    ``HEAVY_USER_SHARE`` of the others), long tail (the rest). Target popularity: whether the held-out
    item is in the popularity head (``pipelines.ranking.metrics.popularity_head``). Groups: one slice per
    interest group when the profiles carry one.
    """
    lengths = np.asarray(train_lengths)
    cold = lengths <= COLD_USER_MAX
    warm_lengths = lengths[~cold]
    heavy_floor = np.quantile(warm_lengths, 1 - HEAVY_USER_SHARE) if len(warm_lengths) else np.inf
    heavy = ~cold & (lengths >= heavy_floor)
    head = popularity_head(np.asarray(popularity))[np.asarray(target_columns, dtype=np.int64)]
    slices = {
        f"users: cold (<={COLD_USER_MAX} train)": cold,
        "users: long tail": ~cold & ~heavy,
        f"users: heavy (top {HEAVY_USER_SHARE:.0%})": heavy,
        "items: head target": head,
        "items: tail target": ~head,
    }
    if groups is not None:
        labels = np.asarray(groups, dtype=object)
        for group in sorted(set(labels.tolist())):
            slices[f"group: {group}"] = labels == group
    return slices


def analyse(models: Mapping[str, ModelRanks], *, ks: Sequence[int], k: int, n_items: int, popularity: np.ndarray,
            n_train_users: int, slices: Mapping[str, np.ndarray], candidate: str = "candidate",
            champion: str = "champion", n_resamples: int = 1000, seed: int = 0) -> dict:
    """Metrics at every K with intervals, candidate-vs-champion deltas and per-slice metrics."""
    n_users = len(next(iter(models.values())).ranks) if models else 0
    indices = resample_indices(n_users, n_resamples, seed)
    report: dict = {"models": {}, "paired": {}, "slices": {}}
    def values(name: str, metric: str) -> np.ndarray:
        return per_user_values(models[name], metric, k, popularity, n_train_users)

    for name, outcome in models.items():
        metrics = compute_metrics(outcome.rankings(n_items, popularity, n_train_users), ks)
        intervals = {f"{m}@{k}": list(bootstrap_interval(values(name, m), indices)) for m in PER_USER_METRICS}
        report["models"][name] = {"metrics": metrics, "intervals": intervals}
    if candidate in models and champion in models:
        for m in PER_USER_METRICS:
            report["paired"][f"{m}@{k}"] = paired_difference(values(candidate, m), values(champion, m), indices)
    for slice_name, mask in slices.items():
        users = np.flatnonzero(mask)
        if not len(users):
            continue
        report["slices"][slice_name] = {"users": int(len(users)), "models": {
            name: compute_metrics(outcome.rankings(n_items, popularity, n_train_users, users), [k],
                                  names=["ndcg", "hr", "mrr"])
            for name, outcome in models.items()}}
    return report
