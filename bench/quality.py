"""Quality benchmark: the platform's own model against MostPop, EASE and SASRec on MovieLens.

    python bench/quality.py DATASET_DIR [--budget-minutes M] [--models MostPop,EASE,SASRec,ours]
                            [--out bench/results] [--tag quality] [--params params.yaml] [--keep]

The MovieLens directory is imported into a SQLite warehouse inside a temporary project, and the
platform's stages run for real, as a night runs them (extract -> validate -> profiles -> finetune
-> evaluate, each ``python -m tasks.<stage>`` in its own process). The params are a copy of
``--params`` with only the bench overrides of ``bench_params``. The baselines read the profiles
stage's split, so every model sees the same leave-last-out split and is measured by the same
``pipelines.ranking.scoring`` code. "ours" is the night's candidate as the evaluate stage scored it.
See bench/README.md for the protocol.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import logging
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):  # run as a script: make `bench` (and the project) importable
    sys.path.insert(0, str(PROJECT_ROOT))

MODELS = ("MostPop", "EASE", "SASRec", "ours")
DEFAULT_MODELS = MODELS
OURS_MODELS = ("ours",)  # the row the platform's own finetune and evaluate stages produce
PLATFORM_STAGES = ("extract", "validate", "profiles")
OURS_STAGES = ("finetune", "evaluate")
# Connection URLs from the environment would override the temp project's paths (tasks.common):
# a benchmark must never read a real warehouse or write a real registry.
NEVER = 10**12  # a minimum no night reaches: switches a check against earlier nights off
SCRUBBED_ENV = ("AIRFLOW_CONN_WAREHOUSE", "RETRAIN_WAREHOUSE_URL", "RETRAIN_REGISTRY_URL")
MOVIELENS_STALENESS_HOURS = 24 * 366 * 100  # static history: freshness means nothing here
FINETUNE_EPOCHS = 10_000  # the wall-clock budget and early stopping decide, not an epoch count

log = logging.getLogger("bench")


def progress(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- the temporary project ----------------------------------------------------------------------
def bench_params(base: dict[str, Any], project: Path, logical_date: str, budget_minutes: float,
                 base_dir: Path = PROJECT_ROOT) -> dict[str, Any]:
    """A copy of ``base`` with the documented bench overrides and nothing else.

    Every entry of ``paths`` points into ``project`` (URLs become SQLite files there), including
    entries this script does not know about, so a new stage output can never land in the real
    project. The logical date is the day after the newest interaction; validation accepts
    static history (no staleness, volume, one-user-share or drift checks); fine-tuning is bounded by the wall clock, not by epochs. A relative
    ``finetune.base_model`` is made absolute against ``base_dir`` (it means the same model).
    """
    params = copy.deepcopy(base)
    paths = params.setdefault("paths", {})
    for key in list(paths):
        paths[key] = (f"sqlite:///{project / (key.removesuffix('_url') + '.db')}" if key.endswith("_url")
                      else str(project / key))
    params.setdefault("run", {})["logical_date"] = logical_date
    params["validate"].update(min_interval_rows=1, max_staleness_hours=MOVIELENS_STALENESS_HOURS)
    # A dataset's last day is not a night of a steady stream: the checks against earlier nights
    # (volume band, one user's share, drift) do not apply to a static history.
    params["validate"].update(volume_min_nights=NEVER, user_share_min_rows=NEVER)
    params["validate"].setdefault("drift", {})["min_rows"] = NEVER
    finetune = params["finetune"]
    finetune.update(budget_minutes=budget_minutes, epochs=FINETUNE_EPOCHS)
    base_model = str(finetune.get("base_model", "auto"))
    if base_model != "auto" and not Path(base_model).is_absolute() and (base_dir / base_model).is_dir():
        finetune["base_model"] = str((base_dir / base_model).resolve())
    return params


def newest_interaction(url: str) -> dt.datetime:
    import sqlalchemy as sa

    from pipelines.core import schema

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            newest = conn.execute(sa.select(sa.func.max(schema.interactions.c.ts))).scalar_one()
    finally:
        engine.dispose()
    if newest is None:
        raise ValueError("the imported dataset has no interactions")
    return newest if isinstance(newest, dt.datetime) else dt.datetime.fromisoformat(str(newest))


def import_dataset(dataset_dir: Path, project: Path) -> tuple[str, str]:
    """Imports MovieLens into the project's warehouse; returns (warehouse URL, logical date)."""
    from pipelines.datasets.movielens import import_movielens

    url = f"sqlite:///{project / 'warehouse.db'}"  # what bench_params names paths.warehouse_url
    counts = import_movielens(dataset_dir, url)
    logical_date = (newest_interaction(url).date() + dt.timedelta(days=1)).isoformat()
    progress(f"imported {dataset_dir}: {counts}; logical date {logical_date}")
    return url, logical_date


def stage_env(threads: int | None) -> dict[str, str]:
    """The environment of a stage process: offline, no URL overrides, the bench's thread count."""
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH")) if p))
    if threads:  # torch sizes its intra-op pool from these at start-up
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    return env


def run_stage(stage: str, params_file: Path, logical_date: str, threads: int | None = None) -> float:
    """Runs ``python -m tasks.<stage>`` as a night does; streams its log; returns its seconds.

    A process per stage keeps torch's threads and memory of one stage out of the next and of
    the baselines, and its wall time is the stage's own. It runs inside the temporary project,
    so even a relative path that a stage defaults to stays there.

    Raises:
        RuntimeError: the stage exited non-zero (the message carries the end of its log).
    """
    progress(f"stage {stage} ...")
    started = time.perf_counter()
    command = [sys.executable, "-m", f"tasks.{stage}", "--params", str(params_file), "--logical-date", logical_date]
    tail: deque[str] = deque(maxlen=30)
    with subprocess.Popen(command, cwd=params_file.parent, env=stage_env(threads), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True) as process:
        for line in process.stdout:
            tail.append(line)
            sys.stderr.write(f"  [{stage}] {line}")
        code = process.wait()
    seconds = time.perf_counter() - started
    if code != 0:
        raise RuntimeError(f"stage {stage} failed with exit code {code}:\n{''.join(tail)}")
    progress(f"stage {stage} done in {seconds:.1f}s")
    return seconds


# -- the models ---------------------------------------------------------------------------------
def result_row(metrics: dict[str, float], train_s: float, k: int, **extra: Any) -> dict[str, Any]:
    row = {f"{m}@{k}": round(float(metrics[f"{m}@{k}"]), 6) for m in ("ndcg", "hr", "mrr", "coverage")}
    return {**row, "train_s": round(float(train_s), 2), **extra}


def run_baselines(profiles, names: list[str], budget_s: float, k: int, args: argparse.Namespace
                  ) -> dict[str, dict[str, Any]]:
    """Fits each requested baseline on the profiles split and scores it on the test targets."""
    from bench import baselines
    from pipelines.ranking.scoring import evaluate_scorer, test_set

    item_ids = list(profiles.items["item_id"])
    split = test_set(profiles.sequences)
    results = {}
    for name in names:
        progress(f"{name}: training")
        if name == "MostPop":
            fitted = baselines.fit_most_popular(profiles.sequences, item_ids)
        elif name == "EASE":
            fitted = baselines.fit_ease(profiles.sequences, item_ids, args.ease_lambdas, k)
        else:
            fitted = baselines.fit_sasrec(profiles.sequences, item_ids, budget_s, args.sasrec_dropout, k,
                                          progress, seed=args.seed)
        metrics, _ = evaluate_scorer(fitted.scorer, split, item_ids, k)
        extra = {"lambda": fitted.info["lambda"]} if name == "EASE" else {}
        results[name] = result_row(metrics, fitted.train_s, k, **extra)
        progress(f"{name}: test {results[name]} {fitted.info if fitted.info else ''}")
    return results


def run_ours(params: dict[str, Any], profiles, k: int) -> tuple[dict[str, dict[str, Any]], Any, dict[str, Any]]:
    """The row of ours, ours' top-k lists and the stage's metrics.

    The row takes the evaluate stage's metrics; the candidate is then reloaded and scored here with
    the stage's code (with the recency prior the stage chose, each case counted before its
    target's day), as a check and for the recommendations.
    """
    from pipelines.ranking.recency import TEST, ItemTimeline, RecencyPrior, case_prior, label
    from pipelines.ranking.scoring import rank_eval_set, test_set
    from pipelines.core.io import read_json
    from pipelines.ranking.metrics import ranking_metrics
    from pipelines.model.recommender import load_model, serving_scorer
    from pipelines.publish.writer import top_k_recommendations

    stage_metrics = read_json(Path(params["paths"]["evaluate"]) / "metrics.json")
    training = read_json(Path(params["paths"]["reports"]) / "finetune" / "training.json")
    item_ids, texts = list(profiles.items["item_id"]), list(profiles.items["text"])
    scorer = serving_scorer(load_model(Path(params["paths"]["candidate"])), item_ids, texts)
    split = test_set(profiles.sequences)
    prior = RecencyPrior.from_record(stage_metrics.get("recency_prior"))
    progress(f"ours: recency prior {label(prior)} (chosen on validation by the evaluate stage)")
    adjust = case_prior(ItemTimeline.from_sequences(profiles.sequences, item_ids, TEST), prior, split).adjust
    outcome = rank_eval_set(scorer, split, item_ids, k, adjust=adjust)
    metrics = ranking_metrics(outcome.ranks, outcome.top_items, len(item_ids), k)
    if abs(metrics[f"ndcg@{k}"] - stage_metrics["candidate"][f"ndcg@{k}"]) > 1e-6:
        progress(f"WARNING: ours rescored here gives NDCG@{k} {metrics[f'ndcg@{k}']:.6f}, "
                 f"the evaluate stage {stage_metrics['candidate'][f'ndcg@{k}']:.6f}")
    # The same model without the prior, side by side: what the prior adds, free of training noise.
    plain = rank_eval_set(scorer, split, item_ids, k)
    without = {name: round(float(value), 6) for name, value in
               ranking_metrics(plain.ranks, plain.top_items, len(item_ids), k).items()
               if name in {f"{m}@{k}" for m in ("ndcg", "hr", "mrr", "coverage")}}
    served = {key: training.get(key) for key in ("stopped_by", "steps", "best_epoch", "averaged_epochs",
                                                 "best_valid_ndcg@10", "weight_averaging_valid_ndcg@10")}
    row = result_row(stage_metrics["candidate"], training["train_seconds"], k, recency_prior=prior.as_record(),
                     without_recency_prior=without, training=served)
    recs = top_k_recommendations(scorer, split.user_ids, split.histories, item_ids, k, adjust=adjust)
    averaged = training.get("averaged_epochs") or []
    weights = f"the mean of epochs {averaged}" if averaged else f"epoch {training.get('best_epoch')}"
    progress(f"ours: training stopped by {training.get('stopped_by')} after {training.get('steps')} steps; serving "
             f"{weights}, validation NDCG@{k} {training.get('best_valid_ndcg@10', float('nan')):.4f}")
    return {"ours": row}, recs, stage_metrics


# -- output -------------------------------------------------------------------------------------
def machine_info() -> dict[str, Any]:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(), "platform": platform.platform()}


def format_table(models: dict[str, dict[str, Any]], k: int) -> str:
    header = f"{'model':<11} {'NDCG@' + str(k):>9} {'HR@' + str(k):>8} {'MRR@' + str(k):>8} " \
             f"{'coverage@' + str(k):>12} {'train s':>9}"
    lines = [header, "-" * len(header)]
    for name, row in models.items():
        lines.append(f"{name:<11} {row[f'ndcg@{k}']:>9.4f} {row[f'hr@{k}']:>8.4f} {row[f'mrr@{k}']:>8.4f} "
                     f"{row[f'coverage@{k}']:>12.4f} {row['train_s']:>9.1f}")
    return "\n".join(lines)


def write_atomic(path: Path, text: str) -> None:
    """Temp file in the same directory, then rename: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


# -- the command --------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    def floats(text: str) -> tuple[float, ...]:
        return tuple(float(v) for v in text.split(",") if v.strip())

    def model_list(text: str) -> list[str]:
        names = [n.strip() for n in text.split(",") if n.strip()]
        unknown = sorted(set(names) - set(MODELS))
        if unknown or not names:
            raise argparse.ArgumentTypeError(f"unknown model(s) {unknown}; choose from {','.join(MODELS)}")
        return [m for m in MODELS if m in names]

    def result_tag(text: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", text):
            raise argparse.ArgumentTypeError(f"--tag {text!r}: letters, digits, '.', '_' and '-' only")
        return text

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", type=Path, help="MovieLens directory (100K, 1M or latest-small)")
    parser.add_argument("--budget-minutes", type=float, default=15.0,
                        help="wall-clock training budget of ours and of SASRec, each (default 15)")
    parser.add_argument("--models", type=model_list, default=list(DEFAULT_MODELS),
                        help=f"comma-separated subset of {','.join(MODELS)} (default {','.join(DEFAULT_MODELS)})")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "bench" / "results")
    parser.add_argument("--tag", type=result_tag, default="quality",
                        help="the results are written to OUT/TAG-DATASET.json (default quality)")
    parser.add_argument("--params", type=Path, default=PROJECT_ROOT / "params.yaml")
    parser.add_argument("--keep", action="store_true", help="keep the temporary project (its path is printed)")
    parser.add_argument("--ease-lambdas", type=floats, default=(10, 50, 100, 200, 500, 1000, 2000, 5000),
                        help="EASE L2 grid, chosen on validation (default 10,...,5000)")
    parser.add_argument("--sasrec-dropout", type=floats, default=(0.2,),
                        help="SASRec dropout rate(s); several split the budget and validation picks one")
    parser.add_argument("--seed", type=int, default=42, help="seed of the SASRec baseline")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads for the stages and the baselines alike (default: torch's, "
                        "one per core; on a shared machine fewer threads than cores is often faster)")
    args = parser.parse_args(argv)
    if args.budget_minutes <= 0:
        parser.error("--budget-minutes must be > 0 (0 would mean 'no limit' to the finetune stage)")
    return args


def run_benchmark(args: argparse.Namespace, project: Path) -> dict[str, Any]:
    """Everything but the output files: import, stages, models; returns the result document."""
    import yaml

    from pipelines.profiles.build import load_profiles

    base = yaml.safe_load(args.params.read_text())
    _, logical_date = import_dataset(args.dataset, project)
    ours = [m for m in args.models if m in OURS_MODELS]
    params = bench_params(base, project, logical_date, args.budget_minutes, args.params.resolve().parent)
    params_file = project / "params.yaml"
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    k = int(params["evaluate"]["k"])
    stages = PLATFORM_STAGES + (OURS_STAGES if ours else ())
    for stage in stages:
        run_stage(stage, params_file, logical_date, args.threads)
    profiles = load_profiles(params["paths"]["profiles"])
    models: dict[str, dict[str, Any]] = {}
    recs = None
    if ours:
        models, recs, stage_metrics = run_ours(params, profiles, k)
    baselines = run_baselines(profiles, [m for m in args.models if m not in OURS_MODELS], args.budget_minutes * 60,
                              k, args)
    if ours and "MostPop" in baselines:
        # Same split, same code: the evaluate stage's MostPop must be ours' MostPop exactly.
        stage_ndcg = stage_metrics["MostPop"][f"ndcg@{k}"]
        if abs(stage_ndcg - baselines["MostPop"][f"ndcg@{k}"]) > 1e-6:
            raise RuntimeError(f"MostPop differs from the evaluate stage's ({stage_ndcg}): not the same split")
    ordered = {name: {**baselines, **models}[name] for name in args.models}
    document = {"dataset": args.dataset.resolve().name, "machine": machine_info(),
                "budget_minutes": args.budget_minutes, "models": ordered}
    return {"k": k, "recs": recs, "document": document}


def in_temporary_project(prefix: str, keep: bool, run: Callable[[Path], Any]) -> Any | None:
    """``run(project)`` in a new temporary project, removed afterwards unless ``keep``. A failed stage
    or an unreadable dataset is reported in one line, without a traceback, and gives None."""
    project = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        return run(project)
    except (RuntimeError, ValueError) as exc:
        hint = " (rerun with --keep to inspect the project)" if isinstance(exc, RuntimeError) and not keep else ""
        progress(f"FAILED: {exc}{hint}")
        return None
    finally:
        if keep:
            progress(f"temporary project kept at {project}")
        else:
            shutil.rmtree(project, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(name)s] %(message)s", stream=sys.stderr)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    outcome = in_temporary_project("bench-quality-", args.keep, lambda project: run_benchmark(args, project))
    if outcome is None:
        return 1
    document, dataset = outcome["document"], outcome["document"]["dataset"]
    result_file = args.out / f"{args.tag}-{dataset}.json"
    write_atomic(result_file, json.dumps(document, indent=2) + "\n")
    if outcome["recs"] is not None:
        write_atomic(args.out / f"recs-{dataset}.csv",
                     outcome["recs"][["user_id", "rank", "item_id"]].to_csv(index=False))
    print(format_table(document["models"], outcome["k"]))
    progress(f"wrote {result_file} in {time.perf_counter() - started:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
