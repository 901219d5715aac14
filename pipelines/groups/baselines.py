"""Strong simple group baselines: MostPop, GroupEASE, and EASE on the members with an aggregation.

GroupEASE fits EASE (Steck 2019) on group rows and user rows stacked, and scores a group from
its own row. EASE on members fits on the user rows and aggregates the members' scores with a
strategy of `pipelines.groups.aggregation`. EASE's L2 weight is chosen on validation cases cut
from the groups' training pairs; one eigendecomposition of the Gram matrix serves every weight.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from pipelines.groups.aggregation import group_scores
from pipelines.groups.evaluation import hit_at_k, ndcg_at_k, target_ranks


@dataclass(frozen=True)
class Cases:
    """Cases to rank: the scoring history of each case's group, its target column, what is excluded."""

    groups: list[str]
    targets: np.ndarray  # catalogue columns
    excluded: list[list[int]]  # per case, the group's training columns


def binary_rows(histories: Sequence[Iterable[int]], n_items: int) -> np.ndarray:
    """A (rows, items) 0/1 float64 matrix; an item listed twice counts once."""
    rows = np.zeros((len(histories), n_items))
    for row, columns in enumerate(histories):
        rows[row, list(columns)] = 1.0
    return rows


class EaseFamily:
    """EASE weights for any L2 weight from one eigendecomposition of X^T X (float64)."""

    def __init__(self, rows: np.ndarray | None = None, *, gram: np.ndarray | None = None) -> None:
        if (rows is None) == (gram is None):
            raise ValueError("EaseFamily takes the rows or their Gram matrix, not both")
        self.eigenvalues, self.eigenvectors = np.linalg.eigh(rows.T @ rows if gram is None else gram)

    def weights(self, lam: float) -> np.ndarray:
        """B = I - P diag(1/diag(P)) with P = (X^T X + lam I)^-1, so diag(B) = 0."""
        inverse = (self.eigenvectors / (self.eigenvalues + lam)) @ self.eigenvectors.T
        weights = -inverse / np.diag(inverse)[None, :]
        np.fill_diagonal(weights, 0.0)
        return weights

    def scores(self, rows: np.ndarray, lam: float) -> np.ndarray:
        """``rows @ weights(lam)`` without forming the (items, items) weights: with R P computed
        through the eigenvectors, (R B)_ij = R_ij - (R P)_ij / P_jj. For a few rows this costs
        rows x items^2 instead of items^3."""
        shrink = 1.0 / (self.eigenvalues + lam)
        projected = (rows @ self.eigenvectors) * shrink
        diagonal = (self.eigenvectors ** 2) @ shrink
        return rows - (projected @ self.eigenvectors.T) / diagonal[None, :]


def metrics(scores: np.ndarray, cases: Cases, k: int) -> dict[str, float]:
    """Mean NDCG@k and HR@k over the cases (full ranking, group history excluded, pessimistic ties)."""
    ranks = target_ranks(scores, cases.targets, cases.excluded)
    return {f"ndcg@{k}": float(ndcg_at_k(ranks, k).mean()), f"hr@{k}": float(hit_at_k(ranks, k).mean())}


def most_popular(popularity: np.ndarray, cases: Cases) -> np.ndarray:
    return np.repeat(popularity[None, :].astype(np.float64), len(cases.groups), axis=0)


def group_ease(group_rows: Mapping[str, np.ndarray], weights: np.ndarray, cases: Cases) -> np.ndarray:
    """Each case scored from its group's own row."""
    return np.vstack([group_rows[g] for g in cases.groups]) @ weights


def member_ease(member_rows: Mapping[str, np.ndarray], weights: np.ndarray, cases: Cases, strategy: str,
                k: int) -> np.ndarray:
    """Each case's group scored by aggregating its members' EASE scores with ``strategy``."""
    by_group: dict[str, np.ndarray] = {}
    for group in dict.fromkeys(cases.groups):
        by_group[group] = group_scores(member_rows[group] @ weights, strategy, k=k)
    return np.vstack([by_group[g] for g in cases.groups])


def choose_lambda(family: EaseFamily, lambdas: Sequence[float], score: Callable[[np.ndarray], np.ndarray],
                  cases: Cases, k: int) -> tuple[float, dict[float, float]]:
    """The L2 weight with the best validation NDCG@k (the first of equals) and the whole curve."""
    curve = {float(lam): metrics(score(family.weights(lam)), cases, k)[f"ndcg@{k}"] for lam in lambdas}
    return max(curve, key=curve.get), curve
