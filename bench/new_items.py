"""New-items benchmark: items the training data never shows chosen, ranked from their text alone.

    python bench/new_items.py DATASET_DIR [--hidden-fraction F] [--budget-minutes M] [--out DIR]
                              [--params params.yaml] [--seed S] [--threads T] [--keep]

A held-out-items protocol on the leave-last-out split. The MovieLens directory is imported into a
SQLite warehouse inside a temporary project and the platform's extract, validate and profiles
stages find each user's validation and test items. A random ``F`` of the catalogue, drawn from the
items that are some user's test item, is then hidden: every event of a hidden item is deleted from
the warehouse except the users' validation and test events of it. On that warehouse the platform's
stages run again from scratch (extract -> validate -> profiles -> finetune -> evaluate), so the
model never trains on a hidden item: to it they are new items with a text and no history, as items
that arrived today are. The test cases whose target is hidden ("new") are the measure; the others
("known") show what the same models do for items with a history.

Judged on the same cases, with ``pipelines.ranking.scoring`` (full catalogue, history excluded,
pessimistic ties): ours as the evaluate stage serves it (the recency prior it chose on validation),
ours without the prior, ours with the hidden items' ID rows as training left them (the mask of
``SequenceRecommender.mark_chosen_items`` lifted), ours with a prior that gives items never seen
before the case's day the lowest count instead of the average, MostPop, EASE and an ID-only SASRec
(none of which can rank an item it never saw chosen), and a text baseline: cosine similarity of
the base model's text vectors between an item and the mean of the user's last 20 items. Writes
``OUT/new-items-<dataset>.json``. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

PROJECT_ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):  # run as a script: make `bench` (and the project) importable
    sys.path.insert(0, str(PROJECT_ROOT))

from bench.quality import (PLATFORM_STAGES, bench_params, import_dataset, in_temporary_project,  # noqa: E402
                           machine_info, progress, run_stage, write_atomic)

TEXT_BASELINE_HISTORY = 20  # the user's last items the text baseline averages


# -- hiding items ---------------------------------------------------------------------------------
def choose_hidden(sequences, n_items: int, fraction: float, seed: int) -> list[str]:
    """``fraction`` of the catalogue, drawn at random from the items that are some user's test item."""
    targets = sorted(set(sequences["test_item"].dropna()))
    wanted = max(1, round(fraction * n_items))
    if wanted > len(targets):
        raise ValueError(f"--hidden-fraction {fraction} asks for {wanted} hidden items, but only "
                         f"{len(targets)} items are some user's test item")
    return sorted(np.random.default_rng(seed).choice(targets, size=wanted, replace=False).tolist())


def kept_pairs(sequences, hidden: set[str]) -> set[tuple[str, str]]:
    """The (user, item) validation and test events of hidden items: the only ones left in the warehouse."""
    pairs = set()
    for column in ("valid_item", "test_item"):
        rows = sequences[sequences[column].isin(hidden)]
        pairs.update(zip(rows["user_id"].astype(str), rows[column].astype(str)))
    return pairs


def hide_items(warehouse: Path, hidden: set[str], keep: set[tuple[str, str]]) -> int:
    """Deletes every event of a hidden item but the ``keep`` pairs; returns how many were deleted."""
    with sqlite3.connect(warehouse) as conn:
        rows = conn.execute(f"SELECT event_id, user_id, item_id FROM interactions WHERE item_id IN "
                            f"({','.join('?' * len(hidden))})", sorted(hidden)).fetchall()
        doomed = [(event_id,) for event_id, user, item in rows if (str(user), str(item)) not in keep]
        conn.executemany("DELETE FROM interactions WHERE event_id = ?", doomed)
    return len(doomed)


def check_hidden(profiles, hidden: set[str]) -> None:
    """Stops the bench if a hidden item is still in some training history (the protocol failed)."""
    leaks = sum(item in hidden for history in profiles.sequences["train_items"] for item in history)
    leaks += sum(item in hidden for history in profiles.groups["train_items"] for item in history)
    if leaks:
        raise RuntimeError(f"{leaks} training events of hidden items survived the deletion")


# -- the models judged ----------------------------------------------------------------------------
def burying_unseen(timeline, prior, cases) -> Callable:
    """The prior as served, except that an item with no event before a case's day keeps its count
    of 0, the lowest, instead of the average (``pipelines.ranking.recency``): the prior buries it."""
    from pipelines.ranking.recency import case_days, with_prior

    days = case_days(cases)

    def adjust(scores, start: int):
        part = days[start:start + scores.shape[0]]
        return with_prior(scores, timeline.counts_before(part, prior.window_days), prior)

    return adjust


def text_scorer(params: dict[str, Any], item_ids: list[str], texts: list[str]):
    """The base model's text vectors (the adapters untrained), scored by cosine similarity with
    the mean vector of the user's last items."""
    import torch
    import torch.nn.functional as F

    from pipelines.config import FinetuneParams
    from pipelines.model.recommender import Catalogue, RecommenderConfig, SequenceRecommender

    config = RecommenderConfig.from_params(FinetuneParams.model_validate(params["finetune"]), item_ids)
    model = SequenceRecommender(config).eval()
    with torch.no_grad():
        vectors = F.normalize(Catalogue(model, item_ids, texts).text_vectors().float(), dim=1)
    column = {item: i for i, item in enumerate(item_ids)}

    def score(histories: list[list[str]]) -> torch.Tensor:
        users = torch.zeros(len(histories), vectors.shape[1])
        for i, history in enumerate(histories):
            rows = [column[item] for item in history if item in column][-TEXT_BASELINE_HISTORY:]
            if rows:
                users[i] = vectors[rows].mean(0)
        return F.normalize(users, dim=1) @ vectors.T

    return score


def case_metrics(ranks: np.ndarray, k: int) -> dict[str, float]:
    from pipelines.ranking.metrics import ndcg_per_case

    if not len(ranks):
        return {"cases": 0}
    return {f"ndcg@{k}": round(float(ndcg_per_case(ranks, k).mean()), 6),
            f"hr@{k}": round(float((ranks < k).mean()), 6),
            "median_rank": float(np.median(ranks) + 1), "cases": int(len(ranks))}


def judge(name: str, scorer, split, item_ids: list[str], new: np.ndarray, k: int,
          adjust_for: Callable | None = None) -> dict[str, Any]:
    """``scorer``'s figures on the new and the known cases of ``split``; ``adjust_for(cases)``
    gives the chunk adjustment (the recency prior) for an evaluation set."""
    from pipelines.ranking.scoring import EvalSet, rank_eval_set

    row: dict[str, Any] = {}
    for label, chosen in (("new", new), ("known", ~new)):
        index = np.flatnonzero(chosen)
        cases = EvalSet([split.user_ids[i] for i in index], [split.histories[i] for i in index],
                        [split.targets[i] for i in index],
                        [split.target_ts[i] for i in index] if split.target_ts else None)
        adjust = adjust_for(cases) if adjust_for else None
        row[label] = case_metrics(rank_eval_set(scorer, cases, item_ids, k, adjust=adjust).ranks, k)
    progress(f"{name}: new {row['new']} known {row['known']}")
    return row


def judge_models(params: dict[str, Any], profiles, hidden: set[str], budget_s: float, k: int,
                 args: argparse.Namespace) -> dict[str, Any]:
    from bench import baselines
    from pipelines.core.io import read_json
    from pipelines.model.recommender import load_model, serving_scorer
    from pipelines.model.text_vectors import model_catalogue
    from pipelines.ranking.recency import TEST, VALIDATION, ItemTimeline, RecencyPrior, case_prior
    from pipelines.ranking.scoring import test_set, validation_set

    item_ids, texts = list(profiles.items["item_id"]), list(profiles.items["text"])
    split = test_set(profiles.sequences)
    new = np.array([target in hidden for target in split.targets])
    stage_metrics = read_json(Path(params["paths"]["evaluate"]) / "metrics.json")
    prior = RecencyPrior.from_record(stage_metrics.get("recency_prior"))
    timeline = ItemTimeline.from_sequences(profiles.sequences, item_ids, TEST)
    model_dir = Path(params["paths"]["candidate"])
    model = load_model(model_dir)
    scorer = serving_scorer(model, item_ids, texts, *model_catalogue(model, model_dir, item_ids, texts))
    served = lambda cases: case_prior(timeline, prior, cases).adjust  # noqa: E731
    models = {"ours": judge("ours", scorer, split, item_ids, new, k, served)}
    models["ours"]["recency_prior"] = prior.as_record()
    # The validation split has new items too (their validation events were kept): settings are
    # compared there, never on the test cases.
    valid = validation_set(profiles.sequences)
    valid_timeline = ItemTimeline.from_sequences(profiles.sequences, item_ids, VALIDATION)
    models["ours"]["validation"] = judge("ours on validation", scorer, valid, item_ids,
                                         np.array([target in hidden for target in valid.targets]), k,
                                         lambda cases: case_prior(valid_timeline, prior, cases).adjust)
    models["ours, no prior"] = judge("ours, no prior", scorer, split, item_ids, new, k)
    models["ours, prior burying unseen items"] = judge(
        "ours, prior burying unseen items", scorer, split, item_ids, new, k,
        lambda cases: burying_unseen(timeline, prior, cases))
    text_only = int((model.id_known[1:] == 0).sum())
    model.id_known.fill_(1.0)  # every ID row as training left it
    unmasked = serving_scorer(model, item_ids, texts, *model_catalogue(model, model_dir, item_ids, texts))
    models["ours, ID rows unmasked"] = judge("ours, ID rows unmasked", unmasked, split, item_ids, new, k, served)
    models["text similarity"] = judge("text similarity", text_scorer(params, item_ids, texts), split, item_ids,
                                      new, k)
    models["MostPop"] = judge("MostPop", baselines.fit_most_popular(profiles.sequences, item_ids).scorer, split,
                              item_ids, new, k)
    models["EASE"] = judge("EASE", baselines.fit_ease(profiles.sequences, item_ids, k=k).scorer, split, item_ids,
                           new, k)
    sasrec = baselines.fit_sasrec(profiles.sequences, item_ids, budget_s, k=k, progress=progress, seed=args.seed)
    models["SASRec"] = judge("SASRec", sasrec.scorer, split, item_ids, new, k)
    return {"models": models, "text_only_items": text_only}


# -- the run --------------------------------------------------------------------------------------
def run_benchmark(args: argparse.Namespace, project: Path) -> dict[str, Any]:
    import yaml

    from pipelines.profiles.build import load_profiles

    base = yaml.safe_load(args.params.read_text())
    full, hidden_project = project / "full", project / "hidden"
    full.mkdir()
    _, logical_date = import_dataset(args.dataset, full)
    params = bench_params(base, full, logical_date, args.budget_minutes, args.params.resolve().parent)
    (full / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for stage in PLATFORM_STAGES:
        run_stage(stage, full / "params.yaml", logical_date, args.threads)
    profiles = load_profiles(params["paths"]["profiles"])
    hidden = set(choose_hidden(profiles.sequences, len(profiles.items), args.hidden_fraction, args.seed))
    hidden_project.mkdir()
    shutil.copy(full / "warehouse.db", hidden_project / "warehouse.db")
    deleted = hide_items(hidden_project / "warehouse.db", hidden, kept_pairs(profiles.sequences, hidden))
    progress(f"hid {len(hidden)} items: deleted {deleted} of their events, kept their validation and test events")
    shutil.rmtree(full)
    params = bench_params(base, hidden_project, logical_date, args.budget_minutes, args.params.resolve().parent)
    params_file = hidden_project / "params.yaml"
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    for stage in PLATFORM_STAGES + ("finetune", "evaluate"):
        run_stage(stage, params_file, logical_date, args.threads)
    profiles = load_profiles(params["paths"]["profiles"])
    check_hidden(profiles, hidden)
    k = int(params["evaluate"]["k"])
    judged = judge_models(params, profiles, hidden, args.budget_minutes * 60, k, args)
    training = json.loads((Path(params["paths"]["reports"]) / "finetune" / "training.json").read_text())
    return {"dataset": args.dataset.resolve().name, "machine": machine_info(), "k": k,
            "budget_minutes": args.budget_minutes, "hidden_fraction": args.hidden_fraction, "seed": args.seed,
            "hidden_items": len(hidden), "deleted_events": deleted, "text_only_items": judged["text_only_items"],
            "training": {key: training.get(key) for key in ("best_valid_ndcg@10", "steps", "stopped_by",
                                                            "train_seconds")},
            "models": judged["models"]}


def format_table(document: dict[str, Any]) -> str:
    k = document["k"]
    header = (f"{'model':<38} {'new NDCG@' + str(k):>12} {'new HR@' + str(k):>10} {'new median rank':>16} "
              f"{'known NDCG@' + str(k):>14}")
    lines = [header, "-" * len(header)]
    nan = float("nan")
    for name, row in document["models"].items():
        new, known = row["new"], row["known"]
        lines.append(f"{name:<38} {new.get(f'ndcg@{k}', nan):>12.4f} {new.get(f'hr@{k}', nan):>10.4f} "
                     f"{new.get('median_rank', nan):>16.0f} {known.get(f'ndcg@{k}', nan):>14.4f}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", type=Path, help="MovieLens directory (100K, 1M or latest-small)")
    parser.add_argument("--hidden-fraction", type=float, default=0.05,
                        help="share of the catalogue hidden from training (default 0.05)")
    parser.add_argument("--budget-minutes", type=float, default=10.0,
                        help="wall-clock training budget of ours and of SASRec, each (default 10)")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "bench" / "results")
    parser.add_argument("--params", type=Path, default=PROJECT_ROOT / "params.yaml")
    parser.add_argument("--seed", type=int, default=42, help="seed of the hidden items' draw and of SASRec")
    parser.add_argument("--threads", type=int, default=None, help="torch threads for the stages and the baselines")
    parser.add_argument("--keep", action="store_true", help="keep the temporary project (its path is printed)")
    args = parser.parse_args(argv)
    if not 0 < args.hidden_fraction < 1:
        parser.error("--hidden-fraction must be between 0 and 1")
    if args.budget_minutes <= 0:
        parser.error("--budget-minutes must be > 0 (0 would mean 'no limit' to the finetune stage)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(name)s] %(message)s", stream=sys.stderr)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    document = in_temporary_project("bench-new-items-", args.keep, lambda project: run_benchmark(args, project))
    if document is None:
        return 1
    result_file = args.out / f"new-items-{document['dataset']}.json"
    write_atomic(result_file, json.dumps(document, indent=2) + "\n")
    print(format_table(document))
    progress(f"wrote {result_file} in {time.perf_counter() - started:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
