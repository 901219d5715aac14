"""The publish stage: the champion's top-K per user and per group, written to the warehouse for the night.

It runs only after the night's promotion decision. A promoted candidate is the champion and is
served; after a refusal, or a hold (a backfilled night), the champion that is still current is
served; after a dry run nothing is published. The
summary names the decision, the version served and why. Beside ``recommendations`` and in the
same transaction: the champion's interest groups (``interest_groups``, ``interest_group_members``)
and the lists of interest and explicit groups (``group_recommendations``); see
``pipelines.publish.groups``. A rerun replaces the night's rows of every table.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.publish.serving import read_decision, serving_summary

if TYPE_CHECKING:
    from pipelines.config import GroupsParams, PathsParams, PublishParams
    from pipelines.registry.store import ModelVersion

log = logging.getLogger("retrain.publish")


def run_publish(logical_date: str, settings: PublishParams, paths: PathsParams, environ: Mapping[str, str],
                groups: GroupsParams) -> None:
    """Publishes the champion's recommendations for ``logical_date`` (YYYY-MM-DD) and writes
    ``paths.publish``; the warehouse is the one extract read (``environ``, else ``paths.warehouse_url``).

    Raises:
        NonRetryableError: no promotion decision for ``logical_date``.
    """
    from pipelines.core.warehouse import redact, resolve_url
    from pipelines.model.recommender import load_model
    from pipelines.registry.store import Registry

    decision = read_decision(Path(paths.promote), logical_date)
    if decision["decision"] == "DRY_RUN":  # a manual run that decides only
        reason = f"{decision['reason']}; nothing published"
        log.info("%s", reason)
        write_summary(paths, logical_date, {"logical_date": logical_date, "promotion": "DRY_RUN", "model_version": None,
                                            "served": "none", "reason": reason, "rows": 0, "users": 0})
        return
    warehouse, source = resolve_url(environ, paths.warehouse_url)  # the warehouse extract read
    with Registry(paths.registry_url, Path(paths.artifact_store)) as registry:
        champion = registry.champion()
        model_dir = registry.artifact_path(champion.version) if champion else None
        model = load_model(model_dir) if model_dir else None
    summary: dict[str, Any] = {"logical_date": logical_date, **serving_summary(decision, champion),
                               "warehouse": redact(warehouse), "table": "recommendations"}
    log.info("%s", summary["reason"])
    lists = None
    if model is None:
        summary.update(rows=0, users=0)
        log.warning("no champion yet: nothing published")
    else:
        counts, lists = score_and_write(model, model_dir, champion, paths, warehouse, source, logical_date,
                                        settings.k, groups)
        summary.update(counts)
        log.info("published %d rows for %d users with model version %d", summary["rows"], summary["users"],
                 champion.version)
    write_summary(paths, logical_date, summary, lists)


def write_night(url: Any, source: str, logical_date: str, version: int, recs: Any, tables: list[Any]) -> int:
    """``write_recommendations``; a failure no retry can fix (permissions, a missing database) is
    named against the warehouse and the setting it came from.

    Raises:
        NonRetryableError: the write failed for good; nothing was written (one transaction).
    """
    from pipelines.core.failures import named_if_permanent
    from pipelines.core.warehouse import redact
    from pipelines.publish.writer import write_recommendations

    with named_if_permanent(f"publishing to the warehouse {redact(url)} ({source})", url.password):
        return write_recommendations(url, logical_date, version, recs, extra=tables)


def write_summary(paths: PathsParams, logical_date: str, summary: Mapping[str, Any], lists=None) -> None:
    """summary.json, and the night's user lists (what the next night's incremental publish reuses)."""
    from pipelines.core.io import atomic_dir, write_json, write_manifest
    from pipelines.publish.incremental import USER_LISTS_FILE

    with atomic_dir(Path(paths.publish)) as staging:
        if lists is not None:
            lists.to_parquet(staging / USER_LISTS_FILE, index=False)
        write_json(staging / "summary.json", summary)
        write_manifest(staging, stage="publish", logical_date=logical_date)


def score_and_write(model, model_dir: Path, champion: ModelVersion, paths: PathsParams, warehouse: Any,
                    warehouse_source: str, logical_date: str, k: int,
                    settings: GroupsParams) -> tuple[dict[str, Any], Any]:
    """Scores every profiled user (whole history excluded; only those whose list can have changed
    where that is exact, ``pipelines.publish.incremental``) and every group, and replaces the
    night's rows of every published table in one transaction (``warehouse_source``: the setting
    the warehouse URL came from); returns the summary's counts and the user lists."""
    import pandas as pd

    from pipelines.model.recommender import serving_scorer
    from pipelines.model.text_vectors import model_catalogue
    from pipelines.profiles.build import load_profiles
    from pipelines.publish import groups as publish_groups
    from pipelines.publish import incremental

    profiles = load_profiles(paths.profiles)
    seqs = profiles.sequences
    user_ids = list(seqs["user_id"])
    histories = [list(t) + [x for x in (v, s) if isinstance(x, str)]
                 for t, v, s in zip(seqs["train_items"], seqs["valid_item"], seqs["test_item"])]
    item_ids = list(profiles.items["item_id"])
    texts = list(profiles.items["text"])
    catalogue, text_vectors = model_catalogue(model, model_dir, item_ids, texts)
    scorer = serving_scorer(model, item_ids, texts, catalogue, text_vectors)
    choice = publish_groups.serving_choice(champion.version, champion.metrics)
    recency, user_scorer = served_recency(scorer, champion, profiles, paths)
    started = time.perf_counter()
    vectors = scorer.user_vectors(histories)  # the histories' encoder pass, kept for the lists below
    found = publish_groups.find_groups(vectors, user_ids, settings, *publish_groups.previous_groups(warehouse,
                                                                                                   logical_date))
    group_rows, averages = publish_groups.interest_group_lists(scorer, found, vectors, histories, item_ids, choice,
                                                              settings, k)
    group_rows += publish_groups.explicit_group_lists(scorer, profiles.groups,
                                                      dict(zip(user_ids, histories)), item_ids, choice, settings, k)
    group_seconds = time.perf_counter() - started
    basis = incremental.serving_basis(incremental.model_digest(model_dir), item_ids, texts, k, recency)
    hashes = incremental.history_hashes(histories)
    reuse = incremental.reusable(*incremental.previous_lists(Path(paths.publish), basis), user_ids, hashes,
                                 backs_off(histories, averages, choice))
    log.info("%s", reuse.reason)
    rescored = [r for r, user in enumerate(user_ids) if user not in reuse.kept_users]
    fresh = publish_groups.user_lists_with_backoff(
        user_scorer, [user_ids[r] for r in rescored], [histories[r] for r in rescored],
        dataclasses.replace(found, ids=found.ids[rescored]), averages, item_ids, choice.backoff_strength, k,
        choice.backoff_max_interactions) if rescored else reuse.kept.iloc[0:0]
    recs = pd.concat([reuse.kept, fresh], ignore_index=True) if len(reuse.kept) else fresh
    started = time.perf_counter()
    group_profiles, members = publish_groups.profile_rows(found, user_ids, histories, profiles.items, settings)
    group_seconds += time.perf_counter() - started
    tables = publish_groups.night_tables(group_rows, group_profiles, members, champion.version)
    rows = write_night(warehouse, warehouse_source, logical_date, champion.version, recs, tables)
    kinds = pd.Series([row["group_kind"] for row in group_rows], dtype=object)
    counts = {"rows": rows, "users": int(recs["user_id"].nunique()), "rescore": reuse.reason, "serving_basis": basis,
              "recency_prior": recency or {"weight": 0.0},
            "groups": {"strategy": choice.strategy, "explicit_strategy": choice.for_explicit_groups,
                       "backoff_strength": choice.backoff_strength,
                       "backoff_max_interactions": choice.backoff_max_interactions,
                       "item_model": {"lambda": choice.item_model.lam, "weight": choice.item_model.weight},
                       "choice": choice.source, "interest_groups": len(group_profiles),
                       "sizes": [p["size"] for p in group_profiles], "merged_small_groups": found.merged,
                       "withheld": found.withheld, "churn": found.churn,
                       "interest_group_rows": int((kinds == "interest").sum()),
                       "explicit_group_rows": int((kinds == "explicit").sum()),
                       "tables": [table.name for table, _ in tables],
                       "seconds": round(group_seconds, 3)}}
    return counts, incremental.lists_with_hashes(recs, user_ids, hashes)


def served_recency(scorer, champion: ModelVersion, profiles, paths: PathsParams) -> tuple[dict[str, Any] | None, Any]:
    """The recency prior recorded with the champion, counted up to the night's data interval end, and
    the per-user scorer with it; (None, ``scorer``) when the prior is off. Group lists are served
    without it, as evaluate judges them."""
    import datetime as dt

    from pipelines.core.io import read_json
    from pipelines.ranking.recency import DAY_S, ItemTimeline, RecencyPrior, label, scorer_as_of

    prior = RecencyPrior.from_record(champion.metrics.get("recency_prior"))
    if prior.off:
        return None, scorer
    end = dt.datetime.fromisoformat(read_json(Path(paths.profiles) / "manifest.json")["data_interval"]["end"])
    as_of_day = int((end if end.tzinfo else end.replace(tzinfo=dt.timezone.utc)).timestamp()) // DAY_S
    log.info("recency prior of version %d: %s, counted before %s", champion.version, label(prior),
             dt.datetime.fromtimestamp(as_of_day * DAY_S, dt.timezone.utc).date())
    timeline = ItemTimeline.from_sequences(profiles.sequences, list(profiles.items["item_id"]))
    return {**prior.as_record(), "as_of_day": as_of_day}, scorer_as_of(scorer, timeline, prior, as_of_day)


def backs_off(histories: list[list[str]], averages: Mapping[int, Any], choice) -> Any:
    """Which users' lists blend in their interest group's scores (those always change)."""
    import numpy as np

    from pipelines.groups.backoff import backoff_weights

    lengths = np.array([len(h) for h in histories])
    if choice.backoff_strength == 0 or not averages:
        return np.zeros(len(histories), dtype=bool)
    return backoff_weights(lengths, choice.backoff_strength, choice.backoff_max_interactions) < 1.0
