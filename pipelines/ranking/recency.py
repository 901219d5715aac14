"""The recency prior: how often each item was chosen in the days before a moment, added to a
model's scores.

Tomorrow's choices lean towards what is popular now, which a sequence model reading one user's
history cannot see. Served scores are the model's scores standardised per user plus ``weight``
times the standardised log count of each item's events in the ``window_days`` whole days before
the moment (0: every day before it). An item with no event at all before the moment (new, or not
chosen yet) gets the average, 0, instead of the lowest count: the prior has no evidence on it, and
burying it would keep a new item off every list. A case is scored as of the day of its target
(the target's own day is never counted) and counts only the events its phase may see: no held-out
item of the leave-last-out split is counted where it is held out. A night serves as of its data
interval's end, counting every event. Evaluate chooses the weight and the window on the validation split,
with 0 (off) among the weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from pipelines.ranking.metrics import ndcg_per_case
from pipelines.ranking.scoring import EvalSet, Scorer, rank_targets

DAY_S = 86_400
# The held-out events each phase counts: a validation case sees the training events only, a test
# case also the validation items (as its history does), a night every event.
VALIDATION: tuple[str, ...] = ()
TEST = ("valid",)
SERVING = ("valid", "test")


@dataclass(frozen=True)
class RecencyPrior:
    weight: float = 0.0
    window_days: int = 0  # 0: every day before the moment

    @property
    def off(self) -> bool:
        return self.weight == 0

    def as_record(self) -> dict[str, float | int]:
        return {"weight": self.weight, "window_days": self.window_days}

    @classmethod
    def from_record(cls, record: object) -> RecencyPrior:
        """The prior recorded with a version (``metrics.json``); a version without one serves none."""
        if not isinstance(record, dict):
            return cls()
        return cls(float(record.get("weight", 0.0)), int(record.get("window_days", 0)))


class ItemTimeline:
    """Every event's catalogue column and day, sorted by day: each item's count over any days."""

    def __init__(self, columns: np.ndarray, days: np.ndarray, n_items: int) -> None:
        order = np.argsort(days, kind="stable")
        self.columns = np.asarray(columns, dtype=np.int64)[order]
        self.days = np.asarray(days, dtype=np.int64)[order]
        self.n_items = n_items
        self.first_day = np.full(n_items, np.iinfo(np.int64).max, dtype=np.int64)  # never: after every day
        np.minimum.at(self.first_day, self.columns, self.days)

    @classmethod
    def from_sequences(cls, sequences: pd.DataFrame, item_ids: Sequence[str],
                       held_out: Sequence[str] = SERVING) -> ItemTimeline:
        """The profiles' training events and the ``held_out`` ones ("valid", "test") with their times:
        ``VALIDATION``, ``TEST`` or ``SERVING``, so that no phase counts an item it holds out of every
        user's history. Items outside ``item_ids`` are not counted. Profiles without event times give
        an empty timeline."""
        column = {item: i for i, item in enumerate(item_ids)}
        items: list[str] = []
        seconds: list[int] = []
        if "train_ts" in sequences:
            for history, stamps in zip(sequences["train_items"], sequences["train_ts"]):
                items.extend(history)
                seconds.extend(int(s) for s in stamps)
            for name in held_out:
                if f"{name}_ts" not in sequences:
                    continue
                known = sequences[sequences[f"{name}_item"].notna() & sequences[f"{name}_ts"].notna()]
                items.extend(known[f"{name}_item"])
                seconds.extend(int(s) for s in known[f"{name}_ts"])
        kept = [(column[item], s // DAY_S) for item, s in zip(items, seconds) if item in column]
        columns = np.array([c for c, _ in kept], dtype=np.int64)
        days = np.array([d for _, d in kept], dtype=np.int64)
        return cls(columns, days, len(item_ids))

    def counts_before(self, as_of_days: np.ndarray, window_days: int) -> np.ndarray:
        """(cases, items): each item's events in the ``window_days`` days before each case's day
        (0: all days before it); the case's own day is not counted."""
        as_of_days = np.asarray(as_of_days, dtype=np.int64)
        out = np.zeros((len(as_of_days), self.n_items), dtype=np.float32)
        for day in np.unique(as_of_days):
            stop = np.searchsorted(self.days, day, side="left")
            start = np.searchsorted(self.days, day - window_days, side="left") if window_days else 0
            out[as_of_days == day] = np.bincount(self.columns[start:stop], minlength=self.n_items)
        return out

    def unseen_before(self, as_of_days: np.ndarray) -> np.ndarray:
        """(cases, items): True where the item has no event before the case's day."""
        return self.first_day[None, :] >= np.asarray(as_of_days, dtype=np.int64)[:, None]


def standardised(values: torch.Tensor) -> torch.Tensor:
    """Each row minus its mean over the catalogue, over its standard deviation (a constant row: 0)."""
    centred = values - values.mean(dim=1, keepdim=True)
    spread = centred.std(dim=1, keepdim=True)
    return torch.where(spread > 0, centred / spread.clamp_min(1e-12), torch.zeros_like(centred))


def with_prior(scores: torch.Tensor, counts: np.ndarray, prior: RecencyPrior, unseen: np.ndarray | None = None
               ) -> torch.Tensor:
    """``scores`` with the prior added; unchanged when the prior is off. ``unseen`` (cases, items)
    marks items with no event before the case: their prior is 0, the average."""
    if prior.off:
        return scores
    popularity = standardised(torch.log1p(torch.from_numpy(np.ascontiguousarray(counts, dtype=np.float32))))
    if unseen is not None:
        popularity = popularity.masked_fill(torch.from_numpy(np.ascontiguousarray(unseen)), 0.0)
    return standardised(scores.float()) + prior.weight * popularity


def scorer_as_of(scorer: Scorer, timeline: ItemTimeline, prior: RecencyPrior, as_of_day: int) -> Scorer:
    """``scorer`` with the prior as of one day for every history (a night's serving scorer)."""
    if prior.off:
        return scorer
    counts = timeline.counts_before(np.array([as_of_day]), prior.window_days)
    unseen = timeline.unseen_before(np.array([as_of_day]))

    def score(histories: list[list[str]]) -> torch.Tensor:
        with torch.no_grad():
            scores = scorer(histories)
        shape = (len(histories), counts.shape[1])
        return with_prior(scores, np.broadcast_to(counts, shape), prior, np.broadcast_to(unseen, shape))

    return score


@dataclass(frozen=True)
class CasePrior:
    """The prior for the cases of one evaluation set: case i as of day ``as_of_days[i]``."""

    timeline: ItemTimeline
    prior: RecencyPrior
    as_of_days: np.ndarray

    def adjust(self, scores: torch.Tensor, start: int) -> torch.Tensor:
        if self.prior.off:
            return scores
        days = self.as_of_days[start:start + scores.shape[0]]
        return with_prior(scores, self.timeline.counts_before(days, self.prior.window_days), self.prior,
                          self.timeline.unseen_before(days))


def choose_prior(scorer: Scorer, valid: EvalSet, timeline: ItemTimeline, item_ids: Sequence[str],
                 weights: Sequence[float], windows_days: Sequence[int], k: int,
                 chunk: int = 1024) -> tuple[RecencyPrior, dict[str, float]]:
    """The (weight, window) with the best NDCG@k on ``valid``, each case as of its target's day
    (ties: the lighter weight, then the shorter window, so off wins a tie with on); returns it and
    every pair's NDCG@k."""
    column = {item: i for i, item in enumerate(item_ids)}
    as_of_days = case_days(valid)
    shortest_first = sorted({int(d) for d in windows_days}, key=lambda d: d or float("inf"))  # 0: all days, last
    candidates = [RecencyPrior()] + [RecencyPrior(float(w), d) for w in sorted(set(weights)) if w > 0
                                     for d in shortest_first]
    totals = np.zeros(len(candidates))
    for start in range(0, len(valid.targets), chunk):
        histories = valid.histories[start:start + chunk]
        with torch.no_grad():
            scores = scorer(histories).float()
        excluded = [[column[i] for i in h if i in column] for h in histories]
        targets = np.array([column[t] for t in valid.targets[start:start + chunk]])
        days = as_of_days[start:start + len(histories)]
        unseen = timeline.unseen_before(days)
        totals[0] += ndcg_per_case(rank_targets(scores, excluded, targets, k)[0], k).sum()
        for window in shortest_first:  # one window's counts at a time: (chunk, items) each
            counts = timeline.counts_before(days, window)
            for n, candidate in enumerate(candidates):
                if not candidate.off and candidate.window_days == window:
                    ranks, _ = rank_targets(with_prior(scores, counts, candidate, unseen), excluded, targets, k)
                    totals[n] += ndcg_per_case(ranks, k).sum()
    curve = {label(c): round(float(t / max(len(valid.targets), 1)), 6) for c, t in zip(candidates, totals)}
    best = max(range(len(candidates)), key=lambda n: (round(totals[n], 9), -n))
    return candidates[best], curve


def label(prior: RecencyPrior) -> str:
    if prior.off:
        return "off"
    return f"weight {prior.weight:g}, {prior.window_days or 'all'} days"


def case_days(cases: EvalSet) -> np.ndarray:
    """The day of each case's target; -1 where the profiles hold no time (nothing is counted before it)."""
    seconds = cases.target_ts or [None] * len(cases.targets)
    return np.array([-1 if s is None else s // DAY_S for s in seconds], dtype=np.int64)


def case_prior(timeline: ItemTimeline, prior: RecencyPrior, cases: EvalSet) -> CasePrior:
    return CasePrior(timeline, prior, case_days(cases))

