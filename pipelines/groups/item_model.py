"""The item-item part of ``group_model``: EASE over the explicit groups' and the users' histories.

A group with a long history of its own (a household's hundreds of evenings) is read by the sequence
model only through its last ``finetune.max_seq_len`` items. EASE (Steck, WWW 2019) reads the whole
set: fitted each night on the group rows and the user rows stacked (what groups chose together and
what everyone chose alone), it scores a group from its own row. ``group_model`` adds
``weight * z(EASE scores)`` to its sequence-model part (``pipelines.groups.aggregation``). The L2
weight and the blend weight are chosen together on the explicit groups' validation choices, with
the EASE fit on the validation phase's histories only; weight 0 (the item model off) is always a
candidate, so validation can turn it off. A catalogue above ``groups.item_model_max_items`` skips
the item model: its Gram matrix is items x items.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import sparse

from pipelines.groups.aggregation import standardised
from pipelines.groups.baselines import EaseFamily, binary_rows
from pipelines.groups.evaluation import ndcg_at_k, target_ranks

log = logging.getLogger("retrain.groups")


@dataclass(frozen=True)
class ItemModelChoice:
    """The chosen L2 weight and blend weight (0: off), the validation NDCG of every pair, and why."""

    lam: float
    weight: float
    reason: str
    validation: dict[str, float] = field(default_factory=dict)  # "lambda/weight" -> NDCG@k

    @property
    def active(self) -> bool:
        return self.weight > 0

    def record(self) -> dict[str, Any]:
        return {"lambda": self.lam, "weight": self.weight, "reason": self.reason, "validation": self.validation}


OFF = ItemModelChoice(0.0, 0.0, "off")


def gram_matrix(histories: Sequence[Iterable[int]], n_items: int) -> np.ndarray:
    """X^T X (float64, dense) of the 0/1 rows of ``histories`` (catalogue columns), built sparse so
    that many users cost memory in items^2 only; an item listed twice in a row counts once."""
    rows, columns = [], []
    for row, items in enumerate(histories):
        unique = sorted(set(int(c) for c in items))
        rows += [row] * len(unique)
        columns += unique
    matrix = sparse.csr_matrix((np.ones(len(rows)), (rows, columns)), shape=(len(histories), n_items))
    return (matrix.T @ matrix).toarray()


def item_scores(gram: np.ndarray, case_histories: Sequence[Iterable[int]], lam: float) -> np.ndarray:
    """The standardised EASE scores of each case's history row for one L2 weight ``lam``:
    (R B)_ij = R_ij - (R P)_ij / P_jj with P = (X^T X + lam I)^-1 (one inverse, no eigenvectors)."""
    inverse = np.linalg.inv(gram + lam * np.eye(len(gram)))
    rows = binary_rows(case_histories, len(gram))
    return standardised(rows - (rows @ inverse) / np.diag(inverse)[None, :])


def skipped_for_size(n_items: int, max_items: int) -> ItemModelChoice | None:
    if n_items <= max_items:
        return None
    reason = f"off: {n_items} items exceed groups.item_model_max_items ({max_items})"
    log.info("group item model %s", reason)
    return ItemModelChoice(0.0, 0.0, reason)


def choose_item_model(fit_histories: Sequence[Iterable[int]], case_histories: Sequence[Iterable[int]],
                      base: np.ndarray, targets: Sequence[int], excluded: Sequence[Iterable[int]], *,
                      lambdas: Sequence[float], weights: Sequence[float], max_items: int, k: int
                      ) -> tuple[ItemModelChoice, np.ndarray | None]:
    """The (lambda, weight) with the best mean NDCG@k of ``base + weight * item scores`` on the
    validation cases (ties: the earlier pair, weight 0 first), and the chosen weighted item scores.

    Args:
        fit_histories: the validation phase's group and user histories (catalogue columns).
        case_histories: each validation case's group history; ``base`` its ``group_model`` scores
            without the item part (excluded items ``-inf``), ``targets`` its held-out column.
    """
    n_items = base.shape[1]
    if not len(base) or not any(w > 0 for w in weights) or not lambdas:
        return ItemModelChoice(0.0, 0.0, "off: no validation case or no positive weight to try"), None
    skipped = skipped_for_size(n_items, max_items)
    if skipped is not None:
        return skipped, None
    family = EaseFamily(gram=gram_matrix(fit_histories, n_items))
    rows = binary_rows(case_histories, n_items)
    curve: dict[tuple[float, float], float] = {}
    parts: dict[float, np.ndarray] = {}
    for lam in lambdas:
        parts[lam] = standardised(family.scores(rows, float(lam)))
        for weight in weights:
            ranks = target_ranks(base + weight * parts[lam], targets, excluded)
            curve[(float(lam), float(weight))] = float(ndcg_at_k(ranks, k).mean())
    pairs = list(curve)
    lam, weight = max(pairs, key=lambda pair: (curve[pair], pair[1] == 0, -pairs.index(pair)))
    validation = {f"{lam_:g}/{weight_:g}": round(value, 6) for (lam_, weight_), value in curve.items()}
    if weight == 0:
        return ItemModelChoice(0.0, 0.0, "off: chosen on validation", validation), None
    without = max((value for (_, w), value in curve.items() if w == 0), default=float("nan"))
    log.info("group item model: lambda %g, weight %g (validation NDCG@%d %.4f, without it %.4f)", lam, weight, k,
             curve[(lam, weight)], without)
    return ItemModelChoice(lam, weight, "chosen on validation", validation), weight * parts[lam]


def fitted_item_part(fit_histories: Sequence[Iterable[int]], case_histories: Sequence[Iterable[int]],
                     n_items: int, choice: ItemModelChoice, max_items: int) -> np.ndarray | None:
    """``choice.weight * z(EASE scores)`` of each case's history with EASE refitted on
    ``fit_histories`` at the chosen L2 weight (test phase, publish); None when the item model is off."""
    if not choice.active or not len(case_histories) or skipped_for_size(n_items, max_items) is not None:
        return None
    return choice.weight * item_scores(gram_matrix(fit_histories, n_items), case_histories, choice.lam)
