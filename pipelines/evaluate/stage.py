"""The evaluate stage: candidate, re-evaluated champion, MostPop and EASE on the same split.

Writes the blessing, ``evaluation.json`` (metrics at every K with bootstrap intervals, the paired
candidate-vs-champion comparison, slices, the champion's history), the HTML report, and
metrics and plots for ``dvc metrics diff`` / ``dvc plots diff``.
"""

from __future__ import annotations

import csv
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.evaluate.champion import champion_history, champion_model, tonight_champion

if TYPE_CHECKING:
    from pipelines.config import EvaluateParams, GroupsParams, PathsParams
    from pipelines.model.representations import EncodedUsers
    from pipelines.ranking.scoring import ModelRanks, Scorer
    from pipelines.ranking.scoring import EvalSet
    from pipelines.profiles.build import Profiles

log = logging.getLogger("retrain.evaluate")


def run_evaluate(settings: EvaluateParams, paths: PathsParams, groups: GroupsParams) -> None:
    """Evaluates ``paths.candidate`` on the night of ``paths.profiles`` and writes ``paths.evaluate``
    and ``paths.reports``/evaluate. The night is the profiles manifest's logical date. The groups
    section (interest groups, the serving strategy and backoff, group metrics) follows ``groups``."""
    from pipelines.core.io import atomic_dir, read_json, write_json, write_manifest, write_text
    from pipelines.evaluate.gate import bless
    from pipelines.ranking.scoring import test_set
    from pipelines.evaluate.report import render_report
    from pipelines.profiles.build import load_profiles

    k = settings.k
    ks = sorted({*settings.ks, k})
    profiles = load_profiles(paths.profiles)
    source = read_json(Path(paths.profiles) / "manifest.json")
    split = test_set(profiles.sequences)
    ranks, scorers, champion_version, recency = rank_all_models(settings, paths, profiles, split, max(ks),
                                                                source["logical_date"])
    group_section = evaluate_night_groups(scorers, profiles, groups, settings)
    analysis = analyse_models(ranks, profiles, split, settings, k=k, ks=ks, interest_groups=group_section["labels"])
    judged = with_group_metrics(analysis, group_section["models"])
    blessing = bless(settings.gate, judged, k=k, ks=ks)
    # The registry keeps these with the version, so the champion is served as it was chosen.
    serving = {"strategy": group_section["strategy"], "explicit_strategy": group_section["explicit_strategy"],
               "backoff_strength": group_section["backoff"]["strength"],
               "backoff_max_interactions": group_section["backoff"]["max_interactions"],
               "chosen_on": group_section["strategy_chosen_on"],
               "item_model": {key: group_section["item_model"][key] for key in ("lambda", "weight")}}
    models = {**{name: result["metrics"] for name, result in judged["models"].items()}, "groups": serving,
              "recency_prior": recency["chosen"]}
    blessing.update(champion_version=champion_version, logical_date=source["logical_date"])
    log.info("decision: %s (%s)", blessing["decision"], blessing["reason"])

    reports = Path(paths.reports)
    evaluation = {
        "logical_date": source["logical_date"], "data_interval": source["data_interval"], "k": k, "ks": ks,
        "champion_version": champion_version, "candidate_name": "candidate", **analysis,
        "history": (champion_history(paths.registry_url, Path(paths.artifact_store), k)
                    + tonight_champion(analysis, champion_version, source, k)),
        "curve": read_curve(reports / "finetune" / "curve.csv"),
        "data_summary": data_summary(profiles, split),
        "groups": {key: value for key, value in group_section.items() if key != "labels"},
        "recency_prior": recency,
        "blessing": blessing,
    }
    with atomic_dir(Path(paths.evaluate)) as staging:
        write_json(staging / "blessing.json", blessing)
        write_json(staging / "metrics.json", models)
        write_json(staging / "evaluation.json", evaluation)
        write_manifest(staging, stage="evaluate", logical_date=source["logical_date"],
                       data_interval=source["data_interval"], params=settings.model_dump(),
                       groups=groups.model_dump(),
                       candidate_manifest=read_json(Path(paths.candidate) / "manifest.json")["files"])
    write_dvc_reports(reports / "evaluate", evaluation)
    write_text(reports / "evaluate" / "report.html", render_report(evaluation))


def rank_all_models(settings: EvaluateParams, paths: PathsParams, profiles: Profiles, split: EvalSet,
                    k_max: int, logical_date: str
                    ) -> tuple[dict[str, ModelRanks], dict[str, Scorer], int | None, dict[str, Any]]:
    """Every model's ranks on tonight's test split: candidate, champion as of the night (re-scored),
    MostPop, EASE; their scorers, the champion's version and the recency prior section. Candidate
    and champion are both ranked with the prior chosen tonight, so the gate compares the models,
    not two priors."""
    from pipelines.evaluate.baselines import fit_ease
    from pipelines.ranking.recency import TEST, ItemTimeline, RecencyPrior, case_prior
    from pipelines.ranking.scoring import most_popular_scorer, rank_eval_set
    from pipelines.model.recommender import load_model, serving_scorer
    from pipelines.model.text_vectors import model_catalogue

    item_ids, texts = list(profiles.items["item_id"]), list(profiles.items["text"])
    candidate = load_model(Path(paths.candidate))
    catalogue, text_vectors = model_catalogue(candidate, Path(paths.candidate), item_ids, texts)
    scorers = {"candidate": serving_scorer(candidate, item_ids, texts, catalogue, text_vectors)}
    recency = choose_recency_prior(scorers["candidate"], profiles, settings)
    timeline = ItemTimeline.from_sequences(profiles.sequences, item_ids, TEST)
    prior = RecencyPrior.from_record(recency["chosen"])
    champion_version, champion, champion_dir = champion_model(paths.registry_url, Path(paths.artifact_store),
                                                              logical_date)
    if champion is not None:  # never its old numbers: it is scored again on tonight's split, as it serves
        scorers["champion"] = serving_scorer(champion, item_ids, texts,
                                             *model_catalogue(champion, champion_dir, item_ids, texts))
    scorers["MostPop"] = most_popular_scorer(profiles.items["train_count"].to_numpy())
    if len(item_ids) <= settings.ease_max_items:
        scorers["EASE"], lam, _ = fit_ease(profiles.sequences, item_ids, settings.ease_lambdas, settings.k)
        log.info("EASE: lambda %g chosen on validation", lam)
    else:
        log.info("EASE skipped: %d items exceed evaluate.ease_max_items", len(item_ids))
    ranks = {}
    for name, scorer in scorers.items():
        adjust = case_prior(timeline, prior, split).adjust if name in ("candidate", "champion") else None
        ranks[name] = rank_eval_set(scorer, split, item_ids, k_max, adjust=adjust)
        log.info("%s ranked %d test users", name, len(ranks[name].ranks))
    return ranks, scorers, champion_version, recency


def choose_recency_prior(scorer: Scorer, profiles: Profiles, settings: EvaluateParams) -> dict[str, Any]:
    """The candidate's recency prior (``pipelines.ranking.recency``), chosen on the validation split
    (counting training events only): the chosen weight and window and every pair's validation
    NDCG@k; off where nothing can be chosen."""
    from pipelines.ranking.recency import VALIDATION, ItemTimeline, RecencyPrior, choose_prior, label
    from pipelines.ranking.scoring import validation_set

    valid = validation_set(profiles.sequences)
    timeline = ItemTimeline.from_sequences(profiles.sequences, list(profiles.items["item_id"]), VALIDATION)
    if not settings.recency_weights or not len(timeline.days) or valid.target_ts is None or not valid.targets:
        why = ("no weights in evaluate.recency_weights" if not settings.recency_weights
               else "the profiles hold no event times or no validation users")
        log.info("recency prior off: %s", why)
        return {"chosen": RecencyPrior().as_record(), "chosen_on": why, "validation": {}}
    started = time.perf_counter()
    chosen, curve = choose_prior(scorer, valid, timeline, list(profiles.items["item_id"]), settings.recency_weights,
                                 settings.recency_windows_days, settings.k)
    log.info("recency prior: %s chosen on validation (NDCG@%d %.4f; off %.4f) in %.1f s", label(chosen), settings.k,
             curve[label(chosen)], curve["off"], time.perf_counter() - started)
    return {"chosen": chosen.as_record(), "chosen_on": f"validation NDCG@{settings.k}", "validation": curve}


def evaluate_night_groups(scorers: Mapping[str, Scorer], profiles: Profiles, groups: GroupsParams,
                          settings: EvaluateParams) -> dict[str, Any]:
    """The groups section: interest groups from the candidate's user vectors (training histories),
    then ``pipelines.evaluate.groups.evaluate_groups`` for the candidate and MostPop (the gate's group checks
    are floors and margins over MostPop: a paired comparison with the champion is left to the user metrics).
    The candidate's scorer has already encoded most of these histories (``EncodedUsers``)."""
    from pipelines.evaluate.groups import evaluate_groups

    started = time.perf_counter()
    candidate: EncodedUsers = scorers["candidate"]  # type: ignore[assignment]
    vectors = candidate.user_vectors([list(h) for h in profiles.sequences["train_items"]])
    judged = {name: scorers[name] for name in ("candidate", "MostPop")}  # what the gate's group checks read
    section = evaluate_groups(judged, vectors, profiles.sequences, profiles.groups,
                              list(profiles.items["item_id"]), groups, k=settings.k,
                              n_resamples=settings.bootstrap_resamples, seed=settings.seed)
    return {**section, "seconds": round(time.perf_counter() - started, 3)}


def with_group_metrics(analysis: Mapping[str, Any], group_metrics: Mapping[str, Mapping[str, float]]) -> dict:
    """``analysis`` with each model's group metrics beside its user metrics, for the gate."""
    models = {name: {**result, "metrics": {**result["metrics"], **group_metrics.get(name, {})}}
              for name, result in analysis["models"].items()}
    return {**analysis, "models": models}


def analyse_models(ranks: Mapping[str, ModelRanks], profiles: Profiles, split: EvalSet,
                   settings: EvaluateParams, *, k: int, ks: list[int],
                   interest_groups: Mapping[str, int] | None = None) -> dict[str, Any]:
    """Metrics with bootstrap intervals, the paired comparison and the slices (one per interest
    group when ``interest_groups`` maps users to one); logs each model at ``k``."""
    from pipelines.evaluate.analysis import analyse

    item_ids = list(profiles.items["item_id"])
    popularity = profiles.items["train_count"].to_numpy()
    n_train_users = max(int((profiles.sequences["train_items"].map(len) > 0).sum()), 1)
    analysis = analyse(ranks, ks=ks, k=k, n_items=len(item_ids), popularity=popularity,
                       n_train_users=n_train_users,
                       slices=test_slices(profiles, split, item_ids, interest_groups),
                       n_resamples=settings.bootstrap_resamples, seed=settings.seed)
    for name, result in analysis["models"].items():
        log.info("%s: %s", name, {m: round(v, 4) for m, v in result["metrics"].items() if m.endswith(f"@{k}")})
    return analysis


def test_slices(profiles: Profiles, split: EvalSet, item_ids: list[str],
                interest_groups: Mapping[str, int] | None = None) -> dict:
    """The test users' slices: activity, the target's popularity, and interest groups when given."""
    import numpy as np

    from pipelines.evaluate.analysis import user_slices

    column = {item: i for i, item in enumerate(item_ids)}
    tested = profiles.sequences.set_index("user_id").loc[split.user_ids]
    groups = None if interest_groups is None else [interest_groups[u] for u in split.user_ids]
    return user_slices(tested["train_items"].map(len).to_numpy(),
                       np.array([column[t] for t in split.targets], dtype=np.int64),
                       profiles.items["train_count"].to_numpy(), groups)



def data_summary(profiles: Profiles, split: EvalSet) -> dict[str, int]:
    """The night's data in the report's words."""
    return {"users": len(profiles.sequences), "evaluated users": len(split.targets),
            "items": len(profiles.items["item_id"]),
            "training interactions": int(profiles.sequences["train_items"].map(len).sum())}


def read_curve(path: Path) -> list[dict[str, str]]:
    """The finetune stage's training curve (curve.csv); none when it is missing."""
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def write_dvc_reports(reports: Path, evaluation: Mapping[str, Any]) -> None:
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
