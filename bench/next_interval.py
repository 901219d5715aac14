"""The next-interval protocol of ``bench/nights.py``: a model trained before a night is judged on
what users do in the interval after it.

For every user active in the interval who has history before it, every item they interacted with
in the interval (and not before) is relevant. The whole catalogue is ranked, the user's history
excluded, ties broken against the relevant items (pessimistic). NDCG@k (binary gains, ideal DCG
over min(relevant, k) hits), Recall@k (hits / relevant) and HR@k (at least one hit), averaged over
users. Slices keep the same ranking and change who or what counts (``slice_cases``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

Scorer = Callable[[list[list[str]]], torch.Tensor]
SCORE_CHUNK = 512


@dataclass(frozen=True)
class Cases:
    """The judged users of one interval: their history (time order) and relevant items."""

    user_ids: list[str]
    histories: list[list[str]]
    relevant: list[set[str]]


def interval_cases(events: pd.DataFrame, start_s: int, end_s: int) -> Cases:
    """Cases of the interval [start_s, end_s) from ``events`` (user_id, item_id, seconds, order),
    users sorted; a user whose interval items were all in their history is left out."""
    ordered = events.sort_values(["user_id", "seconds", "order"], kind="stable")
    before = ordered[ordered["seconds"] < start_s]
    inside = ordered[(ordered["seconds"] >= start_s) & (ordered["seconds"] < end_s)]
    histories = before.groupby("user_id", sort=True)["item_id"].agg(list)
    wanted = inside.groupby("user_id", sort=True)["item_id"].agg(set)
    cases = Cases([], [], [])
    for user, items in wanted.items():
        history = histories.get(user)
        if history is None:
            continue
        relevant = items - set(history)
        if relevant:
            cases.user_ids.append(user)
            cases.histories.append(list(history))
            cases.relevant.append(relevant)
    return cases


def pessimistic_ranks(scores: np.ndarray, excluded: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    """1-based ranks of the relevant columns among the columns not excluded, every tie ordered
    against them (a relevant item ranks after each unrelevant item of equal score)."""
    keep = ~excluded
    candidates = scores[keep]
    is_relevant = relevant[keep]
    order = np.lexsort((is_relevant, -candidates))  # by score descending, unrelevant first on ties
    position = np.empty(len(order), dtype=np.int64)
    position[order] = np.arange(1, len(order) + 1)
    return np.sort(position[is_relevant])


def user_metrics(ranks: np.ndarray, n_relevant: int, k: int) -> dict[str, float]:
    hits = ranks[ranks <= k]
    dcg = float(np.sum(1.0 / np.log2(hits + 1)))
    ideal = float(np.sum(1.0 / np.log2(np.arange(2, min(n_relevant, k) + 2))))
    return {f"ndcg@{k}": dcg / ideal if ideal else 0.0, f"recall@{k}": len(hits) / n_relevant if n_relevant else 0.0,
            f"hr@{k}": float(len(hits) > 0)}


def score_cases(scorer: Scorer, cases: Cases, item_ids: Sequence[str], chunk: int = SCORE_CHUNK) -> np.ndarray:
    """(users, items) float32 scores of every judged user."""
    parts = []
    for start in range(0, len(cases.histories), chunk):
        with torch.no_grad():
            parts.append(scorer(cases.histories[start:start + chunk]).float().cpu().numpy())
    return np.concatenate(parts) if parts else np.zeros((0, len(item_ids)), dtype=np.float32)


def judge(scores: np.ndarray, cases: Cases, item_ids: Sequence[str], k: int,
          slices: Mapping[str, tuple[set[str] | None, set[str] | None]]) -> dict[str, dict[str, float]]:
    """Mean metrics over the cases, overall and per slice.

    A slice is (users, items): only those users count (None: all), and only those items are
    relevant (None: all); a user left with no relevant item does not count. Each slice reports
    its number of users.
    """
    return mean_rows(user_rows(scores, cases, item_ids, k, slices))


def mean_rows(rows: Mapping[str, list[dict[str, float]]]) -> dict[str, dict[str, float]]:
    """``user_rows`` averaged per slice, with each slice's number of users."""
    return {name: {**{m: round(float(np.mean([r[m] for r in found])), 6) for m in found[0]}, "users": len(found)}
            if found else {"users": 0} for name, found in rows.items()}


def user_rows(scores: np.ndarray, cases: Cases, item_ids: Sequence[str], k: int,
              slices: Mapping[str, tuple[set[str] | None, set[str] | None]]) -> dict[str, list[dict[str, float]]]:
    """Each counted user's metrics, overall ("all") and per slice (see ``judge``), in case order: two
    models judged on the same cases give paired rows."""
    column = {item: i for i, item in enumerate(item_ids)}
    wanted = {"all": (None, None), **slices}
    rows: dict[str, list[dict[str, float]]] = {name: [] for name in wanted}
    for u, (user, history, relevant) in enumerate(zip(cases.user_ids, cases.histories, cases.relevant)):
        excluded = np.zeros(len(item_ids), dtype=bool)
        excluded[[column[i] for i in history if i in column]] = True
        for name, (users, items) in wanted.items():
            if users is not None and user not in users:
                continue
            counted = [column[i] for i in relevant if i in column and (items is None or i in items)]
            if not counted:
                continue
            mask = np.zeros(len(item_ids), dtype=bool)
            mask[counted] = True
            ranks = pessimistic_ranks(scores[u], excluded, mask)
            rows[name].append(user_metrics(ranks, len(counted), k))
    return rows


def popularity_scorer(events: pd.DataFrame, item_ids: Sequence[str], start_s: int, end_s: int) -> Scorer:
    """MostPop over the events in [start_s, end_s)."""
    window = events[(events["seconds"] >= start_s) & (events["seconds"] < end_s)]
    counts = window["item_id"].value_counts()
    base = torch.tensor([float(counts.get(i, 0)) for i in item_ids])
    return lambda histories: base.expand(len(histories), -1)


def choose_popularity_window(events: pd.DataFrame, item_ids: Sequence[str], night_s: int, interval_s: int,
                             windows_days: Sequence[float], k: int) -> tuple[float, dict[float, float]]:
    """The trailing window (days; 0 = all history) whose MostPop scores best on the interval before
    the night, counted before that interval: validation, never the judged interval."""
    valid_start = night_s - interval_s
    cases = interval_cases(events[events["seconds"] < night_s], valid_start, night_s)
    curve = {}
    for days in windows_days:
        start = valid_start - int(days * 86400) if days else -2**62
        scores = score_cases(popularity_scorer(events, item_ids, start, valid_start), cases, item_ids)
        curve[days] = judge(scores, cases, item_ids, k, {})["all"].get(f"ndcg@{k}", 0.0)
    return max(curve, key=curve.get), curve


def first_seen(events: pd.DataFrame, column: str) -> pd.Series:
    """Each user's or item's first event time (seconds)."""
    return events.groupby(column)["seconds"].min()
