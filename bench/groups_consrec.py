""""ours" on a ConsRec-layout group dataset: the platform's stages train on it, its group code ranks.

The dataset goes into a SQLite warehouse of a temporary project through the canonical tables
the shipped ``extract.mapping`` reads: users, items (titles from ``itemSemantic.txt`` when
present), interactions (``userRatingTrain.txt``), ``group_members`` and ``group_events``
(``groupRatingTrain.txt``). The layout has no time, so events keep the files' order, one second
apart. extract -> validate -> profiles -> finetune then run for real with the bench overrides of
``bench.quality.bench_params`` (finetune learns from the group events as a night does).

The candidate scores each group of the test file through the platform's own functions: members'
and the group's histories scored by ``serving_scorer``, then every strategy of
``pipelines.groups.aggregation`` and ``group_model`` (the model on the group's own history plus its
members' average, plus the group item model ``pipelines.groups.item_model`` where validation
chooses it). ``bench/groups.py`` ranks those rows under its protocol. The strategy reported as
"ours", and the item model's weights, are chosen on the baselines' validation cases
(``bench.groups.split_validation``: per group one training choice that none of its members made
alone, held out of the group's history and of the item model's fit), never on the test file. All
models thus choose on the same cases. The sequence model trained on the group events, held-out
choices included: that can only flatter its own part on validation, so the item model's weight
is chosen, if anything, too low. (The profiles stage's held-out second-to-last group event would
avoid that, but on CAMRa2011 only 60 of 290 are outside every member's history: too few cases
to choose 42 weight pairs on.)
"""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench import quality

OURS_STAGES = ("extract", "validate", "profiles", "finetune")
ORIGIN = dt.datetime(2020, 1, 1)


def import_consrec(data, url: str) -> str:
    """Writes ``data`` (a ``pipelines.datasets.consrec.GroupDataset``) into the warehouse at ``url``;
    returns the logical date (the day after the last event)."""
    from pipelines.datasets.synthetic import replace_canonical_tables

    users = sorted({*data.user_train["user_id"], *(u for members in data.members.values() for u in members)})
    items = sorted({*data.user_train["item_id"], *data.group_train["item_id"], *data.group_test["item_id"]})
    n_user_events = len(data.user_train)
    user_times = [ORIGIN + dt.timedelta(seconds=i) for i in range(n_user_events)]
    group_times = [ORIGIN + dt.timedelta(seconds=i) for i in range(len(data.group_train))]
    memberships = [(g, u) for g, members in data.members.items() for u in members]
    replace_canonical_tables(
        url,
        users={"user_id": users, "attributes": [""] * len(users), "created_at": [ORIGIN] * len(users)},
        items={"item_id": items, "title": [data.item_names.get(i, f"item {i}") for i in items],
               "categories": [""] * len(items), "description": [""] * len(items), "created_at": [ORIGIN] * len(items)},
        interactions={"event_id": list(range(n_user_events)), "user_id": list(data.user_train["user_id"]),
                      "item_id": list(data.user_train["item_id"]), "event_type": ["like"] * n_user_events,
                      "rating": [None] * n_user_events, "ts": user_times},
        group_members={"group_id": [g for g, _ in memberships], "user_id": [u for _, u in memberships],
                       "joined_at": [None] * len(memberships), "left_at": [None] * len(memberships)},
        group_events={"group_id": list(data.group_train["group_id"]), "item_id": list(data.group_train["item_id"]),
                      "event_type": ["like"] * len(data.group_train), "ts": group_times},
    )
    last = max(user_times[-1] if user_times else ORIGIN, group_times[-1] if group_times else ORIGIN)
    return (last.date() + dt.timedelta(days=1)).isoformat()


def train_ours(data, project: Path, params_path: Path, budget_minutes: float, threads: int | None) -> dict[str, Any]:
    """Runs the platform's stages up to finetune on ``data``; returns params, profiles, model, training."""
    import yaml

    from pipelines.core.io import read_json
    from pipelines.model.recommender import load_model
    from pipelines.profiles.build import load_profiles

    url = f"sqlite:///{project / 'warehouse.db'}"  # what bench_params names paths.warehouse_url
    logical_date = import_consrec(data, url)
    params = quality.bench_params(yaml.safe_load(params_path.read_text()), project, logical_date, budget_minutes,
                                  params_path.resolve().parent)
    params["validate"]["min_rows"] = 1
    params_file = project / "params.yaml"
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    seconds = {stage: quality.run_stage(stage, params_file, logical_date, threads) for stage in OURS_STAGES}
    return {"params": params, "profiles": load_profiles(params["paths"]["profiles"]),
            "model": load_model(Path(params["paths"]["candidate"])), "stage_seconds": seconds,
            "training": read_json(Path(params["paths"]["reports"]) / "finetune" / "training.json")}


def ranked_lists(scorer, member_histories: Sequence[Sequence[str]], own_history: Sequence[str], excluded: np.ndarray,
                 strategies: Sequence[str], k: int) -> dict[str, np.ndarray]:
    """One group's scores under every strategy (excluded items -inf)."""
    import torch

    from pipelines.groups.aggregation import GROUP_MODEL, group_model_scores, group_scores

    with torch.no_grad():
        members = scorer([list(h) for h in member_histories]).float().numpy().astype(np.float64)
        own = scorer([list(own_history)]).float().numpy().astype(np.float64)[0]
    return {strategy: (group_model_scores(own, members, exclude=excluded) if strategy == GROUP_MODEL
                       else group_scores(members, strategy, k=k, exclude=excluded)) for strategy in strategies}


def ours_scores(data, trained: dict[str, Any], groups: Sequence[str], held_out: Mapping[str, str], k: int
                ) -> dict[str, Any]:
    """ours on ``groups``: each group's scores under every strategy (rows in ``groups`` order, columns
    in ``item_ids`` order, the group's training items -inf) and the strategy chosen on the
    validation choices ``held_out`` (group -> one of its training items, the dataset's ids).
    ``group_model`` adds the group item model as a night does: chosen on those choices with EASE
    fitted on the groups' histories without them, refitted on everything for the test."""
    from pipelines.groups.aggregation import GROUP_MODEL, STRATEGIES
    from pipelines.groups.evaluation import ndcg_at_k, target_ranks
    from pipelines.groups.item_model import choose_item_model, fitted_item_part
    from pipelines.model.recommender import serving_scorer

    profiles = trained["profiles"]
    settings = trained["params"]["groups"]
    item_ids = list(profiles.items["item_id"])
    column = {item: i for i, item in enumerate(item_ids)}
    scorer = serving_scorer(trained["model"], item_ids, list(profiles.items["text"]))
    seqs = profiles.sequences
    user_history = {u: list(t) + [x for x in (v, s) if isinstance(x, str)]
                    for u, t, v, s in zip(seqs["user_id"], seqs["train_items"], seqs["valid_item"], seqs["test_item"])}
    strategies = [*STRATEGIES, GROUP_MODEL]
    full_history = data.group_train.groupby("group_id")["item_id"].agg(list).to_dict()

    def members_of(group: str) -> list[list[str]]:
        return [user_history[u] for u in data.members.get(group, []) if u in user_history] or [[]]

    def columns_of(history: Sequence[str]) -> list[int]:
        return [column[i] for i in history if i in column]

    # a validation case: the group's history without its held-out choice (every occurrence)
    fit_history = {g: [i for i in full_history.get(g, []) if i != held_out.get(g)] for g in data.members}
    valid_groups = [g for g, item in held_out.items() if item in column]
    targets = [column[held_out[g]] for g in valid_groups]
    excluded = [columns_of(fit_history[g]) for g in valid_groups]
    valid_lists = {s: np.empty((len(valid_groups), len(item_ids))) for s in strategies}
    for row, group in enumerate(valid_groups):
        lists = ranked_lists(scorer, members_of(group), fit_history[group], np.array(excluded[row], dtype=np.int64),
                             strategies, k)
        for strategy, scores in lists.items():
            valid_lists[strategy][row] = scores
    fit = [*(columns_of(h) for h in fit_history.values()), *(columns_of(h) for h in user_history.values())]
    item_choice, valid_part = choose_item_model(
        fit, excluded, valid_lists[GROUP_MODEL], targets, excluded, lambdas=settings["item_model_lambdas"],
        weights=settings["item_model_weights"], max_items=settings["item_model_max_items"], k=k)
    if valid_part is not None:
        valid_lists[GROUP_MODEL] = valid_lists[GROUP_MODEL] + valid_part
    validation = {s: ndcg_at_k(target_ranks(valid_lists[s], targets, excluded), k) for s in strategies}
    chosen = max(strategies, key=lambda s: (validation[s].mean() if len(targets) else -1.0, -strategies.index(s)))

    scores = {s: np.empty((len(groups), len(item_ids))) for s in strategies}
    for row, group in enumerate(groups):
        history = full_history.get(group, [])
        lists = ranked_lists(scorer, members_of(group), history, np.array(columns_of(history), dtype=np.int64),
                             strategies, k)
        for strategy, values in lists.items():
            scores[strategy][row] = values
    test_fit = [*(columns_of(h) for h in full_history.values()), *(columns_of(h) for h in user_history.values())]
    test_part = fitted_item_part(test_fit, [columns_of(full_history.get(g, [])) for g in groups], len(item_ids),
                                 item_choice, settings["item_model_max_items"])
    if test_part is not None:
        scores[GROUP_MODEL] = scores[GROUP_MODEL] + test_part
    return {"chosen": chosen, "item_ids": item_ids, "scores": scores, "validation_groups": len(targets),
            "item_model": item_choice.record(),
            "validation_ndcg": {s: float(v.mean()) if len(v) else None for s, v in validation.items()}}


def run_ours(data, args: argparse.Namespace, project: Path, groups: Sequence[str], held_out: Mapping[str, str],
             k: int) -> dict[str, Any]:
    """Trains ours on ``data`` in ``project`` and scores ``groups`` (see ``ours_scores``)."""
    trained = train_ours(data, project, args.params, args.budget_minutes, getattr(args, "threads", None))
    result = ours_scores(data, trained, groups, held_out, k)
    result.update(stage_seconds=trained["stage_seconds"], training={
        key: trained["training"].get(key) for key in ("steps", "stopped_by", "train_seconds", "best_valid_ndcg@10")})
    return result
