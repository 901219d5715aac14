"""Stage evaluate: candidate, re-evaluated champion, MostPop and EASE on the same split.

Writes the blessing, ``evaluation.json`` (metrics at every K with bootstrap intervals, the paired
candidate-vs-champion comparison, slices, the champion's history), the HTML report, and
metrics and plots for ``dvc metrics diff`` / ``dvc plots diff``.
"""

from __future__ import annotations

import argparse
import csv
import logging
from pathlib import Path
from typing import Any

from tasks.common import run_stage, stage_parser

log = logging.getLogger("retrain.evaluate")


def read_curve(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def champion_model(params: dict[str, Any]):
    """The current champion: (version, model, artifact directory), or Nones on the first night."""
    from pipelines.model.recommender import load_model
    from pipelines.registry.store import Registry

    with Registry(params["paths"]["registry_url"], Path(params["paths"]["artifact_store"])) as registry:
        champion = registry.champion()
        if champion is None:
            return None, None, None
        directory = registry.artifact_path(champion.version)
        return champion.version, load_model(directory), directory


def champion_history(params: dict[str, Any], k: int) -> list[dict[str, Any]]:
    """Each blessed version's test metrics on its own night, oldest first: the champion over time."""
    from pipelines.registry.store import Registry

    with Registry(params["paths"]["registry_url"], Path(params["paths"]["artifact_store"])) as registry:
        blessed = sorted((v for v in registry.list_versions() if v.blessed), key=lambda v: (v.run_date, v.version))
    history = []
    for version in blessed:
        own = version.metrics.get("candidate", {})  # the registry keeps the night's metrics of every model
        history.append({"run_date": version.run_date, "version": version.version,
                        **{m: own[m] for m in (f"ndcg@{k}", f"hr@{k}") if m in own}})
    return history


def tonight_champion(analysis: dict[str, Any], version: int | None, source: dict[str, Any], k: int
                     ) -> list[dict[str, Any]]:
    """The champion re-scored on tonight's split, the newest point of its history."""
    if "champion" not in analysis["models"]:
        return []
    metrics = analysis["models"]["champion"]["metrics"]
    return [{"run_date": source["logical_date"], "version": version, "re-evaluated tonight": True,
             **{m: metrics[m] for m in (f"ndcg@{k}", f"hr@{k}")}}]


def rank_all_models(params: dict[str, Any], profiles, split, k_max: int) -> tuple[dict, int | None]:
    """Every model's ranks on tonight's test split: candidate, champion (re-scored), MostPop, EASE."""
    from pipelines.evaluate.baselines import fit_ease
    from pipelines.evaluate.ranking import most_popular_scorer, rank_eval_set
    from pipelines.model.recommender import load_model, serving_scorer

    settings, paths = params["evaluate"], params["paths"]
    item_ids, texts = list(profiles.items["item_id"]), list(profiles.items["text"])
    candidate = load_model(Path(paths["candidate"]))
    scorers = {"candidate": serving_scorer(candidate, item_ids, texts)}
    champion_version, champion, _ = champion_model(params)
    if champion is not None:  # never its old numbers: it is scored again on tonight's split, as it serves
        scorers["champion"] = serving_scorer(champion, item_ids, texts)
    scorers["MostPop"] = most_popular_scorer(profiles.items["train_count"].to_numpy())
    if len(item_ids) <= int(settings.get("ease_max_items", 20000)):
        scorers["EASE"], lam, _ = fit_ease(profiles.sequences, item_ids, settings.get("ease_lambdas", [100.0]),
                                           int(settings["k"]))
        log.info("EASE: lambda %g chosen on validation", lam)
    else:
        log.info("EASE skipped: %d items exceed evaluate.ease_max_items", len(item_ids))
    ranks = {}
    for name, scorer in scorers.items():
        ranks[name] = rank_eval_set(scorer, split, item_ids, k_max)
        log.info("%s ranked %d test users", name, len(ranks[name].ranks))
    return ranks, champion_version


def test_slices(profiles, split, item_ids: list[str]) -> dict:
    """The test users' slices: activity, the target's popularity, and groups if profiles have them."""
    import numpy as np

    from pipelines.evaluate.analysis import user_slices

    column = {item: i for i, item in enumerate(item_ids)}
    tested = profiles.sequences.set_index("user_id").loc[split.user_ids]
    users = profiles.users.set_index("user_id")
    groups = list(users.loc[split.user_ids, "group"]) if "group" in users.columns else None
    return user_slices(tested["train_items"].map(len).to_numpy(),
                       np.array([column[t] for t in split.targets], dtype=np.int64),
                       profiles.items["train_count"].to_numpy(), groups)


def evaluate_stage(args: argparse.Namespace, params: dict[str, Any]) -> None:
    from pipelines.evaluate.analysis import analyse
    from pipelines.evaluate.ranking import test_set
    from pipelines.evaluate.gate import bless
    from pipelines.core.io import atomic_dir, read_json, write_json, write_manifest, write_text
    from pipelines.profiles.build import load_profiles
    from pipelines.evaluate.report import render_report

    settings, paths = params["evaluate"], params["paths"]
    k = int(settings["k"])
    ks = sorted({int(x) for x in settings.get("ks", [k])} | {k})
    profiles = load_profiles(paths["profiles"])
    source = read_json(Path(paths["profiles"]) / "manifest.json")
    item_ids = list(profiles.items["item_id"])
    split = test_set(profiles.sequences)
    ranks, champion_version = rank_all_models(params, profiles, split, max(ks))

    popularity = profiles.items["train_count"].to_numpy()
    n_train_users = max(int((profiles.sequences["train_items"].map(len) > 0).sum()), 1)
    analysis = analyse(ranks, ks=ks, k=k, n_items=len(item_ids), popularity=popularity,
                       n_train_users=n_train_users, slices=test_slices(profiles, split, item_ids),
                       n_resamples=int(settings.get("bootstrap_resamples", 1000)), seed=int(settings.get("seed", 0)))
    models = {name: result["metrics"] for name, result in analysis["models"].items()}
    for name, metrics in models.items():
        log.info("%s: %s", name, {m: round(v, 4) for m, v in metrics.items() if m.endswith(f"@{k}")})
    blessing = bless(settings.get("gate"), analysis, k=k, ks=ks)
    blessing.update(champion_version=champion_version, logical_date=source["logical_date"])
    log.info("decision: %s (%s)", blessing["decision"], blessing["reason"])

    evaluation = {
        "logical_date": source["logical_date"], "data_interval": source["data_interval"], "k": k, "ks": ks,
        "champion_version": champion_version, "candidate_name": "candidate", **analysis,
        "history": champion_history(params, k) + tonight_champion(analysis, champion_version, source, k),
        "curve": read_curve(Path(paths["reports"]) / "finetune" / "curve.csv"),
        "data_summary": {"users": len(profiles.sequences), "evaluated users": len(split.targets),
                         "items": len(item_ids),
                         "training interactions": int(profiles.sequences["train_items"].map(len).sum())},
        "blessing": blessing,
    }
    with atomic_dir(Path(paths["evaluate"])) as staging:
        write_json(staging / "blessing.json", blessing)
        write_json(staging / "metrics.json", models)
        write_json(staging / "evaluation.json", evaluation)
        write_manifest(staging, stage="evaluate", logical_date=source["logical_date"],
                       data_interval=source["data_interval"], params=settings,
                       candidate_manifest=read_json(Path(paths["candidate"]) / "manifest.json")["files"])
    write_dvc_reports(Path(paths["reports"]) / "evaluate", evaluation)
    write_text(Path(paths["reports"]) / "evaluate" / "report.html", render_report(evaluation))


def write_dvc_reports(reports: Path, evaluation: dict[str, Any]) -> None:
    """metrics.json for ``dvc metrics diff`` and CSVs for ``dvc plots diff``, night against night."""
    from pipelines.core.io import write_csv, write_json

    k = evaluation["k"]
    headline = [f"ndcg@{k}", f"hr@{k}", f"mrr@{k}", f"coverage@{k}"]
    write_json(reports / "metrics.json", {
        **{name: {m: result["metrics"][m] for m in headline if m in result["metrics"]}
           for name, result in evaluation["models"].items()},
        "candidate_vs_champion": evaluation["paired"], "blessed": evaluation["blessing"]["blessed"],
    })
    names = list(evaluation["models"])
    by_k = [{"k": kk, **{n: evaluation["models"][n]["metrics"][f"ndcg@{kk}"] for n in names}}
            for kk in evaluation["ks"]]
    write_csv(reports / "ndcg_by_k.csv", ["k", *names], by_k)
    by_slice = [{"slice": s, "users": v["users"], **{n: v["models"][n][f"ndcg@{k}"] for n in names}}
                for s, v in evaluation["slices"].items()]
    write_csv(reports / "ndcg_by_slice.csv", ["slice", "users", *names], by_slice)


def main(argv: list[str] | None = None) -> int:
    return run_stage(evaluate_stage, stage_parser(__doc__), argv)


if __name__ == "__main__":
    raise SystemExit(main())
