"""Stage publish: the champion's top-K per user, written to the warehouse for the night."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from tasks.common import parse_date, run_stage, stage_parser

log = logging.getLogger("retrain.publish")


def publish_stage(args: argparse.Namespace, params: dict[str, Any]) -> None:
    from pipelines.evaluation import model_scorer
    from pipelines.extract import redact_url
    from pipelines.io import NonRetryableError, atomic_dir, read_json, write_json, write_manifest
    from pipelines.model import Catalogue, load_model
    from pipelines.profiles import load_profiles
    from pipelines.publish import top_k_recommendations, write_recommendations
    from pipelines.registry import Registry

    paths, k = params["paths"], int(params["publish"]["k"])
    logical_date = parse_date(args.logical_date).isoformat()
    decision = read_json(Path(paths["promote"]) / "decision.json")
    if decision["logical_date"] != logical_date:
        raise NonRetryableError(f"promotion decision is for {decision['logical_date']}, not {logical_date}")
    with Registry(paths["registry_url"], Path(paths["artifact_store"])) as registry:
        champion = registry.champion()
        model = load_model(registry.artifact_path(champion.version)) if champion else None
    summary: dict[str, Any] = {"logical_date": logical_date, "promotion": decision["decision"],
                               "warehouse": redact_url(paths["warehouse_url"]), "table": "recommendations"}
    if model is None:
        summary.update(model_version=None, rows=0, reason="no champion yet: nothing to publish")
        log.warning("no champion yet: nothing published")
    else:
        profiles = load_profiles(paths["profiles"])
        seqs = profiles.sequences
        histories = [list(t) + [x for x in (v, s) if isinstance(x, str)]
                     for t, v, s in zip(seqs["train_items"], seqs["valid_item"], seqs["test_item"])]
        item_ids = list(profiles.items["item_id"])
        scorer = model_scorer(model, Catalogue(model, item_ids, list(profiles.items["text"])))
        recs = top_k_recommendations(scorer, list(seqs["user_id"]), histories, item_ids, k)
        rows = write_recommendations(paths["warehouse_url"], logical_date, champion.version, recs)
        summary.update(model_version=champion.version, rows=rows, users=int(recs["user_id"].nunique()))
        log.info("published %d rows for %d users with model version %d", rows, summary["users"], champion.version)
    with atomic_dir(Path(paths["publish"])) as staging:
        write_json(staging / "summary.json", summary)
        write_manifest(staging, stage="publish", logical_date=logical_date)


def main(argv: list[str] | None = None) -> int:
    return run_stage(publish_stage, stage_parser(__doc__), argv)


if __name__ == "__main__":
    raise SystemExit(main())
