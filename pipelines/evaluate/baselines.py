"""Baselines every night is measured against: MostPop and EASE (Steck 2019).

EASE's L2 weight is chosen on the validation targets (history = training items) and the model is
refitted on training + validation items to score the test histories, as the candidate is
evaluated. It inverts an items x items matrix, so catalogues above ``max_items`` skip it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pandas as pd
import torch

from pipelines.ranking.scoring import EvalSet, Scorer, evaluate_scorer, validation_set

log = logging.getLogger(__name__)


def column_index(item_ids: Sequence[str]) -> dict[str, int]:
    """Catalogue column of each item id (the order ``evaluate_scorer`` ranks in)."""
    return {item: i for i, item in enumerate(item_ids)}


def train_histories(sequences: pd.DataFrame) -> list[list[str]]:
    """Every user's training items (users too short to split keep their whole history here)."""
    return [list(h) for h in sequences["train_items"]]


def train_valid_histories(sequences: pd.DataFrame) -> list[list[str]]:
    """Training items plus the validation item: what a model may learn from before the test."""
    return [list(h) + ([v] if isinstance(v, str) else []) for h, v in
            zip(sequences["train_items"], sequences["valid_item"])]


def interaction_matrix(histories: Sequence[Sequence[str]], column: dict[str, int]) -> torch.Tensor:
    """Binary user x item matrix (float32; a repeated item counts once)."""
    matrix = torch.zeros(len(histories), len(column), dtype=torch.float32)
    rows = [u for u, h in enumerate(histories) for i in h if i in column]
    cols = [column[i] for h in histories for i in h if i in column]
    if cols:
        matrix[torch.tensor(rows), torch.tensor(cols)] = 1.0
    return matrix


def ease_weights(gram: torch.Tensor, lam: float) -> torch.Tensor:
    """B = I - P diag(1/diag(P)) with P = (X^T X + lambda I)^-1, so diag(B) = 0.

    Off the diagonal that is B_ij = -P_ij / P_jj. The inverse is taken in float64: with a small
    lambda and a large catalogue X^T X + lambda I is badly conditioned in float32.
    """
    p = torch.linalg.inv(gram.double() + lam * torch.eye(gram.shape[0], dtype=torch.float64))
    weights = -p / torch.diagonal(p)[None, :]
    weights.fill_diagonal_(0.0)
    return weights.float()


def ease_scorer(weights: torch.Tensor, column: dict[str, int]) -> Scorer:
    return lambda histories: interaction_matrix(histories, column) @ weights


def tune_ease(train: Sequence[Sequence[str]], valid: EvalSet, item_ids: Sequence[str],
              lambdas: Sequence[float], k: int) -> dict[float, float]:
    """Validation NDCG@k of EASE fitted on ``train`` for each lambda."""
    column = column_index(item_ids)
    x = interaction_matrix(train, column)
    gram = x.T.double() @ x.double()
    curve = {}
    for lam in lambdas:
        metrics, _ = evaluate_scorer(ease_scorer(ease_weights(gram, lam), column), valid, list(item_ids), k)
        curve[float(lam)] = metrics[f"ndcg@{k}"]
        log.info("EASE lambda %g: validation NDCG@%d %.4f", lam, k, curve[float(lam)])
    return curve


def fit_ease(sequences: pd.DataFrame, item_ids: Sequence[str], lambdas: Sequence[float], k: int
             ) -> tuple[Scorer, float, dict[float, float]]:
    """The test scorer, the lambda chosen on validation, and the validation curve.

    ``test_item`` is never read: the test scorer only needs the histories it is given.
    """
    if not lambdas:
        raise ValueError("EASE needs at least one lambda to choose from")
    curve = tune_ease(train_histories(sequences), validation_set(sequences), item_ids, lambdas, k)
    best = max(curve, key=curve.get)  # max keeps the first (smallest listed) of equal lambdas
    column = column_index(item_ids)
    x = interaction_matrix(train_valid_histories(sequences), column)
    return ease_scorer(ease_weights(x.T.double() @ x.double(), best), column), best, curve
