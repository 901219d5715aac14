"""The publish stage: the champion's top-K per user, written to the warehouse for the night.

It runs only after the night's promotion decision. A promoted candidate is the champion and is
served; after a refusal the champion that is still current (the previous one) is served. The
summary names the decision, the version served and why. A rerun replaces the night's rows.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.publish.serving import read_decision, serving_summary

if TYPE_CHECKING:
    from pipelines.config import PathsParams, PublishParams

log = logging.getLogger("retrain.publish")


def run_publish(logical_date: str, settings: PublishParams, paths: PathsParams, environ: Mapping[str, str]) -> None:
    """Publishes the champion's recommendations for ``logical_date`` (YYYY-MM-DD) and writes
    ``paths.publish``; the warehouse is the one extract read (``environ``, else ``paths.warehouse_url``).

    Raises:
        NonRetryableError: no promotion decision for ``logical_date``.
    """
    from pipelines.core.io import atomic_dir, write_json, write_manifest
    from pipelines.core.warehouse import redact, resolve_url
    from pipelines.model.recommender import load_model
    from pipelines.registry.store import Registry

    decision = read_decision(Path(paths.promote), logical_date)
    warehouse, _ = resolve_url(environ, paths.warehouse_url)  # the warehouse extract read
    with Registry(paths.registry_url, Path(paths.artifact_store)) as registry:
        champion = registry.champion()
        model_dir = registry.artifact_path(champion.version) if champion else None
        model = load_model(model_dir) if model_dir else None
    summary: dict[str, Any] = {"logical_date": logical_date, **serving_summary(decision, champion),
                               "warehouse": redact(warehouse), "table": "recommendations"}
    log.info("%s", summary["reason"])
    if model is None:
        summary.update(rows=0, users=0)
        log.warning("no champion yet: nothing published")
    else:
        rows, users = score_and_write(model, champion.version, Path(paths.profiles), warehouse, logical_date,
                                      settings.k)
        summary.update(rows=rows, users=users)
        log.info("published %d rows for %d users with model version %d", rows, users, champion.version)
    with atomic_dir(Path(paths.publish)) as staging:
        write_json(staging / "summary.json", summary)
        write_manifest(staging, stage="publish", logical_date=logical_date)


def score_and_write(model, version: int, profiles_dir: Path, warehouse, logical_date: str,
                    k: int) -> tuple[int, int]:
    """Scores every profiled user (whole history excluded) and replaces the night's rows."""
    from pipelines.model.recommender import serving_scorer
    from pipelines.profiles.build import load_profiles
    from pipelines.publish.writer import top_k_recommendations, write_recommendations

    profiles = load_profiles(profiles_dir)
    seqs = profiles.sequences
    histories = [list(t) + [x for x in (v, s) if isinstance(x, str)]
                 for t, v, s in zip(seqs["train_items"], seqs["valid_item"], seqs["test_item"])]
    item_ids = list(profiles.items["item_id"])
    texts = list(profiles.items["text"])
    scorer = serving_scorer(model, item_ids, texts)
    recs = top_k_recommendations(scorer, list(seqs["user_id"]), histories, item_ids, k)
    rows = write_recommendations(warehouse, logical_date, version, recs)
    return rows, int(recs["user_id"].nunique())
