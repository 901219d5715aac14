"""The groups section of a night's evaluation: interest groups, group lists and cold-user backoff.

* Interest groups are found with the candidate from the training histories only, so the held-out
  items never shape the groups they are judged on.
* Group lists are judged on evaluation groups drawn inside interest groups
  (``pipelines.groups.sampling``) and on the warehouse's explicit groups when it has them. Every
  strategy of ``groups.strategies`` is scored on validation; the best one serves (explicit groups
  decide when there are any: they are the real thing). Explicit groups also try ``group_model``
  (the model on the group's own history plus its members' average, plus EASE on the group's whole
  history where validation wants it: ``pipelines.groups.item_model``); ``explicit_strategy`` is
  the best of all on their validation choices.
* Cold users: users with at most ``groups.backoff_max_interactions`` blend with their interest
  group; the strength is chosen on validation over all evaluated users (so warm users are not
  traded away); its effect is reported on test for cold users, MostPop beside, and warm users.

The gate's group metrics (``GROUP_METRICS`` at the headline k) are computed for every model:
mean- and least-satisfied-member NDCG of the sampled groups' lists, the explicit groups' NDCG and
HR of their held-out choice, and cold users' NDCG and HR (with the backoff where a model has user
scores to blend).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from pipelines.evaluate.analysis import COLD_USER_MAX, bootstrap_interval, resample_indices
from pipelines.groups.aggregation import GROUP_MODEL, group_model_scores, group_scores
from pipelines.groups.backoff import backoff_weights, blend_with_group, choose_strength, interest_group_scores
from pipelines.groups.evaluation import hit_at_k, ndcg_at_k, target_ranks
from pipelines.groups.item_model import OFF, ItemModelChoice, choose_item_model, fitted_item_part
from pipelines.groups.sampling import sample_groups

if TYPE_CHECKING:
    import pandas as pd

    from pipelines.config import GroupsParams
    from pipelines.ranking.scoring import Scorer

log = logging.getLogger("retrain.evaluate")
SCORE_CHUNK = 2048
GROUP_CHUNK = 256  # evaluation groups whose members are ranked together
MOSTPOP = "MostPop"  # scores every user alike: no backoff to blend


@dataclass(frozen=True)
class Population:
    """Every profiled user's histories as catalogue columns, and who is evaluated."""

    user_ids: list[str]
    train: list[list[int]]  # the validation phase's history
    train_valid: list[list[int]]  # the test phase's history
    valid_target: np.ndarray  # column, -1 without one
    test_target: np.ndarray

    @property
    def evaluated(self) -> np.ndarray:
        return np.flatnonzero((self.valid_target >= 0) & (self.test_target >= 0))


def population(sequences: pd.DataFrame, item_ids: Sequence[str]) -> Population:
    column = {item: i for i, item in enumerate(item_ids)}

    def cols(items) -> list[int]:
        return [column[i] for i in items if i in column]

    train = [cols(h) for h in sequences["train_items"]]
    valid = [column.get(v, -1) if isinstance(v, str) else -1 for v in sequences["valid_item"]]
    test = [column.get(t, -1) if isinstance(t, str) else -1 for t in sequences["test_item"]]
    return Population(list(sequences["user_id"]), train,
                      [h + ([v] if v >= 0 else []) for h, v in zip(train, valid)],
                      np.array(valid, dtype=np.int64), np.array(test, dtype=np.int64))


def score_matrix(scorer: Scorer, histories: list[list[str]], n_items: int) -> np.ndarray:
    """(users, items) float32 scores, ``SCORE_CHUNK`` users per call."""
    import torch

    with torch.no_grad():
        parts = [scorer(histories[s:s + SCORE_CHUNK]).float().cpu().numpy()
                 for s in range(0, len(histories), SCORE_CHUNK)]
    return np.concatenate(parts) if parts else np.zeros((0, n_items), dtype=np.float32)


def ranks_of(scores: np.ndarray, targets: np.ndarray, excluded: list[list[int]]) -> np.ndarray:
    return target_ranks(scores, targets.tolist(), excluded)


def member_lists(scores: np.ndarray, groups: list[np.ndarray], targets: np.ndarray, history: list[list[int]],
                 strategy: str, k: int, relevant_items: int) -> tuple[np.ndarray, np.ndarray]:
    """Per group, the mean-member and least-satisfied-member NDCG@k of its one list (the members'
    histories excluded), as ``pipelines.groups.evaluation.member_satisfaction`` computes them; the
    members of ``GROUP_CHUNK`` groups are ranked in one call."""
    means, least = [], []
    for start in range(0, len(groups), GROUP_CHUNK):
        lists, member_targets, excluded, owner = [], [], [], []
        for index, rows in enumerate(groups[start:start + GROUP_CHUNK]):
            seen = sorted(set().union(*(history[r] for r in rows)))
            lists.append(group_scores(scores[rows], strategy, k=k, relevant_items=relevant_items,
                                      exclude=np.array(seen, dtype=np.int64)))
            member_targets += targets[rows].tolist()
            excluded += [seen] * len(rows)
            owner += [index] * len(rows)
        per_member = ndcg_at_k(target_ranks(np.stack(lists)[owner], member_targets, excluded), k)
        bounds = np.flatnonzero(np.r_[True, np.diff(owner) != 0])  # each group's first member
        means.append(np.add.reduceat(per_member, bounds) / np.diff(np.r_[bounds, len(owner)]))
        least.append(np.minimum.reduceat(per_member, bounds))
    return (np.concatenate(means), np.concatenate(least)) if means else (np.empty(0), np.empty(0))


@dataclass(frozen=True)
class GroupCase:
    """One explicit group's held-out choice: member rows, the target column, the group's history."""

    members: list[int]
    target: int
    history: list[str]
    excluded: list[int]  # the history's catalogue columns


def explicit_cases(groups: pd.DataFrame | None, user_row: Mapping[str, int], item_ids: Sequence[str],
                   target: str) -> list[GroupCase]:
    """Each explicit group with a ``target`` item (``valid_item`` or ``test_item``) and at least one
    profiled member."""
    if groups is None or not len(groups):
        return []
    column = {item: i for i, item in enumerate(item_ids)}
    cases = []
    for _, group in groups.iterrows():
        members = [user_row[u] for u in group["members"] if u in user_row]
        item = group[target]
        if not members or not isinstance(item, str) or item not in column:
            continue
        history = list(group["train_items"]) + ([group["valid_item"]] if target == "test_item" else [])
        cases.append(GroupCase(members, column[item], history, [column[i] for i in history if i in column]))
    return cases


def explicit_ranks(scores: np.ndarray, cases: list[GroupCase], own: np.ndarray, item_part: np.ndarray | None,
                   strategy: str, k: int, relevant_items: int) -> np.ndarray:
    """Each case's target rank; ``own`` holds the model's scores of each group's own history and
    ``item_part`` the group item model's weighted scores of it (None: off)."""
    ranks = []
    for index, (case, own_scores) in enumerate(zip(cases, own)):
        exclude = np.array(case.excluded, dtype=np.int64)
        ranked = (group_model_scores(own_scores, scores[case.members], exclude=exclude,
                                     item_part=None if item_part is None else item_part[index])
                  if strategy == GROUP_MODEL else
                  group_scores(scores[case.members], strategy, k=k, relevant_items=relevant_items, exclude=exclude))
        ranks.append(target_ranks(ranked[None, :], [case.target], [case.excluded])[0])
    return np.array(ranks, dtype=np.int64)


def evaluate_groups(scorers: Mapping[str, Scorer], user_vectors: np.ndarray, sequences: pd.DataFrame,
                    explicit: pd.DataFrame | None, item_ids: Sequence[str], settings: GroupsParams, *, k: int,
                    n_resamples: int, seed: int) -> dict[str, Any]:
    """The groups section of ``evaluation.json``; see the module docstring.

    Args:
        scorers: the night's scorers by model name ("candidate" first; MostPop gets no backoff).
        user_vectors: the candidate's vectors of every row of ``sequences`` (training histories).
        explicit: the profiles' explicit groups (group_id, members, train_items, valid_item, test_item).
    """
    from pipelines.groups.discovery import cluster_users, merge_small_groups

    people = population(sequences, item_ids)
    clustering = cluster_users(user_vectors, settings.n_groups, max_groups=settings.max_groups, seed=settings.seed)
    labels, merged = merge_small_groups(clustering.labels, user_vectors, settings.min_group_size)
    n_groups = int(labels.max()) + 1
    evaluated = people.evaluated
    sampled = sample_groups(labels[evaluated], settings.sampled_group_sizes, settings.sampled_groups, settings.seed)
    sampled = [evaluated[rows] for rows in sampled]
    user_row = {u: i for i, u in enumerate(people.user_ids)}
    explicit_valid = explicit_cases(explicit, user_row, item_ids, "valid_item")
    explicit_test = explicit_cases(explicit, user_row, item_ids, "test_item")
    histories = {"valid": [list(h) for h in sequences["train_items"]]}
    histories["test"] = [h + ([v] if isinstance(v, str) else [])
                         for h, v in zip(histories["valid"], sequences["valid_item"])]
    log.info("groups: %d interest groups (%d small ones merged), %d sampled evaluation groups, %d explicit groups "
             "with a test item", n_groups, merged, len(sampled), len(explicit_test))

    candidate_name = next(iter(scorers))
    models: dict[str, dict[str, float]] = {}
    intervals: dict[str, dict[str, list[float]]] = {}
    chosen, explicit_chosen, strategies, backoff = None, None, {}, None
    item_choice, item_parts = OFF, (None, None)
    for name, scorer in scorers.items():
        valid = score_matrix(scorer, histories["valid"], len(item_ids))
        test = score_matrix(scorer, histories["test"], len(item_ids))
        own_valid = score_matrix(scorer, [case.history for case in explicit_valid], len(item_ids))
        own_test = score_matrix(scorer, [case.history for case in explicit_test], len(item_ids))
        if name == candidate_name:
            item_choice, item_parts = group_item_model(valid, own_valid, people, explicit, explicit_valid,
                                                       explicit_test, item_ids, settings, k)
            strategies = compare_strategies(valid, test, people, sampled, (explicit_valid, own_valid, item_parts[0]),
                                            (explicit_test, own_test, item_parts[1]), settings, k)
            chosen = choose_strategy(strategies, k, explicit=bool(explicit_valid))
            explicit_chosen = (choose_strategy(strategies, k, explicit=True, candidates=list(strategies))
                               if explicit_valid else chosen)
            backoff = choose_backoff(valid, test, labels, n_groups, people, settings, k)
        strength = 0.0 if name == MOSTPOP or backoff is None else backoff["strength"]
        item_part = None if name == MOSTPOP else item_parts[1]  # MostPop stays popularity alone
        models[name], intervals[name] = gate_metrics(valid, test, labels, n_groups, people, sampled,
                                                     (explicit_test, own_test, item_part), (chosen, explicit_chosen),
                                                     strength, settings, k, n_resamples, seed)
        log.info("groups, %s: %s", name, {m: round(v, 4) for m, v in models[name].items()})
    if backoff is not None and MOSTPOP in models:
        backoff["cold"]["MostPop"] = {f"ndcg@{k}": models[MOSTPOP][f"cold_ndcg@{k}"],
                                      f"hr@{k}": models[MOSTPOP][f"cold_hr@{k}"]}
    return {
        "interest_groups": {"groups": n_groups, "sizes": np.bincount(labels, minlength=n_groups).tolist(),
                            "silhouettes": {str(c): round(s, 4) for c, s in clustering.silhouettes.items()},
                            "merged_small_groups": merged, "min_group_size": settings.min_group_size},
        "labels": dict(zip(people.user_ids, labels.tolist())),
        "strategy": chosen, "explicit_strategy": explicit_chosen,
        "strategy_chosen_on": "explicit groups" if explicit_valid else "sampled groups",
        "strategies": strategies,
        "sampled_groups": {str(size): sum(len(g) == size for g in sampled) for size in settings.sampled_group_sizes},
        "explicit_groups": len(explicit_test),
        "item_model": item_choice.record(),
        "backoff": backoff, "models": models, "intervals": intervals,
    }


# The cases, the model's scores of their own histories, and the group item model's part (None: off)
ExplicitPhase = tuple[list[GroupCase], np.ndarray, "np.ndarray | None"]


def group_item_model(valid: np.ndarray, own_valid: np.ndarray, people: Population, explicit: pd.DataFrame | None,
                     valid_cases: list[GroupCase], test_cases: list[GroupCase], item_ids: Sequence[str],
                     settings: GroupsParams, k: int
                     ) -> tuple[ItemModelChoice, tuple[np.ndarray | None, np.ndarray | None]]:
    """The group item model chosen on the explicit groups' validation choices (EASE fitted on the
    groups' training items and the users' training histories), and its weighted scores of each
    validation and test case (the test ones refitted with the validation items added)."""
    if not valid_cases:
        return OFF, (None, None)
    column = {item: i for i, item in enumerate(item_ids)}
    groups_train = [[column[i] for i in items if i in column] for items in explicit["train_items"]]
    groups_train_valid = [h + ([column[v]] if isinstance(v, str) and v in column else [])
                          for h, v in zip(groups_train, explicit["valid_item"])]
    base = np.stack([group_model_scores(own, valid[case.members], exclude=np.array(case.excluded, dtype=np.int64))
                     for case, own in zip(valid_cases, own_valid)])
    choice, valid_part = choose_item_model(
        [*groups_train, *people.train], [case.excluded for case in valid_cases], base,
        [case.target for case in valid_cases], [case.excluded for case in valid_cases],
        lambdas=settings.item_model_lambdas, weights=settings.item_model_weights,
        max_items=settings.item_model_max_items, k=k)
    test_part = fitted_item_part([*groups_train_valid, *people.train_valid], [case.excluded for case in test_cases],
                                 len(item_ids), choice, settings.item_model_max_items)
    return choice, (valid_part, test_part)


def compare_strategies(valid: np.ndarray, test: np.ndarray, people: Population, sampled: list[np.ndarray],
                       explicit_valid: ExplicitPhase, explicit_test: ExplicitPhase, settings: GroupsParams, k: int
                       ) -> dict[str, Any]:
    """Every strategy's numbers on validation and test (the test ones are reported, never chosen on);
    ``group_model`` too where there are explicit groups."""
    out = {}
    strategies = [*settings.strategies, *([GROUP_MODEL] if explicit_valid[0] else [])]
    for strategy in strategies:
        row: dict[str, dict[str, float]] = {}
        for phase, scores, targets, history, explicit_phase in (
                ("validation", valid, people.valid_target, people.train, explicit_valid),
                ("test", test, people.test_target, people.train_valid, explicit_test)):
            cases, own, item_part = explicit_phase
            row[phase] = {}
            if strategy != GROUP_MODEL:
                mean, least = member_lists(scores, sampled, targets, history, strategy, k, settings.relevant_items)
                row[phase] = {f"member_mean_ndcg@{k}": _mean(mean), f"member_min_ndcg@{k}": _mean(least)}
            if cases:
                ranks = explicit_ranks(scores, cases, own, item_part, strategy, k, settings.relevant_items)
                row[phase].update({f"group_ndcg@{k}": _mean(ndcg_at_k(ranks, k)),
                                   f"group_hr@{k}": _mean(hit_at_k(ranks, k))})
        out[strategy] = row
    return out


def choose_strategy(strategies: Mapping[str, Any], k: int, *, explicit: bool,
                    candidates: Sequence[str] | None = None) -> str:
    """The strategy with the best validation NDCG (explicit groups' own choice when there are any,
    else mean-member); ties go to the earlier strategy. ``candidates`` defaults to the strategies
    that aggregate members only (an interest group has no history of its own)."""
    metric = f"group_ndcg@{k}" if explicit else f"member_mean_ndcg@{k}"
    names = [s for s in strategies if s != GROUP_MODEL] if candidates is None else list(candidates)
    return max(names, key=lambda s: (np.nan_to_num(strategies[s]["validation"].get(metric, np.nan), nan=-1.0),
                                     -names.index(s)))


def backoff_ranks(scores: np.ndarray, labels: np.ndarray, n_groups: int, history: list[list[int]],
                  targets: np.ndarray, rows: np.ndarray, max_interactions: int) -> Callable[[float], np.ndarray]:
    """The target ranks of ``rows`` under a backoff strength c. Rows with more than
    ``max_interactions`` never blend, so they are ranked once; the interest groups' scores are
    computed once, when a strength above 0 first asks for them; only the rows that blend are
    ranked again for each c."""
    own = ranks_of(scores[rows], targets[rows], [history[r] for r in rows])
    lengths = np.array([len(history[r]) for r in rows], dtype=np.int64)
    backing = np.flatnonzero(lengths <= max_interactions)
    group: list[np.ndarray] = []

    def ranks(strength: float) -> np.ndarray:
        if strength == 0 or not len(backing):
            return own
        if not group:
            group.append(interest_group_scores(scores, labels, n_groups))
        subset = rows[backing]
        mixed = blend_with_group(scores[subset], group[0][labels[subset]],
                                 backoff_weights(lengths[backing], strength))
        out = own.copy()
        out[backing] = ranks_of(mixed, targets[subset], [history[r] for r in subset])
        return out

    return ranks


def choose_backoff(valid: np.ndarray, test: np.ndarray, labels: np.ndarray, n_groups: int, people: Population,
                   settings: GroupsParams, k: int) -> dict[str, Any]:
    rows, cap = people.evaluated, settings.backoff_max_interactions
    valid_ranks = backoff_ranks(valid, labels, n_groups, people.train, people.valid_target, rows, cap)
    strength, values = choose_strength(settings.backoff_strengths, lambda c: _mean(ndcg_at_k(valid_ranks(c), k)))
    test_ranks = backoff_ranks(test, labels, n_groups, people.train_valid, people.test_target, rows, cap)
    outcomes = {"with backoff": test_ranks(strength), "without": test_ranks(0.0)}
    train_lengths = np.array([len(people.train[r]) for r in rows])
    report: dict[str, Any] = {"strength": strength, "validation": {str(c): v for c, v in values.items()},
                              "max_interactions": cap, "cold_max_interactions": COLD_USER_MAX}
    for name, segment in (("cold", train_lengths <= COLD_USER_MAX), ("warm", train_lengths > COLD_USER_MAX)):
        report[name] = {"users": int(segment.sum())}
        for label, ranks in outcomes.items():
            report[name][label] = {f"ndcg@{k}": _mean(ndcg_at_k(ranks[segment], k)),
                                   f"hr@{k}": _mean(hit_at_k(ranks[segment], k))}
    return report


def gate_metrics(valid: np.ndarray, test: np.ndarray, labels: np.ndarray, n_groups: int, people: Population,
                 sampled: list[np.ndarray], explicit_test: ExplicitPhase, strategies: tuple[str, str], strength: float,
                 settings: GroupsParams, k: int, n_resamples: int, seed: int
                 ) -> tuple[dict[str, float], dict[str, list[float]]]:
    """One model's group metrics on test with the serving strategies (sampled groups', explicit
    groups'), with bootstrap intervals (resampling groups or users)."""
    values: dict[str, np.ndarray] = {}
    mean, least = member_lists(test, sampled, people.test_target, people.train_valid, strategies[0], k,
                               settings.relevant_items)
    values[f"member_mean_ndcg@{k}"], values[f"member_min_ndcg@{k}"] = mean, least
    if explicit_test[0]:
        ranks = explicit_ranks(test, *explicit_test, strategies[1], k, settings.relevant_items)
        values[f"group_ndcg@{k}"], values[f"group_hr@{k}"] = ndcg_at_k(ranks, k), hit_at_k(ranks, k)
    rows = people.evaluated
    cold = rows[np.array([len(people.train[r]) for r in rows], dtype=np.int64) <= COLD_USER_MAX]
    ranks = backoff_ranks(test, labels, n_groups, people.train_valid, people.test_target, cold,
                          settings.backoff_max_interactions)(strength)
    values[f"cold_ndcg@{k}"], values[f"cold_hr@{k}"] = ndcg_at_k(ranks, k), hit_at_k(ranks, k)
    points = {m: _mean(v) for m, v in values.items()}
    bounds = {m: list(bootstrap_interval(v, resample_indices(len(v), n_resamples, seed))) for m, v in values.items()
              if len(v)}
    return points, bounds


def _mean(values: np.ndarray) -> float:
    return float(np.mean(values)) if len(values) else float("nan")
