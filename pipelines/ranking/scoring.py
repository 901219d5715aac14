"""Full-catalogue ranking: scorers, evaluation sets, pessimistic ranks and top-K lists, the MostPop scorer.

Shared by training (validation NDCG), the evaluate stage and publish, so every one ranks the same way.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from pipelines.ranking.metrics import Rankings, ranking_metrics

# Scores every catalogue item (columns, in catalogue order) for each user's history.
Scorer = Callable[[list[list[str]]], torch.Tensor]


@dataclass(frozen=True)
class ModelRanks:
    """One model's outcome on the test users: the target's pessimistic rank and the top items."""

    ranks: np.ndarray  # (users,)
    top_items: np.ndarray  # (users, k_max) catalogue columns, best first

    def rankings(self, n_items: int, popularity: np.ndarray, n_train_users: int,
                 users: np.ndarray | None = None) -> Rankings:
        ranks, top = (self.ranks, self.top_items) if users is None else (self.ranks[users], self.top_items[users])
        return Rankings.from_single_targets(ranks, top, n_items, item_popularity=popularity,
                                            n_train_users=n_train_users)


@dataclass(frozen=True)
class EvalSet:
    """Users to evaluate: the history the model sees (and that is excluded) and the held-out item."""

    user_ids: list[str]
    histories: list[list[str]]
    targets: list[str]
    # Each target's time (unix seconds; None where the profiles hold none), for the recency prior.
    target_ts: list[int | None] | None = None


def _target_times(rows, column: str) -> list[int | None] | None:
    """The column's times (None where missing); None for profiles written before they were recorded."""
    import pandas as pd

    if column not in rows:
        return None
    return [None if pd.isna(value) else int(value) for value in rows[column]]


def test_set(sequences) -> EvalSet:
    """Test: history is train + validation item, target the last item."""
    rows = sequences[sequences["test_item"].notna()]
    return EvalSet(list(rows["user_id"]), [list(h) + [v] for h, v in zip(rows["train_items"], rows["valid_item"])],
                   list(rows["test_item"]), _target_times(rows, "test_ts"))


def validation_set(sequences) -> EvalSet:
    """Validation: history is the training items, target the second to last item."""
    rows = sequences[sequences["valid_item"].notna()]
    return EvalSet(list(rows["user_id"]), [list(h) for h in rows["train_items"]], list(rows["valid_item"]),
                   _target_times(rows, "valid_ts"))


def rank_targets(scores: torch.Tensor, histories: list[list[int]], targets: np.ndarray, k: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Pessimistic 0-based rank of each target and the top-k columns, history excluded.

    ``histories`` hold catalogue columns to exclude; the target itself is never excluded.
    """
    scores = scores.detach().float().clone()
    users = torch.arange(scores.shape[0])
    target_index = torch.as_tensor(targets, dtype=torch.long)
    target_scores = scores[users, target_index].clone()
    lengths = torch.tensor([len(cols) for cols in histories], dtype=torch.long)
    if int(lengths.sum()):
        flat_cols = torch.tensor(list(itertools.chain.from_iterable(histories)), dtype=torch.long)
        scores[torch.repeat_interleave(users, lengths), flat_cols] = -math.inf
    scores[users, target_index] = target_scores  # restore a target that was also in the history
    above = (scores > target_scores[:, None]).sum(1)
    tied_others = (scores == target_scores[:, None]).sum(1) - 1
    top_k = torch.topk(scores, min(k, scores.shape[1]), dim=1).indices
    return (above + tied_others).numpy(), top_k.numpy()


def rank_eval_set(scorer: Scorer, eval_set: EvalSet, catalogue_ids: list[str], k_max: int,
                  chunk: int = 1024, adjust: Callable[[torch.Tensor, int], torch.Tensor] | None = None
                  ) -> ModelRanks:
    """Each user's pessimistic target rank and top ``k_max`` columns, scored ``chunk`` users at a time.

    ``adjust(scores, first_case)`` changes a chunk's scores before ranking (the recency prior,
    which depends on each case's time)."""
    column = {item: i for i, item in enumerate(catalogue_ids)}
    ranks, tops = [], []
    for start in range(0, len(eval_set.targets), chunk):
        histories = eval_set.histories[start:start + chunk]
        with torch.no_grad():
            scores = scorer(histories)
            if adjust is not None:
                scores = adjust(scores, start)
        excluded = [[column[i] for i in h if i in column] for h in histories]
        targets = np.array([column[t] for t in eval_set.targets[start:start + chunk]])
        chunk_ranks, chunk_top = rank_targets(scores, excluded, targets, k_max)
        ranks.append(chunk_ranks)
        tops.append(chunk_top)
    width = min(k_max, len(catalogue_ids))
    return ModelRanks(np.concatenate(ranks) if ranks else np.empty(0, dtype=np.int64),
                      np.concatenate(tops) if tops else np.empty((0, width), dtype=np.int64))


def evaluate_scorer(scorer: Scorer, eval_set: EvalSet, catalogue_ids: list[str], k: int,
                    chunk: int = 1024) -> tuple[dict[str, float], np.ndarray]:
    """Metrics of one scorer on one evaluation set; returns (metrics, top-k item columns)."""
    outcome = rank_eval_set(scorer, eval_set, catalogue_ids, k, chunk)
    return ranking_metrics(outcome.ranks, outcome.top_items, len(catalogue_ids), k), outcome.top_items


def most_popular_scorer(popularity: np.ndarray) -> Scorer:
    """MostPop: every user gets the catalogue ranked by training popularity."""
    base = torch.tensor(np.asarray(popularity), dtype=torch.float32)
    return lambda histories: base.expand(len(histories), -1)


def model_scorer(model, catalogue, text_vectors: torch.Tensor | None = None) -> Scorer:
    """Scores with a SequenceRecommender over a Catalogue (the item table is computed once).

    ``text_vectors`` reuses item text vectors already computed (training's cache) instead of
    running the text tower over the catalogue again.
    """
    model.eval()
    with torch.no_grad():
        table = catalogue.item_table(catalogue.text_vectors() if text_vectors is None else text_vectors)

    def score(histories: list[list[str]]) -> torch.Tensor:
        rows = catalogue.rows_for(histories, model.config.max_seq_len).to(table.device)
        return (model.last_hidden(table, rows) @ table[1:].T).float().cpu()

    return score
