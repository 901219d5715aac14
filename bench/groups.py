"""Group recommendation benchmarks: a ConsRec-layout dataset's own groups, synthetic groups and cold users.

    python bench/groups.py DATASET_DIR [--budget-minutes M] [--out bench/results] [--lambdas 10,50,...] [--seed 0]
    python bench/groups.py --synthetic MOVIELENS_DIR [--budget-minutes M] [--out DIR]  (bench/groups_synthetic.py)
    python bench/groups.py --cold MOVIELENS_DIR [--budget-minutes M] [--out DIR]       (bench/groups_cold.py)

Every mode trains the platform's own model with its stages in a temporary project (as
``bench/quality.py`` does): ``--synthetic`` and ``--cold`` through ``bench/groups_ours.py``, the
ConsRec mode through ``bench/groups_consrec.py``, within ``--budget-minutes`` of training. The
synthetic and cold modes need different models (the cold bench deletes events before training), so
each trains its own; both flags together run both. The rest of this docstring is the ConsRec mode.

Protocol (full ranking): one case per (group, test item); the group's training items are excluded
from its ranking; test pairs whose item is already in the group's training pairs are dropped and
counted; ties count against the target. EASE's L2 weight is chosen on validation cases cut from
the training pairs, then the model is fitted on all training pairs. A validation case looks like a
test case: its item is one of the group's training items that no member has in their own
training history (on CAMRa2011 no test item is in a member's history, while 83% of the groups'
training items are; holding out any training item would choose the weight on an easier task).
Models: MostPop (group training counts), GroupEASE (EASE over group and user rows stacked, scored
from the group's row), EASE on the members with average and with least-misery aggregation, and
ours under each strategy (``ours + <strategy>``); ``ours`` is the strategy chosen on the same
validation cases (see ``bench/groups_consrec.py``). ``--baselines-only`` skips ours.

For comparison with published tables only, the literature's sampled protocol is reported beside
(``sampled_protocol`` in the JSON): per case the positive among 100 negatives, ties counted against
the positive, NDCG@10 and HR@10. The negatives are the dataset's own (``groupRatingNegative.txt``)
where it lists them for the case, less any in the group's training or test items or outside the
catalogue; those, and the negatives of a case the file does not list, are drawn (seeded) from the
catalogue items outside the group's training and test items. It is not the headline: with only
100 negatives, popularity alone ranks most positives high (the full ranking tells models apart).

Writes ``<out>/groups-<dataset>.json``, ``<out>/group-recs-<dataset>.csv`` (``group_id,rank,item_id``:
the top 20 of every group of the test file from ours under its chosen strategy, or from GroupEASE
with ``--baselines-only``; the group's training items excluded, the dataset's own ids) and prints
the tables.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

PROJECT_ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):  # run as a script: make `bench` (and the project) importable
    sys.path.insert(0, str(PROJECT_ROOT))

K = 10
SAMPLED_NEGATIVES = 100
RECS_K = 20
DEFAULT_LAMBDAS = (1.0, 5.0, 10.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0)
MEMBER_STRATEGIES = {"EASE + average": "average", "EASE + least misery": "least_misery"}


def progress(message: str) -> None:
    print(f"[groups {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def split_validation(train: dict[str, list[int]], member_items: dict[str, set[int]], seed: int
                     ) -> tuple[dict[str, list[int]], dict[str, int]]:
    """Per group with two or more training items, one held out (seeded) for validation, chosen among
    the items none of its members has in their own history (a group without such an item has none)."""
    rng = np.random.default_rng(seed)
    fit, held_out = {}, {}
    for group, items in train.items():
        items = sorted(set(items))
        eligible = [i for i in items if i not in member_items.get(group, set())]
        if len(items) >= 2 and eligible:
            pick = eligible[int(rng.integers(len(eligible)))]
            held_out[group] = pick
            items = [i for i in items if i != pick]
        fit[group] = items
    return fit, held_out


def sampled_negatives(cases: Sequence[tuple[str, str]], listed: Mapping[tuple[str, str], list[str]],
                      column: Mapping[str, int], forbidden: Mapping[str, set[int]], n: int, seed: int
                      ) -> tuple[list[np.ndarray], dict[str, int]]:
    """``n`` negative columns per (group, item) case: the listed negatives that are in the catalogue
    and not in ``forbidden[group]`` (its training and test items), topped up with seeded draws from
    the rest of the catalogue; a catalogue with fewer such items gives all of them. With the counts."""
    rng = np.random.default_rng(seed)
    n_items = len(column)
    out = []
    counts = {"cases_with_listed_negatives": 0, "listed_negatives_used": 0, "listed_negatives_refused": 0,
              "negatives_drawn": 0, "cases_with_fewer_negatives": 0}
    for group, item in cases:
        banned = set(forbidden.get(group, set())) | {column[item]}
        picked: dict[int, None] = {}
        listed_here = listed.get((group, item))
        if listed_here is not None:
            counts["cases_with_listed_negatives"] += 1
            for negative in listed_here:
                col = column.get(negative)
                if col is None or col in banned or col in picked or len(picked) == n:
                    counts["listed_negatives_refused"] += 1
                else:
                    picked[col] = None
            counts["listed_negatives_used"] += len(picked)
        wanted = min(n, n_items - len(banned))
        if wanted < n:
            counts["cases_with_fewer_negatives"] += 1
        if len(picked) < wanted:
            free = np.setdiff1d(np.arange(n_items), np.fromiter(banned | set(picked), dtype=np.int64))
            drawn = rng.choice(free, size=wanted - len(picked), replace=False)
            picked.update(dict.fromkeys(int(c) for c in drawn))
            counts["negatives_drawn"] += len(drawn)
        out.append(np.fromiter(picked, dtype=np.int64))
    return out, counts


def sampled_ranks(scores: np.ndarray, targets: Sequence[int], negatives: Sequence[np.ndarray]) -> np.ndarray:
    """Per case (row of ``scores``), the positive's 0-based rank among itself and its negatives:
    every negative scored at least as high is ranked above it (ties against the positive)."""
    scores = np.asarray(scores)
    return np.array([int((scores[row, cols] >= scores[row, int(target)]).sum())
                     for row, (target, cols) in enumerate(zip(targets, negatives))], dtype=np.int64)


def sampled_metrics(scores: np.ndarray, targets: Sequence[int], negatives: Sequence[np.ndarray], k: int
                    ) -> dict[str, float]:
    """Mean NDCG@k and HR@k of the sampled protocol (one positive per case)."""
    from pipelines.groups.evaluation import hit_at_k, ndcg_at_k

    ranks = sampled_ranks(scores, targets, negatives)
    return {f"ndcg@{k}": float(ndcg_at_k(ranks, k).mean()), f"hr@{k}": float(hit_at_k(ranks, k).mean())}


def top_recommendations(scores: np.ndarray, groups: Sequence[str], excluded: Sequence[Sequence[int]],
                        catalogue: Sequence[str], k: int):
    """``group_id,rank,item_id`` rows: each group's top ``k`` items outside its excluded columns
    (fewer where fewer remain), ranks from 1, ties in catalogue order."""
    import pandas as pd

    from pipelines.ranking.metrics import top_items_from_scores

    rows: dict[str, list] = {"group_id": [], "rank": [], "item_id": []}
    top = top_items_from_scores(scores, excluded, k) if len(groups) else np.empty((0, k), dtype=np.int64)
    for group, columns, banned in zip(groups, top, excluded):
        kept = [c for c in columns.tolist() if c not in set(banned)]
        rows["group_id"] += [group] * len(kept)
        rows["rank"] += list(range(1, len(kept) + 1))
        rows["item_id"] += [catalogue[c] for c in kept]
    return pd.DataFrame(rows)


def ours_rows(ours: Mapping[str, Any], catalogue: Sequence[str]) -> dict[str, np.ndarray]:
    """ours' per-strategy score rows moved onto the bench's catalogue; an item the platform's
    profiles lack (a test item no training row names) scores -inf, so it ranks last."""
    profile_column = {item: i for i, item in enumerate(ours["item_ids"])}
    columns = np.array([profile_column.get(item, -1) for item in catalogue], dtype=np.int64)
    known = columns >= 0
    moved = {}
    for strategy, scores in ours["scores"].items():
        rows = np.full((len(scores), len(catalogue)), -np.inf)
        rows[:, known] = scores[:, columns[known]]
        moved[strategy] = rows
    return moved


def judge_ours(trained: Mapping[str, Any], rows: Mapping[str, np.ndarray], groups: Sequence[str], test,
               results: dict[str, Any], test_scores: dict[str, np.ndarray]) -> dict[str, Any]:
    """Adds ``ours + <strategy>`` and ``ours`` (the strategy chosen on validation) to ``results`` and
    ``test_scores`` (``rows`` are ``groups`` in order, ``test`` the bench's cases); returns the details."""
    from pipelines.groups import baselines as gb

    row_of = {g: i for i, g in enumerate(groups)}
    test_rows = [row_of[g] for g in test.groups]
    for strategy, scores in rows.items():
        name = f"ours + {strategy}"
        test_scores[name] = scores[test_rows]
        results[name] = {**gb.metrics(test_scores[name], test, K),
                         "validation_ndcg": trained["validation_ndcg"][strategy]}
    chosen = f"ours + {trained['chosen']}"
    results["ours"] = {**results[chosen], "strategy": trained["chosen"]}
    test_scores["ours"] = test_scores[chosen]
    return {"strategy": trained["chosen"], "chosen_on": "the groups' validation choices "
            f"({trained['validation_groups']} groups' held-out training choice, one per group that no member "
            "made alone: the baselines' validation cases)",
            "validation_cases": trained["validation_groups"], "item_model": trained.get("item_model"),
            "training": trained["training"], "stage_seconds": trained["stage_seconds"]}


def run(dataset_dir: Path, lambdas: list[float], seed: int,
        ours: Callable[[Any, list[str], dict[str, str]], dict[str, Any]] | None = None) -> dict[str, Any]:
    """The ConsRec-mode document; ``recs`` (top lists) travels beside it, popped before writing.
    ``ours(data, groups, held_out)`` trains the platform on the dataset, chooses on the baselines'
    validation choices ``held_out`` (group -> item id) and scores ``groups``
    (``bench.groups_consrec.run_ours``); without it only the baselines run."""
    from pipelines.datasets.consrec import load_consrec
    from pipelines.groups import baselines as gb

    data = load_consrec(dataset_dir)
    tables = (data.group_train, data.group_test, data.user_train, data.user_test)
    catalogue = sorted(set().union(*(set(t["item_id"]) for t in tables)))
    column = {item: i for i, item in enumerate(catalogue)}
    n_items = len(catalogue)
    group_items = data.group_train.groupby("group_id")["item_id"].agg(list).to_dict()
    group_train = {g: [column[i] for i in group_items.get(g, [])] for g in data.members}
    users = sorted({u for members in data.members.values() for u in members})
    user_train = {u: [column[i] for i in frame["item_id"]] for u, frame in data.user_train.groupby("user_id")}
    user_rows = gb.binary_rows([user_train.get(u, []) for u in users], n_items)
    member_rows = {g: gb.binary_rows([user_train.get(u, []) for u in members], n_items)
                   for g, members in data.members.items()}

    member_items = {g: {column[i] for i in items} for g, items in data.member_items().items()}
    fit, held_out = split_validation(group_train, member_items, seed)
    if not held_out and len(lambdas) > 1:
        raise SystemExit("no group has a training item to hold out for validation (two or more items, one of "
                         "them in no member's history): give a single --lambdas value")
    valid = gb.Cases(list(held_out), np.array(list(held_out.values()), dtype=np.int64), [fit[g] for g in held_out])
    tests = data.group_test_cases()
    test = gb.Cases(list(tests["group_id"]), np.array([column[i] for i in tests["item_id"]]),
                    [sorted(set(group_train[g])) for g in tests["group_id"]])
    progress(f"{len(data.members)} groups, {len(users)} users, {n_items} items; {len(valid.groups)} validation "
             f"and {len(test.groups)} test cases ({len(data.leaking_test_pairs())} leaking test pairs dropped)")
    test_items = data.group_test.groupby("group_id")["item_id"].agg(set).to_dict()
    forbidden = {g: set(group_train[g]) | {column[i] for i in test_items.get(g, set())} for g in data.members}
    negatives, negative_counts = sampled_negatives(list(zip(tests["group_id"], tests["item_id"])), data.group_negatives,
                                                   column, forbidden, SAMPLED_NEGATIVES, seed)

    results: dict[str, dict[str, Any]] = {}
    test_scores: dict[str, np.ndarray] = {}
    popularity = np.bincount(np.concatenate([np.asarray(v, dtype=np.int64) for v in group_train.values()]),
                             minlength=n_items)
    test_scores["MostPop"] = gb.most_popular(popularity, test)
    results["MostPop"] = gb.metrics(test_scores["MostPop"], test, K)

    started = time.perf_counter()
    fit_rows = dict(zip(fit, gb.binary_rows(list(fit.values()), n_items)))
    stacked = gb.EaseFamily(np.vstack([*fit_rows.values(), user_rows]))
    lam, curve = gb.choose_lambda(stacked, lambdas, lambda w: gb.group_ease(fit_rows, w, valid), valid, K)
    all_rows = dict(zip(group_train, gb.binary_rows(list(group_train.values()), n_items)))
    final = gb.EaseFamily(np.vstack([*all_rows.values(), user_rows]))
    group_weights = final.weights(lam)
    test_scores["GroupEASE"] = gb.group_ease(all_rows, group_weights, test)
    results["GroupEASE"] = {**gb.metrics(test_scores["GroupEASE"], test, K),
                            "lambda": lam, "validation": curve, "seconds": round(time.perf_counter() - started, 1)}
    progress(f"GroupEASE: {results['GroupEASE']}")

    members = gb.EaseFamily(user_rows)
    for name, strategy in MEMBER_STRATEGIES.items():
        started = time.perf_counter()
        lam, curve = gb.choose_lambda(members, lambdas,
                                      lambda w, s=strategy: gb.member_ease(member_rows, w, valid, s, K), valid, K)
        test_scores[name] = gb.member_ease(member_rows, members.weights(lam), test, strategy, K)
        results[name] = {**gb.metrics(test_scores[name], test, K), "lambda": lam, "validation": curve,
                         "seconds": round(time.perf_counter() - started, 1)}
        progress(f"{name}: {results[name]}")

    rec_groups = sorted(set(data.group_test["group_id"]), key=lambda g: (len(g), g))
    rec_cases = gb.Cases(rec_groups, np.zeros(len(rec_groups), dtype=np.int64), [group_train[g] for g in rec_groups])
    rec_model, rec_scores = "GroupEASE", gb.group_ease(all_rows, group_weights, rec_cases)
    ours_details = None
    if ours is not None:
        progress(f"ours: the platform's stages on the dataset, then {len(rec_groups)} groups scored")
        started = time.perf_counter()
        trained = ours(data, rec_groups, {g: catalogue[c] for g, c in held_out.items()})
        rows = ours_rows(trained, catalogue)
        ours_details = judge_ours(trained, rows, rec_groups, test, results, test_scores)
        ours_details["seconds"] = round(time.perf_counter() - started, 1)
        rec_model, rec_scores = f"ours ({trained['chosen']})", rows[trained["chosen"]]
        progress(f"ours ({trained['chosen']}): {results['ours']}")

    sampled = {name: sampled_metrics(scores, test.targets, negatives, K) for name, scores in test_scores.items()}
    recs = top_recommendations(rec_scores, rec_groups, rec_cases.excluded, catalogue, RECS_K)
    return {"dataset": dataset_dir.resolve().name, "k": K,
            "protocol": {"cases": len(test.groups), "validation_cases": len(valid.groups),
                         "leaking_test_pairs_dropped": len(data.leaking_test_pairs()),
                         "duplicate_pairs_dropped": data.duplicates, "items": n_items, "seed": seed},
            "models": results,
            "sampled_protocol": {
                "note": ("for comparison with published tables only: the positive among "
                         f"{SAMPLED_NEGATIVES} negatives, ties counted against the positive. The headline figures "
                         "are 'models' (full ranking)."),
                "negatives": {"per_case": SAMPLED_NEGATIVES, **negative_counts,
                              "source": "groupRatingNegative.txt where listed (less the group's training and test "
                                        "items and items outside the catalogue), then seeded draws outside them"},
                "models": sampled},
            **({"ours": ours_details} if ours_details else {}),
            "recs": {"model": rec_model, "k": RECS_K, "groups": len(rec_groups), "frame": recs}}


def format_table(document: dict[str, Any]) -> str:
    lines = [f"| model | NDCG@{K} | HR@{K} | lambda |", "|---|---|---|---|"]
    for name, row in document["models"].items():
        label = f"{name} ({row['strategy']})" if "strategy" in row else name
        lines.append(f"| {label} | {row[f'ndcg@{K}']:.4f} | {row[f'hr@{K}']:.4f} | {row.get('lambda', '')} |")
    if "sampled_protocol" in document:
        lines += ["", f"Sampled protocol (1 positive + {SAMPLED_NEGATIVES} negatives; for comparison with published "
                  "tables only)", f"| model | NDCG@{K} | HR@{K} |", "|---|---|---|"]
        for name, row in document["sampled_protocol"]["models"].items():
            lines.append(f"| {name} | {row[f'ndcg@{K}']:.4f} | {row[f'hr@{K}']:.4f} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from bench.groups_cold import COLD_SHARE, STRENGTHS
    from bench.groups_synthetic import GROUPS_PER_CELL, SIZES

    def numbers(kind):
        def parse(text: str):
            try:
                return [kind(v) for v in text.split(",") if v.strip()]
            except ValueError:
                raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None
        return parse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", type=Path, help="a ConsRec-layout directory (groupMember.txt, ...), or a "
                        "MovieLens directory with --synthetic / --cold")
    parser.add_argument("--synthetic", action="store_true",
                        help="synthetic random/similar/divergent groups on MovieLens (bench/groups_synthetic.py)")
    parser.add_argument("--cold", action="store_true",
                        help="simulated cold users backing off to their interest group (bench/groups_cold.py)")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "bench" / "results")
    parser.add_argument("--budget-minutes", type=float, default=15.0,
                        help="wall-clock training budget of ours (default 15)")
    parser.add_argument("--baselines-only", action="store_true",
                        help="ConsRec mode: the baselines without training ours (minutes instead of the budget)")
    parser.add_argument("--lambdas", default=",".join(str(v) for v in DEFAULT_LAMBDAS),
                        help="EASE L2 weights to choose from on validation (comma separated)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the validation split, the groups, the cold users and the bootstrap")
    parser.add_argument("--params", type=Path, default=PROJECT_ROOT / "params.yaml",
                        help="the platform settings ours is trained with (copied, see bench/quality.py)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads for the stages and the bench")
    parser.add_argument("--keep", action="store_true", help="keep the temporary project (its path is printed)")
    parser.add_argument("--sizes", type=numbers(int), default=list(SIZES), help="--synthetic: group sizes (2,4,8)")
    parser.add_argument("--groups-per-cell", type=int, default=GROUPS_PER_CELL,
                        help=f"--synthetic: groups per kind and size (default {GROUPS_PER_CELL})")
    parser.add_argument("--cold-share", type=float, default=COLD_SHARE,
                        help=f"--cold: share of users cut to 1..5 training interactions (default {COLD_SHARE})")
    parser.add_argument("--strengths", type=numbers(float), default=list(STRENGTHS),
                        help="--cold: backoff strengths c chosen from on validation")
    args = parser.parse_args(argv)
    try:
        args.lambdas = [float(v) for v in args.lambdas.split(",") if v.strip()]
    except ValueError:
        parser.error(f"--lambdas must be numbers separated by commas, got {args.lambdas!r}")
    if not args.lambdas or min(args.lambdas) <= 0:
        parser.error("--lambdas needs at least one weight, every one > 0")
    if args.budget_minutes <= 0:
        parser.error("--budget-minutes must be > 0 (0 would mean 'no limit' to the finetune stage)")
    if not args.sizes or min(args.sizes) < 2:
        parser.error("--sizes needs at least one group size, every one >= 2")
    if args.groups_per_cell < 1:
        parser.error("--groups-per-cell must be >= 1")
    if not 0 < args.cold_share <= 1:
        parser.error("--cold-share must be in (0, 1]")
    if not args.strengths or min(args.strengths) < 0:
        parser.error("--strengths needs at least one strength, every one >= 0")
    return args


def run_trained(args: argparse.Namespace, mode: str) -> dict[str, Any]:
    """Trains ours in a temporary project for ``mode`` (synthetic or cold) and returns its document."""
    from bench import groups_cold, groups_synthetic
    from bench.groups_ours import train_ours

    project = Path(tempfile.mkdtemp(prefix=f"bench-groups-{mode}-"))
    try:
        if mode == "cold":
            trained = train_ours(args.dataset, project, args, lambda url: groups_cold.truncate_warehouse(
                url, args.cold_share, groups_cold.MAX_KEPT, args.seed))
            return groups_cold.run_cold(trained, args)
        return groups_synthetic.run_synthetic(train_ours(args.dataset, project, args), args)
    finally:
        if args.keep:
            progress(f"temporary project kept at {project}")
        else:
            shutil.rmtree(project, ignore_errors=True)


def run_consrec(args: argparse.Namespace) -> dict[str, Any]:
    """The ConsRec mode: the baselines and, unless ``--baselines-only``, ours trained in a temporary project."""
    if args.baselines_only:
        return run(args.dataset, args.lambdas, args.seed)
    from bench.groups_consrec import run_ours

    project = Path(tempfile.mkdtemp(prefix="bench-groups-consrec-"))
    try:
        return run(args.dataset, args.lambdas, args.seed,
                   ours=lambda data, groups, held_out: run_ours(data, args, project, groups, held_out, K))
    finally:
        if args.keep:
            progress(f"temporary project kept at {project}")
        else:
            shutil.rmtree(project, ignore_errors=True)


def write_json(path: Path, document: Mapping[str, Any]) -> None:
    from bench.quality import write_atomic

    write_atomic(path, json.dumps(document, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    import os

    from bench import groups_cold, groups_synthetic
    from bench.quality import machine_info, write_atomic

    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    modes = [m for m in ("synthetic", "cold") if getattr(args, m)]
    for mode in modes:
        started = time.perf_counter()
        try:
            document = run_trained(args, mode)
        except (RuntimeError, ValueError) as exc:  # a failed stage, an unreadable dataset
            hint = "" if args.keep else " (rerun with --keep to inspect the project)"
            progress(f"FAILED ({mode}): {exc}{hint}")
            return 1
        dataset = args.dataset.resolve().name
        document = {"dataset": dataset, **document, "machine": machine_info(), "budget_minutes": args.budget_minutes,
                    "seconds": round(time.perf_counter() - started, 1)}
        result_file = args.out / f"groups-{mode}-{dataset}.json"
        write_json(result_file, document)
        print(groups_synthetic.format_tables(document) if mode == "synthetic" else groups_cold.format_table(document))
        print(f"\nwritten: {result_file}")
    if modes:
        return 0

    started = time.perf_counter()
    try:
        document = run_consrec(args)
    except (RuntimeError, ValueError) as exc:  # a failed stage, an unreadable dataset
        hint = "" if args.keep or args.baselines_only else " (rerun with --keep to inspect the project)"
        progress(f"FAILED: {exc}{hint}")
        return 1
    recs = document.pop("recs")
    document.update(machine=machine_info(), seconds=round(time.perf_counter() - started, 1),
                    budget_minutes=None if args.baselines_only else args.budget_minutes,
                    recommendations={key: value for key, value in recs.items() if key != "frame"})
    result_file = args.out / f"groups-{document['dataset']}.json"
    write_json(result_file, document)
    recs_file = args.out / f"group-recs-{document['dataset']}.csv"
    write_atomic(recs_file, recs["frame"].to_csv(index=False))
    print(format_table(document))
    print(f"\nwritten: {result_file}, {recs_file}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
