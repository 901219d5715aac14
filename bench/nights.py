"""Nights benchmark: a dataset's own time line replayed as nights, each judged on the next interval.

    python bench/nights.py DATASET_DIR --nights N [--night-days D] [--budget-minutes M] [--out DIR]
                           [--params params.yaml] [--threads T] [--cold-every-night] [--keep]

The MovieLens directory (100K, 1M or latest-small) is imported into a SQLite warehouse inside a
temporary project, and every night runs the platform's stages for real (extract, validate,
profiles, finetune, evaluate, promote, publish: each ``python -m tasks.<stage>`` in its own
process, with a copy of ``--params`` and only the overrides of ``bench.quality.bench_params``).
The last night ends D days before the newest event; the nights before it are D days apart. The
first night trains cold on everything before it; every later night warm-starts from the champion
as the platform does (``finetune.warm_nights``). On the last night a cold retrain on the same data
(the finetune stage with ``warm_start: false`` and the budget M) runs beside it; with
``--cold-every-night`` one runs beside every warm night, and the warm / cold ratio is also pooled
over those nights (``summary.pooled_quality_ratio``), since one night judges only the users active in
its interval.

Each night's candidate is judged on the next D days (``bench.next_interval``) as publish would serve
it: with the recency prior chosen on the night's validation split as the evaluate stage chooses it,
counted before the night (``pipelines.ranking.recency``); the cold retrain gets its own. Beside it: MostPop over
a trailing window (chosen on the interval before the night), EASE (lambda chosen on validation)
and, on the last night, an ID-only SASRec trained cold with the budget M. On every night with a cold retrain the warm
model is also compared with each of them on the same users, with bootstrap intervals (``paired``). Writes
``OUT/nights-<dataset>.json`` and ``OUT/nights-recs-<dataset>.csv`` (the warm model's top 10 on the
last night for every judged user). See bench/README.md and docs/nights.md.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import logging
import os
import subprocess
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np

PROJECT_ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):  # run as a script: make `bench` (and the project) importable
    sys.path.insert(0, str(PROJECT_ROOT))

from bench.quality import (bench_params, in_temporary_project, machine_info, progress, stage_env,  # noqa: E402
                           write_atomic)

NIGHT_STAGES = ("extract", "validate", "profiles", "finetune", "evaluate", "promote", "publish")
POPULARITY_WINDOWS_DAYS = (1, 3, 7, 14, 30, 60, 0)  # 0: all history
COLD_USER_MAX_HISTORY = 5
BASELINES = ("MostPop", "EASE", "SASRec")
BOOTSTRAP_RESAMPLES = 2000
HEAVY_USER_QUANTILE = 0.75
DAY_S = 86_400

log = logging.getLogger("bench.nights")


# -- running a stage, measured ----------------------------------------------------------------------
def run_measured(stage: str, params_file: Path, logical_date: str, threads: int | None) -> dict[str, float]:
    """Runs ``python -m tasks.<stage>`` as a night does (through ``bench/peak_memory.py``); returns its
    wall time, CPU time (user + system, all threads) and peak resident memory.

    Raises:
        RuntimeError: the stage exited non-zero (the message carries the end of its log).
    """
    progress(f"stage {stage} ...")
    peak_file = params_file.parent / f".peak-{stage}"
    command = [sys.executable, str(Path(__file__).with_name("peak_memory.py")), str(peak_file), f"tasks.{stage}",
               "--params", str(params_file), "--logical-date", logical_date]
    tail: deque[str] = deque(maxlen=30)
    started = time.perf_counter()
    with subprocess.Popen(command, cwd=params_file.parent, env=stage_env(threads), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True) as process:
        for line in process.stdout:
            tail.append(line)
            sys.stderr.write(f"  [{stage}] {line}")
        _, status, usage = os.wait4(process.pid, 0)  # the child's own CPU time
        process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"stage {stage} failed with exit code {process.returncode}:\n{''.join(tail)}")
    cost = {"wall_s": round(wall, 2), "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
            "peak_rss_mb": round(int(peak_file.read_text()) / 1024, 1)}  # VmHWM, bench/peak_memory.py
    progress(f"stage {stage} done: {cost}")
    return cost


def in_process_cost(started_wall: float, started_cpu: float) -> dict[str, float]:
    return {"wall_s": round(time.perf_counter() - started_wall, 2), "cpu_s": round(time.process_time() - started_cpu, 2)}


# -- the time line ------------------------------------------------------------------------------------
def read_events(url: str):
    """The warehouse's interactions as (user_id, item_id, seconds, order), in the source's row order."""
    import pandas as pd
    import sqlalchemy as sa

    from pipelines.profiles.build import unix_seconds

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            frame = pd.read_sql(sa.text("SELECT event_id, user_id, item_id, ts FROM interactions"), conn)
    finally:
        engine.dispose()
    return pd.DataFrame({"user_id": frame["user_id"].astype(str), "item_id": frame["item_id"].astype(str),
                         "seconds": unix_seconds(frame["ts"]), "order": frame["event_id"]})


def night_dates(newest_s: int, nights: int, night_days: int) -> list[dt.date]:
    """The logical dates: the last night's next interval ends after the newest event."""
    last = dt.datetime.fromtimestamp(newest_s, dt.timezone.utc).date() + dt.timedelta(days=1 - night_days)
    return [last - dt.timedelta(days=night_days * (nights - 1 - i)) for i in range(nights)]


def midnight_s(day: dt.date) -> int:
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc).timestamp())


def night_slices(events, cases, night_s: int, interval_s: int) -> dict[str, tuple[set[str] | None, set[str] | None]]:
    """Who and what each slice counts: users new since the last night, cold and heavy users;
    items never seen before the night, and items first seen in the last interval."""
    from bench.next_interval import first_seen

    before = events[events["seconds"] < night_s]
    users_first, items_first = first_seen(before, "user_id"), first_seen(events, "item_id")
    lengths = before.groupby("user_id").size()
    heavy_min = float(np.quantile(lengths.to_numpy(), HEAVY_USER_QUANTILE)) if len(lengths) else 0.0
    judged = {u: len(h) for u, h in zip(cases.user_ids, cases.histories)}
    return {
        "new_users": ({u for u in judged if users_first.get(u, night_s) >= night_s - interval_s}, None),
        "cold_users": ({u for u, n in judged.items() if n <= COLD_USER_MAX_HISTORY}, None),
        "heavy_users": ({u for u, n in judged.items() if n >= heavy_min}, None),
        "new_items": (None, set(items_first[items_first >= night_s].index)),
        "recent_items": (None, set(items_first[(items_first >= night_s - interval_s) & (items_first < night_s)].index)),
    }


# -- the models judged ------------------------------------------------------------------------------------
def candidate_scorer(model_dir: Path, profiles, params: dict[str, Any], night_s: int
                     ) -> tuple[Any, Any, dict[str, Any]]:
    """The scorer publish would serve for the model in ``model_dir`` on the night: with the recency
    prior chosen on the night's validation split as evaluate chooses it, counted before the night;
    then the model's own scorer (without the prior) and the prior's section."""
    from pipelines.config import EvaluateParams
    from pipelines.evaluate.stage import choose_recency_prior
    from pipelines.model.recommender import load_model, serving_scorer
    from pipelines.model.text_vectors import model_catalogue
    from pipelines.ranking.recency import ItemTimeline, RecencyPrior, scorer_as_of

    item_ids, texts = list(profiles.items["item_id"]), list(profiles.items["text"])
    model = load_model(model_dir)
    scorer = serving_scorer(model, item_ids, texts, *model_catalogue(model, model_dir, item_ids, texts))
    recency = choose_recency_prior(scorer, profiles, EvaluateParams.model_validate(params["evaluate"]))
    prior = RecencyPrior.from_record(recency["chosen"])
    timeline = ItemTimeline.from_sequences(profiles.sequences, item_ids)  # every event before the night
    return scorer_as_of(scorer, timeline, prior, night_s // DAY_S), scorer, recency


def judge_with_prior(name: str, model_dir: Path, profiles, params: dict[str, Any], night_s: int, cases, k: int,
                     slices, results: dict[str, Any], per_user: dict[str, np.ndarray]):
    """Judges the model served with its recency prior as ``name``, and records the prior and the
    same model's figures without it (``without_recency_prior``); returns the served scorer."""
    from bench.next_interval import judge, score_cases

    item_ids = list(profiles.items["item_id"])
    served, plain, recency = candidate_scorer(model_dir, profiles, params, night_s)
    judge_model(name, served, cases, item_ids, k, slices, results, per_user)
    results[name]["recency_prior"] = recency
    results[name]["without_recency_prior"] = judge(score_cases(plain, cases, item_ids), cases, item_ids, k, {})["all"]
    return served


def judge_model(name: str, scorer, cases, item_ids, k, slices, results: dict[str, Any],
                per_user: dict[str, np.ndarray]):
    """Judges ``scorer`` as ``name``: its figures go into ``results``, its per-user NDCG@k (for the
    paired intervals, never written) into ``per_user``."""
    from bench.next_interval import mean_rows, score_cases, user_rows

    scores = score_cases(scorer, cases, item_ids)
    rows = user_rows(scores, cases, item_ids, k, slices)
    results[name] = mean_rows(rows)
    per_user[name] = np.array([row[f"ndcg@{k}"] for row in rows["all"]], dtype=np.float64)
    progress(f"{name}: {results[name]['all']}")
    return scores


def baselines_for_night(events, profiles, cases, item_ids, night_s, interval_s, k, slices, args, results, costs,
                        per_user):
    """MostPop over a trailing window and EASE, each fitted on data before the night only."""
    from bench.next_interval import choose_popularity_window, popularity_scorer
    from pipelines.evaluate.baselines import fit_ease

    wall, cpu = time.perf_counter(), time.process_time()
    days, curve = choose_popularity_window(events[events["seconds"] < night_s], item_ids, night_s, interval_s,
                                           POPULARITY_WINDOWS_DAYS, k)
    start = night_s - int(days * DAY_S) if days else -2**62
    judge_model("MostPop", popularity_scorer(events, item_ids, start, night_s), cases, item_ids, k, slices, results,
                per_user)
    results["MostPop"]["window_days"] = days
    costs["MostPop"] = in_process_cost(wall, cpu)
    wall, cpu = time.perf_counter(), time.process_time()
    scorer, lam, _ = fit_ease(profiles.sequences, item_ids, args.ease_lambdas, k)
    judge_model("EASE", scorer, cases, item_ids, k, slices, results, per_user)
    results["EASE"]["lambda"] = lam
    costs["EASE"] = in_process_cost(wall, cpu)


def cold_retrain(project: Path, params: dict[str, Any], logical_date: str, night_s: int, profiles, cases, k, slices,
                 args, results, costs, per_user) -> dict[str, Any]:
    """Ours trained cold on the night's data (the finetune stage with ``warm_start: false``, its outputs
    under ``PROJECT/cold/<night>``), judged as "ours-cold"; returns its training record."""
    import yaml

    cold = copy.deepcopy(params)
    cold["finetune"]["warm_start"] = False
    for key in ("candidate", "reports", "checkpoints"):
        cold["paths"][key] = str(project / "cold" / logical_date / key)
    cold_file = project / f"params-cold-{logical_date}.yaml"
    cold_file.write_text(yaml.safe_dump(cold, sort_keys=False))
    costs["ours-cold"] = {"finetune": run_measured("finetune", cold_file, logical_date, args.threads)}
    judge_with_prior("ours-cold", Path(cold["paths"]["candidate"]), profiles, params, night_s, cases, k, slices,
                     results, per_user)
    return training_record(Path(cold["paths"]["reports"]))


def sasrec_baseline(profiles, cases, item_ids, k, slices, args, results, costs, per_user) -> None:
    """The ID-only SASRec, trained cold with the budget M."""
    from bench.baselines import fit_sasrec

    wall, cpu = time.perf_counter(), time.process_time()
    fitted = fit_sasrec(profiles.sequences, item_ids, args.budget_minutes * 60, (0.2,), k, progress, seed=args.seed)
    costs["SASRec"] = in_process_cost(wall, cpu)
    judge_model("SASRec", fitted.scorer, cases, item_ids, k, slices, results, per_user)


def training_record(reports: Path) -> dict[str, Any]:
    """What the finetune stage wrote about its run: steps, time, why it stopped, its best validation."""
    from pipelines.core.io import read_json

    training = read_json(reports / "finetune" / "training.json")
    keys = ("steps", "samples", "train_seconds", "stopped_by", "best_epoch", "averaged_epochs", "best_valid_ndcg@10",
            "plan")
    return {key: training.get(key) for key in keys}


def warm_over_cold(warm: np.ndarray, cold: np.ndarray, seed: int) -> dict[str, Any]:
    """mean(warm) / mean(cold) over the same judged users, with its user-bootstrap 95% interval."""
    from pipelines.evaluate.analysis import ratio_interval, resample_indices

    interval = ratio_interval(warm, cold, resample_indices(len(warm), BOOTSTRAP_RESAMPLES, seed))
    ratio = float(warm.mean() / cold.mean()) if len(cold) and cold.mean() else float("nan")
    return {"ratio": round(ratio, 4), "ci95": [round(v, 4) for v in interval]}


def paired_comparisons(per_user: dict[str, np.ndarray], k: int, seed: int) -> dict[str, Any]:
    """The warm model against the cold retrain (ratio of means) and against each baseline (difference),
    on the same judged users with user-bootstrap 95% intervals: with a few dozen users a night, one
    night's gap can be mostly sampling noise, and the interval says how much."""
    from pipelines.evaluate.analysis import paired_difference, resample_indices

    warm = per_user["ours"]
    indices = resample_indices(len(warm), BOOTSTRAP_RESAMPLES, seed)
    return {"metric": f"ndcg@{k}", "users": int(len(warm)), "resamples": BOOTSTRAP_RESAMPLES,
            "warm_over_cold": warm_over_cold(warm, per_user["ours-cold"], seed),
            "ours_minus": {name: {key: round(value, 6) for key, value in
                                  paired_difference(warm, per_user[name], indices).items()}
                           for name in BASELINES if name in per_user}}


# -- one night --------------------------------------------------------------------------------------------
def run_night(project: Path, base: dict[str, Any], day: dt.date, first: bool, last: bool, events,
              args) -> tuple[dict[str, Any], Any, tuple[np.ndarray, np.ndarray] | None]:
    """Runs the night's stages and judges every model; returns the night's record, on the last night
    the warm model's top-10 lists, and on a night with a cold retrain the per-user NDCG@k of the warm
    model and of the cold retrain (paired)."""
    import yaml

    from bench.next_interval import interval_cases
    from pipelines.core.io import read_json
    from pipelines.profiles.build import load_profiles
    from pipelines.publish.writer import top_k_recommendations

    logical_date, interval_s = day.isoformat(), args.night_days * DAY_S
    night_s = midnight_s(day)
    params = copy.deepcopy(base)
    params["run"]["logical_date"] = logical_date
    params["finetune"]["warm_start"] = not first
    params_file = project / "params.yaml"
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    progress(f"night {logical_date} ({'cold' if first else 'warm'}), judged on the next {args.night_days} day(s)")
    costs: dict[str, Any] = {"ours": {stage: run_measured(stage, params_file, logical_date, args.threads)
                                      for stage in NIGHT_STAGES}}
    profiles = load_profiles(params["paths"]["profiles"])
    item_ids = list(profiles.items["item_id"])
    k = int(params["evaluate"]["k"])
    cases = interval_cases(events, night_s, night_s + interval_s)
    slices = night_slices(events, cases, night_s, interval_s)
    results: dict[str, Any] = {}
    per_user: dict[str, np.ndarray] = {}
    ours = judge_with_prior("ours", Path(params["paths"]["candidate"]), profiles, params, night_s, cases, k, slices,
                            results, per_user)
    baselines_for_night(events, profiles, cases, item_ids, night_s, interval_s, k, slices, args, results, costs,
                        per_user)
    recs, cold_training = None, None
    with_cold = last or (args.cold_every_night and not first)
    if with_cold:
        cold_training = cold_retrain(project, params, logical_date, night_s, profiles, cases, k, slices, args,
                                     results, costs, per_user)
    if last:
        sasrec_baseline(profiles, cases, item_ids, k, slices, args, results, costs, per_user)
        recs = top_k_recommendations(ours, cases.user_ids, cases.histories, item_ids, k)
    decision = read_json(Path(params["paths"]["promote"]) / "decision.json")
    record = {"logical_date": logical_date, "start_ts": night_s, "end_ts": night_s + interval_s,
              "ours_trained": "cold" if first else "warm", "judged_users": len(cases.user_ids),
              "promotion": decision.get("decision"), "training": training_record(Path(params["paths"]["reports"])),
              "quality": results, "cost": costs}
    if with_cold:
        record.update(cold_training=cold_training, paired=paired_comparisons(per_user, k, args.seed))
    print(format_night(record, k), flush=True)
    return record, recs, (per_user["ours"], per_user["ours-cold"]) if with_cold else None


# -- output -------------------------------------------------------------------------------------------------
def night_wall(costs: dict[str, Any]) -> float:
    return round(sum(stage["wall_s"] for stage in costs.values()), 2)


def format_night(record: dict[str, Any], k: int) -> str:
    header = (f"night {record['logical_date']} (ours {record['ours_trained']}, {record['judged_users']} users judged, "
              f"promotion {record['promotion']})")
    columns = f"{'model':<10} {'NDCG@' + str(k):>8} {'Recall@' + str(k):>9} {'HR@' + str(k):>7} " \
              f"{'new-item HR':>11} {'wall s':>8}"
    lines = [header, columns, "-" * len(columns)]
    for name, row in record["quality"].items():
        overall, new_items = row["all"], row.get("new_items", {})
        cost = record["cost"].get(name, {})
        wall = night_wall(cost) if name.startswith("ours") else cost.get("wall_s", float("nan"))
        new_hr = new_items.get(f"hr@{k}")
        lines.append(f"{name:<10} {overall.get(f'ndcg@{k}', float('nan')):>8.4f} "
                     f"{overall.get(f'recall@{k}', float('nan')):>9.4f} {overall.get(f'hr@{k}', float('nan')):>7.4f} "
                     f"{'-' if new_hr is None else f'{new_hr:.4f}':>11} {wall:>8.1f}")
        plain = row.get("without_recency_prior")
        if plain:
            lines.append(f"{'  no prior':<10} {plain.get(f'ndcg@{k}', float('nan')):>8.4f} "
                         f"{plain.get(f'recall@{k}', float('nan')):>9.4f} {plain.get(f'hr@{k}', float('nan')):>7.4f}")
    paired = record.get("paired")
    if paired:
        low, high = paired["warm_over_cold"]["ci95"]
        lines.append(f"warm / cold {paired['metric']}: {paired['warm_over_cold']['ratio']:.3f} "
                     f"(95% {low:.3f} to {high:.3f}, {paired['users']} users)")
        for name, diff in paired["ours_minus"].items():
            lines.append(f"ours - {name}: {diff['delta']:+.4f} (95% {diff['low']:+.4f} to {diff['high']:+.4f})")
    return "\n".join(lines)


def summary(nights: list[dict[str, Any]], k: int, pairs: list[tuple[np.ndarray, np.ndarray]], seed: int
            ) -> dict[str, Any]:
    """The last night's warm versus cold figures, and ours against the best baseline; warm versus cold
    pooled over every night with a cold retrain (``pairs``: per-user NDCG@k of both, per night)."""
    last = nights[-1]
    quality, costs = last["quality"], last["cost"]
    metric = f"ndcg@{k}"
    warm_train, cold_train = costs["ours"]["finetune"]["wall_s"], costs["ours-cold"]["finetune"]["wall_s"]
    warm_night = night_wall(costs["ours"])
    baselines = {name: quality[name]["all"][metric] for name in BASELINES}
    best = max(baselines, key=baselines.get)
    return {
        "cost_ratio": round(warm_train / cold_train, 4),
        "night_cost_ratio": round(warm_night / (warm_night - warm_train + cold_train), 4),
        "quality_ratio": round(quality["ours"]["all"][metric] / quality["ours-cold"]["all"][metric], 4),
        "quality_ratio_ci95": last["paired"]["warm_over_cold"]["ci95"],
        f"ours_{metric}": quality["ours"]["all"][metric], f"cold_{metric}": quality["ours-cold"]["all"][metric],
        f"best_baseline_{metric}": baselines[best], "best_baseline": best,
        "ours_minus_best_baseline": last["paired"]["ours_minus"][best],
        f"new_item_hr@{k}": {name: quality[name]["new_items"].get(f"hr@{k}") for name in ("ours", "SASRec")},
        "new_item_users": quality["ours"]["new_items"]["users"],
        "warm_finetune_s": warm_train, "cold_finetune_s": cold_train,
        "recency_prior": {name: quality[name]["recency_prior"]["chosen"] for name in ("ours", "ours-cold")},
        f"without_recency_prior_{metric}": {name: quality[name]["without_recency_prior"][metric]
                                            for name in ("ours", "ours-cold")},
        "pooled_quality_ratio": {"nights": len(pairs), "user_nights": sum(len(warm) for warm, _ in pairs),
                                 **warm_over_cold(np.concatenate([warm for warm, _ in pairs]),
                                                  np.concatenate([cold for _, cold in pairs]), seed)},
    }


# -- the command -----------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", type=Path, help="MovieLens directory (100K, 1M or latest-small)")
    parser.add_argument("--nights", type=int, required=True, help="nights replayed (>= 2)")
    parser.add_argument("--night-days", type=int, default=1, help="days between nights, and of each judged interval")
    parser.add_argument("--budget-minutes", type=float, default=15.0,
                        help="wall-clock training budget of a cold training (first night, the cold retrains, "
                        "SASRec) and the cap of a warm night's (default 15)")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "bench" / "results")
    parser.add_argument("--params", type=Path, default=PROJECT_ROOT / "params.yaml")
    parser.add_argument("--threads", type=int, default=None, help="torch threads of the stages")
    parser.add_argument("--seed", type=int, default=42, help="seed of the SASRec baseline")
    parser.add_argument("--cold-every-night", action="store_true",
                        help="also retrain cold beside every warm night, not only the last (pools warm / cold "
                        "over the nights: more users judged)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary project (its path is printed)")
    args = parser.parse_args(argv)
    if args.nights < 2:
        parser.error("--nights must be >= 2 (a first, cold night and at least one warm night)")
    if args.night_days < 1:
        parser.error("--night-days must be >= 1")
    if args.budget_minutes <= 0:
        parser.error("--budget-minutes must be > 0 (0 would mean 'no limit' to the finetune stage)")
    args.ease_lambdas = (10, 50, 100, 200, 500, 1000, 2000, 5000)
    return args


def run_benchmark(args: argparse.Namespace, project: Path) -> dict[str, Any]:
    import yaml

    from pipelines.datasets.movielens import import_movielens

    url = f"sqlite:///{project / 'warehouse.db'}"  # what bench_params names paths.warehouse_url
    progress(f"importing {args.dataset}: {import_movielens(args.dataset, url)}")
    events = read_events(url)
    days = night_dates(int(events["seconds"].max()), args.nights, args.night_days)
    if midnight_s(days[0]) <= int(events["seconds"].min()):
        raise ValueError(f"{args.nights} nights of {args.night_days} day(s) start before the dataset's first event")
    base = bench_params(yaml.safe_load(args.params.read_text()), project, days[0].isoformat(), args.budget_minutes,
                        args.params.resolve().parent)
    base["extract"]["interval_days"] = args.night_days
    nights, recs, pairs = [], None, []
    for i, day in enumerate(days):
        record, recs, pair = run_night(project, base, day, first=i == 0, last=i == len(days) - 1, events=events,
                                       args=args)
        nights.append(record)
        pairs += [pair] if pair is not None else []
    k = int(base["evaluate"]["k"])
    document = {"dataset": args.dataset.resolve().name, "machine": machine_info(), "budget_minutes": args.budget_minutes,
                "night_days": args.night_days, "protocol": "next interval: all of a user's events in the D days after "
                "the night are relevant; full ranking, history excluded, pessimistic ties",
                "nights": nights, "summary": summary(nights, k, pairs, args.seed)}
    return {"document": document, "recs": recs}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(name)s] %(message)s", stream=sys.stderr)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    started = time.perf_counter()
    outcome = in_temporary_project("bench-nights-", args.keep, lambda project: run_benchmark(args, project))
    if outcome is None:
        return 1
    document = outcome["document"]
    dataset = document["dataset"]
    result_file = args.out / f"nights-{dataset}.json"
    write_atomic(result_file, json.dumps(document, indent=2) + "\n")
    recs = outcome["recs"][["user_id", "rank", "item_id"]]
    write_atomic(args.out / f"nights-recs-{dataset}.csv", recs.to_csv(index=False))
    print(json.dumps(document["summary"], indent=2))
    progress(f"wrote {result_file} in {time.perf_counter() - started:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
