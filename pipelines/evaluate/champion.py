"""The champion as the evaluate stage sees it: its model, and its test metrics over the nights."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any


def champion_model(registry_url: str, artifact_store: Path, logical_date: str):
    """The champion as of the night (``Registry.champion_as_of``: for a backfill or a rerun, never a
    model trained on that night or later): (version, model, artifact directory), or Nones."""
    from pipelines.model.recommender import load_model
    from pipelines.registry.store import Registry

    with Registry(registry_url, artifact_store) as registry:
        champion = registry.champion_as_of(logical_date)
        if champion is None:
            return None, None, None
        directory = registry.artifact_path(champion.version)
        return champion.version, load_model(directory), directory


def champion_history(registry_url: str, artifact_store: Path, k: int) -> list[dict[str, Any]]:
    """Each blessed version's test metrics on its own night, oldest first: the champion over time."""
    from pipelines.registry.store import Registry

    with Registry(registry_url, artifact_store) as registry:
        blessed = sorted((v for v in registry.list_versions() if v.blessed), key=lambda v: (v.run_date, v.version))
    history = []
    for version in blessed:
        own = version.metrics.get("candidate", {})  # the registry keeps the night's metrics of every model
        history.append({"run_date": version.run_date, "version": version.version,
                        **{m: own[m] for m in (f"ndcg@{k}", f"hr@{k}") if m in own}})
    return history


def tonight_champion(analysis: Mapping[str, Any], version: int | None, source: Mapping[str, Any], k: int
                     ) -> list[dict[str, Any]]:
    """The champion re-scored on tonight's split, the newest point of its history."""
    if "champion" not in analysis["models"]:
        return []
    metrics = analysis["models"]["champion"]["metrics"]
    return [{"run_date": source["logical_date"], "version": version, "re-evaluated tonight": True,
             **{m: metrics[m] for m in (f"ndcg@{k}", f"hr@{k}")}}]
