"""Stage publish: the champion's top-K per user, written to the warehouse for the night.

It runs only after the night's promotion decision. A promoted candidate is the champion and is
served; after a refusal the champion that is still current (the previous one) is served. The
summary names the decision, the version served and why. A rerun replaces the night's rows.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any

from tasks.common import parse_date, run_stage, stage_parser

log = logging.getLogger("retrain.publish")


def read_decision(promote_dir: Path, logical_date: str) -> dict[str, Any]:
    """The night's promotion decision; publishing without it would serve an unknown model."""
    from pipelines.core.io import NonRetryableError, read_json

    path = Path(promote_dir) / "decision.json"
    if not path.is_file():
        raise NonRetryableError(f"no promotion decision at {path}: run promote for {logical_date} first")
    decision = read_json(path)
    if decision.get("logical_date") != logical_date:
        raise NonRetryableError(f"promotion decision at {path} is for {decision.get('logical_date')}, "
                                f"not {logical_date}: run promote for {logical_date} first")
    return decision


def serving_reason(decision: dict[str, Any], champion_version: int | None, champion_date: str | None) -> str:
    """Why this version (or nothing) is served tonight, in one sentence."""
    candidate = decision["version"]
    if decision["decision"] == "PROMOTED":
        why = f"candidate version {candidate} was promoted"
    else:
        why = f"candidate version {candidate} was refused ({decision['reason']})"
    if champion_version is None:
        return f"{why}; there is no champion yet: nothing to publish"
    expected = decision.get("champion_version")
    if expected is not None and expected != champion_version:
        why += f"; the champion has changed since the decision (version {expected} then)"
    if champion_version == candidate:
        return f"{why}; serving it (version {champion_version})"
    return f"{why}; serving the current champion, version {champion_version} (registered for {champion_date})"


def served_as(decision: dict[str, Any], champion_version: int | None) -> str:
    if champion_version is None:
        return "none"
    return "candidate" if champion_version == decision["version"] else "previous champion"


def serving_summary(decision: dict[str, Any], champion) -> dict[str, Any]:
    """The promotion decision, the version served (None: nothing) and why, for summary.json."""
    version = champion.version if champion else None
    return {"promotion": decision["decision"], "candidate_version": decision["version"], "model_version": version,
            "served": served_as(decision, version),
            "reason": serving_reason(decision, version, champion.run_date if champion else None)}


def publish_stage(args: argparse.Namespace, params: dict[str, Any]) -> None:
    from pipelines.core.warehouse import redact, resolve_url
    from pipelines.core.io import atomic_dir, write_json, write_manifest
    from pipelines.model.recommender import load_model
    from pipelines.registry.store import Registry

    paths, k = params["paths"], int(params["publish"]["k"])
    logical_date = parse_date(args.logical_date).isoformat()
    decision = read_decision(Path(paths["promote"]), logical_date)
    warehouse, _ = resolve_url(os.environ, paths.get("warehouse_url"))  # the warehouse extract read
    with Registry(paths["registry_url"], Path(paths["artifact_store"])) as registry:
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
        rows, users = score_and_write(model, champion.version, paths, warehouse, logical_date, k)
        summary.update(rows=rows, users=users)
        log.info("published %d rows for %d users with model version %d", rows, users, champion.version)
    with atomic_dir(Path(paths["publish"])) as staging:
        write_json(staging / "summary.json", summary)
        write_manifest(staging, stage="publish", logical_date=logical_date)


def score_and_write(model, version: int, paths: dict[str, Any], warehouse, logical_date: str,
                    k: int) -> tuple[int, int]:
    """Scores every profiled user (whole history excluded) and replaces the night's rows."""
    from pipelines.model.recommender import serving_scorer
    from pipelines.profiles.build import load_profiles
    from pipelines.publish.writer import top_k_recommendations, write_recommendations

    profiles = load_profiles(paths["profiles"])
    seqs = profiles.sequences
    histories = [list(t) + [x for x in (v, s) if isinstance(x, str)]
                 for t, v, s in zip(seqs["train_items"], seqs["valid_item"], seqs["test_item"])]
    item_ids = list(profiles.items["item_id"])
    texts = list(profiles.items["text"])
    scorer = serving_scorer(model, item_ids, texts)
    recs = top_k_recommendations(scorer, list(seqs["user_id"]), histories, item_ids, k)
    rows = write_recommendations(warehouse, logical_date, version, recs)
    return rows, int(recs["user_id"].nunique())


def main(argv: list[str] | None = None) -> int:
    return run_stage(publish_stage, stage_parser(__doc__), argv)


if __name__ == "__main__":
    raise SystemExit(main())
