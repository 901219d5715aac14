"""Synthetic groups built from individual users: the protocol of Kaya, Bridge and Tintarev (RecSys
2020, "Ensuring Fairness in Group Recommendations by Rank-Sensitive Balancing of Relevance", GFAR).

    python bench/groups.py --synthetic DATASET_DIR [--budget-minutes M] [--out DIR]

**Split.** The platform's own: the profiles stage's leave-last-out per user (the last interaction
by time is the test item, the second to last the validation item, the rest training history).
Only users with both held-out items are grouped.

**Groups** (``build_groups``; 1,000 per kind and size, sizes 2, 4 and 8, seeded per cell). As the
paper's published code (``GFAR_python/create_group.py`` of mesutkaya/recsys2020) does, a group
starts from a seed user and grows one member at a time, each drawn uniformly from the users the
kind allows:

- *random*: any user not yet in the group;
- *similar*: a user with PCC >= 0.3 to at least one member already in the group (the paper's rule);
- *divergent*: a user with PCC < 0.1 to every member already in the group, so every pair of
  members is below 0.1. The published code draws from the users below 0.1 to *at least one*
  member; on ML-100K's training ratings groups of 8 built that way have a mean in-group PCC of
  0.12 against 0.13 for random groups (hardly divergent), while the every-member rule gives 0.03.

PCC is the paper code's: ``numpy.corrcoef`` of the users' rating rows over the whole catalogue,
unrated items counted as 0 (not a correlation on co-rated items alone, which on ML-100K is
undefined for 15% of the pairs and rests on a median of 9 items). The rows hold the *training*
ratings only (the paper used all ratings), so no held-out item shapes a group. Seed users are
drawn without replacement from a seeded permutation, renewed when used up (ML-100K has 943 users
for 1,000 groups); a seed that cannot complete its group is skipped, as in the paper, and the next
one tried. Each cell records its groups, seeds tried, distinct groups and mean in-group PCC.

**Protocol** (``pipelines.groups.evaluation``): every member's held-out item is relevant to the
group's one list; the list is the whole catalogue ranked with the union of the members' histories
excluded, ties counted against the target. A member's target that another member has already seen
cannot be recommended to the group and counts as a miss for every model alike (the share of such
targets is recorded per cell; it caps every figure, more so in large and similar groups). The
paper's lists leave out only each member's own training items, and its members have many test
items each (5-fold cross-validation), where here each has one. So least-satisfied NDCG@10 of a
group of 8 needs all 8 held-out items in one list of 10, none of them seen by another member: on
ML-100K it is 0 for every model and strategy. The JSON's ``diagnostics`` (never a target) report,
per group, the lowest uncut NDCG (1 / log2(rank + 2) at any rank) among the members whose target
the list can hold, which still orders the models. An unreachable target counts 0 in every metric
(``target_ranks`` alone would place it just behind the available items, which is inside the top 10
when fewer than 10 remain). Per group the mean of the members' NDCG@10 (mean-member) and the
lowest (least-satisfied member); a cell's figure is the mean over its groups, with a bootstrap 95%
interval over groups.

**Models.** EASE fitted on the users' training rows, the members' scores aggregated with the
``average`` or ``least_misery`` strategy of ``pipelines.groups.aggregation`` (each member's scores
standardised); its L2 weight is chosen per strategy on validation, then EASE is refitted on
training + validation rows for the test (as ``bench/quality.py`` does). **Ours**: the platform's
model trained by the platform's stages (``bench.groups_ours``), members scored by
``serving_scorer`` on their histories and aggregated with ``group_scores``, every strategy of
``STRATEGIES`` reported; the one ours serves is chosen on validation.

**Validation** uses the same groups: each member's validation item is the target and the
histories are the training items only. Every choice (EASE's weight, ours' strategy) is the best
pooled mean-member NDCG@10 over all kinds and sizes; nothing is chosen on test targets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

K = 10
KINDS = ("random", "similar", "divergent")
SIZES = (2, 4, 8)
GROUPS_PER_CELL = 1000
SIMILAR_MIN_PCC = 0.3
DIVERGENT_MAX_PCC = 0.1
SEED_ATTEMPTS = 20  # seed users tried per group wanted before a cell gives up
BOOTSTRAP_RESAMPLES = 1000
EASE_MODELS = {"EASE + average": "average", "EASE + least misery": "least_misery"}
MEAN, LEAST = f"member_mean_ndcg@{K}", f"member_min_ndcg@{K}"
# Diagnostic: per group, the lowest uncut NDCG (1 / log2(rank + 2) at any rank) among the members
# whose target the list can hold; a group with none has no value (NaN, left out of the means).
LEAST_REACHABLE = "member_min_ndcg_reachable_members"
METRICS = (MEAN, LEAST, LEAST_REACHABLE)
POOLED = "all"
# name: (baseline, metric, cell or None for all groups pooled, the relative gain wanted)
TARGETS = {"mean_member": ("EASE + average", MEAN, None, 0.10),
           "divergent_8_least_satisfied": ("EASE + least misery", LEAST, "divergent-8", 0.15)}
# Reported beside the targets, never a target: least-satisfied NDCG@10 of groups of 8 is 0 for
# every model under this protocol (see the module docstring); this one still orders them.
DIAGNOSTICS = {"divergent_8_least_satisfied_reachable_no_cutoff": ("EASE + least misery", LEAST_REACHABLE,
                                                                   "divergent-8", None)}


# -- users ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Population:
    """The grouped users (both held-out items known) as catalogue columns, in profile order."""

    user_ids: list[str]
    train_items: list[list[str]]  # item ids, for the scorer
    valid_items: list[str]
    train: list[list[int]]  # catalogue columns
    train_valid: list[list[int]]
    valid_target: np.ndarray
    test_target: np.ndarray

    def scorer_histories(self, phase: str) -> list[list[str]]:
        """Item ids the scorer reads: training items (validation), plus the validation item (test)."""
        if phase == "validation":
            return self.train_items
        return [items + [valid] for items, valid in zip(self.train_items, self.valid_items)]

    def phase(self, phase: str) -> tuple[list[list[int]], np.ndarray]:
        """(histories, targets) of ``phase``."""
        return (self.train, self.valid_target) if phase == "validation" else (self.train_valid, self.test_target)


def population(sequences, item_ids: Sequence[str]) -> Population:
    """Users of the profiles' ``sequences`` whose validation and test items are both in the catalogue."""
    column = {item: i for i, item in enumerate(item_ids)}
    rows = [r for r, (v, t) in enumerate(zip(sequences["valid_item"], sequences["test_item"]))
            if isinstance(v, str) and isinstance(t, str) and v in column and t in column]
    users = [str(sequences["user_id"].iloc[r]) for r in rows]
    train_items = [list(sequences["train_items"].iloc[r]) for r in rows]
    valid_items = [sequences["valid_item"].iloc[r] for r in rows]
    train = [[column[i] for i in items if i in column] for items in train_items]
    return Population(users, train_items, valid_items, train, [h + [column[v]] for h, v in zip(train, valid_items)],
                      np.array([column[v] for v in valid_items], dtype=np.int64),
                      np.array([column[sequences["test_item"].iloc[r]] for r in rows], dtype=np.int64))


def rating_rows(people: Population, events, item_ids: Sequence[str]) -> np.ndarray:
    """(users, items) each user's rating of each *training* item, 0 where unrated. A pair rated twice
    keeps its last rating (by time, then event id); an event without a rating counts 1 (implicit)."""
    column = {item: i for i, item in enumerate(item_ids)}
    latest = events.sort_values(["ts", "event_id"], kind="stable").drop_duplicates(["user_id", "item_id"], keep="last")
    rating = {(u, i): (1.0 if r is None or r != r else float(r))
              for u, i, r in zip(latest["user_id"], latest["item_id"], latest["rating"])}
    rows = np.zeros((len(people.user_ids), len(item_ids)))
    for r, (user, items) in enumerate(zip(people.user_ids, people.train_items)):
        for item in items:
            if item in column:
                rows[r, column[item]] = rating.get((user, item), 1.0)
    return rows


def pearson(rows: np.ndarray) -> np.ndarray:
    """User-user Pearson correlation of rating rows over every item (unrated = 0), as the paper's
    code computes it; a constant row correlates 0 with every other, 1 with itself. Range [-1, 1]."""
    with np.errstate(divide="ignore", invalid="ignore"):
        similarity = np.corrcoef(np.asarray(rows, dtype=np.float64)) if len(rows) > 1 else np.ones((len(rows),) * 2)
    similarity = np.nan_to_num(np.atleast_2d(similarity), nan=0.0)
    np.fill_diagonal(similarity, 1.0)
    return similarity


# -- groups ---------------------------------------------------------------------------------------
def allowed_next(similarity: np.ndarray, members: Sequence[int], kind: str) -> np.ndarray:
    """Users that may join ``members`` as the next member of a group of ``kind`` (boolean per user)."""
    if kind == "random":
        allowed = np.ones(len(similarity), dtype=bool)
    elif kind == "similar":
        allowed = (similarity[list(members)] >= SIMILAR_MIN_PCC).any(axis=0)
    elif kind == "divergent":
        allowed = (similarity[list(members)] < DIVERGENT_MAX_PCC).all(axis=0)
    else:
        raise ValueError(f"unknown group kind {kind!r}; known: {', '.join(KINDS)}")
    allowed[list(members)] = False
    return allowed


def grow_group(similarity: np.ndarray, kind: str, size: int, seed_user: int, rng: np.random.Generator
               ) -> np.ndarray | None:
    """A group of ``size`` grown from ``seed_user``, each new member uniform among those allowed;
    None when at some step no user is allowed."""
    members = [int(seed_user)]
    while len(members) < size:
        candidates = np.flatnonzero(allowed_next(similarity, members, kind))
        if not len(candidates):
            return None
        members.append(int(rng.choice(candidates)))
    return np.array(members, dtype=np.int64)


def build_groups(similarity: np.ndarray, kind: str, size: int, count: int, seed: int
                 ) -> tuple[list[np.ndarray], int]:
    """Up to ``count`` groups of ``kind`` and ``size`` (row indices of ``similarity``, seed user
    first) and how many seed users were tried; the same arguments give the same groups."""
    rng = np.random.default_rng([seed, KINDS.index(kind), size])
    users = len(similarity)
    groups: list[np.ndarray] = []
    tried, queue = 0, np.empty(0, dtype=np.int64)
    while len(groups) < count and tried < SEED_ATTEMPTS * count and users >= size:
        if not len(queue):
            queue = rng.permutation(users)
        seed_user, queue = queue[0], queue[1:]
        tried += 1
        group = grow_group(similarity, kind, size, seed_user, rng)
        if group is not None:
            groups.append(group)
    return groups, tried


def mean_pairwise(similarity: np.ndarray, group: np.ndarray) -> float:
    """The mean PCC over a group's pairs of members."""
    block = similarity[np.ix_(group, group)]
    pairs = len(group) * (len(group) - 1)
    return float((block.sum() - np.trace(block)) / pairs) if pairs else 1.0


@dataclass(frozen=True)
class Cell:
    """One kind and size: its groups and, per phase, each group's excluded columns (the union of
    its members' histories)."""

    name: str
    groups: list[np.ndarray]
    excluded: dict[str, list[list[int]]]

    def unreachable(self, people: Population, phase: str) -> float:
        """Share of member targets inside their group's excluded columns (never recommendable)."""
        _, targets = people.phase(phase)
        hits = [int(targets[r]) in set(ex) for rows, ex in zip(self.groups, self.excluded[phase]) for r in rows]
        return float(np.mean(hits)) if hits else float("nan")

    def groups_with_unreachable(self, people: Population, phase: str) -> float:
        """Share of groups with at least one member whose target is unreachable (its least-satisfied
        member scores 0 whatever the model)."""
        _, targets = people.phase(phase)
        hits = [any(int(targets[r]) in set(ex) for r in rows) for rows, ex in zip(self.groups, self.excluded[phase])]
        return float(np.mean(hits)) if hits else float("nan")


def make_cells(people: Population, similarity: np.ndarray, kinds: Sequence[str], sizes: Sequence[int], count: int,
               seed: int) -> tuple[dict[str, Cell], dict[str, dict[str, Any]]]:
    """Every kind and size's groups, and what the JSON records about them."""
    cells, info = {}, {}
    for kind in kinds:
        for size in sizes:
            groups, tried = build_groups(similarity, kind, size, count, seed)
            name = f"{kind}-{size}"
            excluded = {phase: [sorted(set().union(*(people.phase(phase)[0][r] for r in rows))) for rows in groups]
                        for phase in ("validation", "test")}
            cells[name] = Cell(name, groups, excluded)
            pcc = [mean_pairwise(similarity, g) for g in groups]
            info[name] = {"groups": len(groups), "seed_users_tried": tried,
                          "distinct_groups": len({tuple(sorted(g.tolist())) for g in groups}),
                          "mean_in_group_pcc": round(float(np.mean(pcc)), 4) if pcc else None,
                          "unreachable_test_targets": round(cells[name].unreachable(people, "test"), 4),
                          "groups_with_an_unreachable_test_target": round(
                              cells[name].groups_with_unreachable(people, "test"), 4),
                          "unreachable_validation_targets": round(cells[name].unreachable(people, "validation"), 4)}
    return cells, info


# -- measuring ------------------------------------------------------------------------------------
def cell_satisfaction(scores: np.ndarray, cell: Cell, people: Population, phase: str, strategy: str,
                      relevant_items: int, k: int = K) -> dict[str, np.ndarray]:
    """Per group of ``cell``, each of ``METRICS`` for the list ``strategy`` builds from the members'
    rows of ``scores`` with the group's history excluded (a member whose target is excluded scores 0)."""
    from pipelines.groups.aggregation import group_scores
    from pipelines.groups.evaluation import groups_member_ranks, ndcg_at_k, per_group_mean_and_min

    _, targets = people.phase(phase)
    if not cell.groups:
        return {metric: np.empty(0) for metric in METRICS}
    ranked = np.vstack([group_scores(scores[rows], strategy, k=k, relevant_items=relevant_items,
                                     exclude=np.array(excluded, dtype=np.int64))
                        for rows, excluded in zip(cell.groups, cell.excluded[phase])])
    member_targets = [targets[rows].tolist() for rows in cell.groups]
    ranks = groups_member_ranks(ranked, member_targets, cell.excluded[phase])
    reachable = np.array([t not in set(ex) for ts, ex in zip(member_targets, cell.excluded[phase]) for t in ts])
    counts = [len(rows) for rows in cell.groups]
    mean, least = per_group_mean_and_min(np.where(reachable, ndcg_at_k(ranks, k), 0.0), counts)
    _, lowest = per_group_mean_and_min(np.where(reachable, 1.0 / np.log2(ranks + 2.0), np.inf), counts)
    return {MEAN: mean, LEAST: least, LEAST_REACHABLE: np.where(np.isfinite(lowest), lowest, np.nan)}


def satisfaction(scores: np.ndarray, cells: Mapping[str, Cell], people: Population, phase: str, strategy: str,
                 relevant_items: int) -> dict[str, dict[str, np.ndarray]]:
    return {name: cell_satisfaction(scores, cell, people, phase, strategy, relevant_items)
            for name, cell in cells.items()}


def pooled(values: Mapping[str, Mapping[str, np.ndarray]], metric: str = MEAN) -> np.ndarray:
    """Every group's ``metric`` over every cell, one array."""
    parts = [v[metric] for v in values.values()]
    return np.concatenate(parts) if parts else np.empty(0)


def summarise(values: Mapping[str, Mapping[str, np.ndarray]], seed: int) -> dict[str, dict[str, Any]]:
    """Per cell and pooled: each metric's mean over groups and its bootstrap 95% interval."""
    from pipelines.evaluate.analysis import bootstrap_interval, resample_indices

    everything = {**values, POOLED: {metric: pooled(values, metric) for metric in METRICS}}
    out = {}
    for name, per_group in everything.items():
        out[name] = {"groups": int(len(per_group[MEAN]))}
        for metric in METRICS:
            values = per_group[metric][~np.isnan(per_group[metric])]  # the diagnostic skips groups
            indices = resample_indices(len(values), BOOTSTRAP_RESAMPLES, seed)
            out[name][metric] = _mean(values)
            out[name][f"{metric}_ci95"] = _rounded(bootstrap_interval(values, indices))
        out[name][f"{LEAST_REACHABLE}_groups"] = int((~np.isnan(per_group[LEAST_REACHABLE])).sum())
    return out


def relative_gain(ours: np.ndarray, base: np.ndarray, seed: int) -> dict[str, Any]:
    """ours / base - 1 on the means over the same groups, with a paired bootstrap 95% interval."""
    from pipelines.evaluate.analysis import ratio_interval, resample_indices

    ours, base = np.asarray(ours, dtype=np.float64), np.asarray(base, dtype=np.float64)
    kept = ~(np.isnan(ours) | np.isnan(base))  # groups without a value (the diagnostic's) are left out
    ours, base = ours[kept], base[kept]
    if not len(ours) or base.mean() == 0:
        return {"ours": _mean(ours), "baseline_value": _mean(base), "relative": None, "relative_ci95": None,
                "groups_compared": int(len(ours))}
    low, high = ratio_interval(ours, base, resample_indices(len(ours), BOOTSTRAP_RESAMPLES, seed))
    return {"ours": _mean(ours), "baseline_value": _mean(base),
            "relative": round(float(ours.mean() / base.mean() - 1.0), 4),
            "relative_ci95": _rounded((low - 1.0, high - 1.0)),
            "groups_compared": int(len(ours))}


def ease_models(people: Population, cells: Mapping[str, Cell], n_items: int, lambdas: Sequence[float], seed: int
                ) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]]:
    """EASE + average and EASE + least misery: the weight chosen per strategy on validation (pooled
    mean-member NDCG), then refitted on training + validation rows for the test."""
    from bench.groups_ours import progress
    from pipelines.groups import baselines as gb

    train_rows = gb.binary_rows(people.train, n_items)
    family = gb.EaseFamily(train_rows)
    curves: dict[str, dict[float, float]] = {name: {} for name in EASE_MODELS}
    for lam in lambdas:
        scores = train_rows @ family.weights(lam)
        for name, strategy in EASE_MODELS.items():
            curves[name][float(lam)] = _mean(pooled(satisfaction(scores, cells, people, "validation", strategy, 0),
                                                    MEAN))
        progress(f"EASE validation, lambda {lam:g}: "
                 + ", ".join(f"{n} {c[float(lam)]:.4f}" for n, c in curves.items()))
    final_rows = gb.binary_rows(people.train_valid, n_items)
    final = gb.EaseFamily(final_rows)
    rows, values = {}, {}
    for name, strategy in EASE_MODELS.items():
        lam = max(curves[name], key=curves[name].get)
        values[name] = satisfaction(final_rows @ final.weights(lam), cells, people, "test", strategy, 0)
        by_lambda = {f"{weight:g}": round(value, 6) for weight, value in curves[name].items()}
        rows[name] = {"lambda": lam, "validation": {"metric": f"{MEAN}, pooled", "by_lambda": by_lambda},
                      "test": summarise(values[name], seed)}
    return rows, values


def ours_models(valid_scores: np.ndarray, test_scores: np.ndarray, people: Population, cells: Mapping[str, Cell],
                strategies: Sequence[str], relevant_items: int, seed: int
                ) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, tuple[np.ndarray, np.ndarray]]], str]:
    """Every strategy of ours on validation and test; returns rows, test values and the strategy
    chosen on validation (pooled mean-member NDCG, the earlier strategy on a tie)."""
    from bench.groups_ours import progress

    rows, values, chosen_on = {}, {}, {}
    for strategy in strategies:
        valid = satisfaction(valid_scores, cells, people, "validation", strategy, relevant_items)
        values[strategy] = satisfaction(test_scores, cells, people, "test", strategy, relevant_items)
        rows[strategy] = {"validation": summarise(valid, seed), "test": summarise(values[strategy], seed)}
        chosen_on[strategy] = rows[strategy]["validation"][POOLED][MEAN]
        progress(f"ours + {strategy}: validation {chosen_on[strategy]:.4f}, "
                 f"test {rows[strategy]['test'][POOLED][MEAN]:.4f}")
    chosen = max(strategies, key=lambda s: (chosen_on[s], -list(strategies).index(s)))
    return rows, values, chosen


def target_summary(ours: Mapping[str, Mapping[str, np.ndarray]],
                   baselines: Mapping[str, Mapping[str, Mapping[str, np.ndarray]]], seed: int,
                   comparisons: Mapping[str, tuple[str, str, str | None, float | None]] = TARGETS
                   ) -> dict[str, dict[str, Any]]:
    """Ours (the chosen strategy) against the baseline each comparison names, on the same groups."""
    out = {}
    for name, (baseline, metric, cell, wanted) in comparisons.items():
        if cell is not None and cell not in ours:  # e.g. --sizes without 8: nothing to compare
            gain = relative_gain(np.empty(0), np.empty(0), seed)
        else:
            pick = (lambda values: pooled(values, metric)) if cell is None else (lambda values: values[cell][metric])
            gain = relative_gain(pick(ours), pick(baselines[baseline]), seed)
        row = {"baseline": baseline, "metric": metric, "groups": POOLED if cell is None else cell, **gain}
        if wanted is not None:
            row.update(target_relative=wanted, met=gain["relative"] is not None and gain["relative"] >= wanted)
        if gain["relative"] is None:
            row["note"] = ("no such groups" if cell is not None and cell not in ours else
                           "the baseline scores 0: no relative gain exists (ours scores "
                           f"{gain['ours']:.4f}); see the module docstring")
        out[name] = row
    return out


def run_synthetic(trained, args) -> dict[str, Any]:
    """The synthetic-groups document for the model ``trained`` (``bench.groups_ours.Trained``)."""
    from bench.groups_ours import progress, score_matrix, warehouse_events
    from pipelines.groups.aggregation import STRATEGIES

    item_ids = trained.item_ids
    people = population(trained.profiles.sequences, item_ids)
    similarity = pearson(rating_rows(people, warehouse_events(trained.warehouse_url), item_ids))
    cells, info = make_cells(people, similarity, KINDS, args.sizes, args.groups_per_cell, args.seed)
    progress(f"{len(people.user_ids)} users, {len(item_ids)} items; groups per cell: "
             + ", ".join(f"{n} {c['groups']}" for n, c in info.items()))
    baseline_rows, baseline_values = ease_models(people, cells, len(item_ids), args.lambdas, args.seed)
    scorer = trained.scorer()
    valid_scores = score_matrix(scorer, people.scorer_histories("validation"), len(item_ids))
    test_scores = score_matrix(scorer, people.scorer_histories("test"), len(item_ids))
    relevant_items = int(trained.params.get("groups", {}).get("relevant_items", 20))
    ours_rows, ours_values, chosen = ours_models(valid_scores, test_scores, people, cells, STRATEGIES,
                                                 relevant_items, args.seed)
    models = {**baseline_rows, **{f"ours + {s}": row for s, row in ours_rows.items()}}
    return {
        "mode": "synthetic", "k": K,
        "protocol": {"split": "leave-last-out per user (profiles stage)", "users": len(people.user_ids),
                     "items": len(item_ids), "kinds": list(KINDS), "sizes": list(args.sizes),
                     "groups_per_cell": args.groups_per_cell, "seed": args.seed,
                     "similar_min_pcc": SIMILAR_MIN_PCC, "divergent_max_pcc": DIVERGENT_MAX_PCC,
                     "pcc": "numpy.corrcoef of training rating rows, unrated = 0",
                     "divergent_rule": "PCC < 0.1 with every member already in the group",
                     "gfar_relevant_items": relevant_items, "cells": info,
                     "bootstrap_resamples": BOOTSTRAP_RESAMPLES},
        "training": trained.training_summary(),
        "ours_strategy": {"chosen": chosen, "chosen_on": f"validation {MEAN}, pooled over every kind and size",
                          "validation": {s: round(r["validation"][POOLED][MEAN], 6) for s, r in ours_rows.items()}},
        "models": models,
        "summary": target_summary(ours_values[chosen], baseline_values, args.seed),
        "diagnostics": target_summary(ours_values[chosen], baseline_values, args.seed, DIAGNOSTICS),
    }


def format_tables(document: Mapping[str, Any]) -> str:
    """Two markdown tables (mean-member and least-satisfied NDCG@10 on test), one row per model,
    one column per kind and size and the pooled mean; the chosen strategy is starred."""
    chosen = f"ours + {document['ours_strategy']['chosen']}"
    names = list(document["protocol"]["cells"]) + [POOLED]
    lines = []
    for metric, title in ((MEAN, "mean-member NDCG@10"), (LEAST, "least-satisfied-member NDCG@10"),
                          (LEAST_REACHABLE, "diagnostic: least-satisfied reachable member, NDCG without cutoff")):
        lines += [f"\n{title} (test)", "| model | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
        for name, row in document["models"].items():
            label = f"{name} *" if name == chosen else name
            lines.append(f"| {label} | " + " | ".join(f"{row['test'][n][metric]:.4f}" for n in names) + " |")
    lines.append(f"\n* chosen on validation ({document['ours_strategy']['chosen_on']})")
    for target, row in {**document["summary"], **document.get("diagnostics", {})}.items():
        interval = row["relative_ci95"] or [float("nan")] * 2
        relative = "n/a" if row["relative"] is None else f"{row['relative']:+.1%}"
        lines.append(f"{target}: ours {row['ours']:.4f} vs {row['baseline']} {row['baseline_value']:.4f} "
                     f"({row['metric']}, groups {row['groups']}): {relative} "
                     f"(95% {interval[0]:+.1%} to {interval[1]:+.1%})"
                     + (f"; target >= {row['target_relative']:+.0%}: {'met' if row['met'] else 'NOT met'}"
                        if "met" in row else " (diagnostic, no target)")
                     + (f" [{row['note']}]" if "note" in row else ""))
    return "\n".join(lines)


def _mean(values: np.ndarray) -> float:
    return round(float(np.mean(values)), 6) if len(values) else float("nan")


def _rounded(interval: tuple[float, float]) -> list[float]:
    return [round(float(v), 6) for v in interval]
