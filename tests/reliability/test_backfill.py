"""Backfilling old nights after a newer champion exists: each old night's blessed candidate is
registered and held, and the newer champion keeps serving every published night."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pipelines.core.io import read_json
from pipelines.registry.store import ACTION_HOLD, ModelVersion, Registry
from tests.reliability.night import NIGHTS, USER_IDS, make_project, published, run_task, stage_night

BACKFILLED = ("2026-02-05", "2026-02-06", "2026-02-07")  # before NIGHTS[1], the champion's night


def project_with_a_champion(tmp_path: Path, model: Path) -> tuple[dict[str, Any], Path, ModelVersion]:
    """A project whose champion is ``model``, promoted and published for NIGHTS[1]."""
    params, params_file = make_project(tmp_path)
    stage_night(params, NIGHTS[1], model, blessed=True)
    assert run_task("promote", params_file, NIGHTS[1]) == 0 and run_task("publish", params_file, NIGHTS[1]) == 0
    with Registry(params["paths"]["registry_url"], Path(params["paths"]["artifact_store"])) as registry:
        champion = registry.champion()
    assert champion is not None and champion.run_date == NIGHTS[1]
    return params, params_file, champion


def test_three_backfilled_nights_are_held_and_the_newer_champion_keeps_serving(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, small_models: tuple[Path, Path]) -> None:
    monkeypatch.chdir(tmp_path)
    newer, older = small_models
    params, params_file, champion = project_with_a_champion(tmp_path, newer)
    paths = params["paths"]

    for night in BACKFILLED:
        stage_night(params, night, older, blessed=True)
        assert run_task("promote", params_file, night) == 0
        decision = read_json(Path(paths["promote"]) / "decision.json")
        assert (decision["decision"], decision["blessed"], decision["champion_version"]) == (
            "HELD", True, champion.version)
        assert f"version {champion.version}, is of a later night ({NIGHTS[1]})" in decision["reason"]
        assert run_task("publish", params_file, night) == 0
        rows = published(params, night)
        assert set(rows["model_version"]) == {champion.version} and sorted(rows["user_id"].unique()) == USER_IDS
        summary = json.loads((Path(paths["publish"]) / "summary.json").read_text())
        assert (summary["promotion"], summary["model_version"], summary["served"]) == (
            "HELD", champion.version, "previous champion")

    with Registry(paths["registry_url"], Path(paths["artifact_store"])) as registry:
        assert registry.champion() == champion
        backfilled = sorted((v for v in registry.list_versions() if v.run_date in BACKFILLED), key=lambda v: v.run_date)
        assert [(v.run_date, v.blessed) for v in backfilled] == [(night, True) for night in BACKFILLED]
        holds = [e for e in registry.audit_log() if e.action == ACTION_HOLD]
        assert sorted(e.version for e in holds) == [v.version for v in backfilled]
        # The next backfill would be judged against, and start from, the newest held night before it.
        assert registry.champion_as_of("2026-02-08") == backfilled[-1]


def test_a_dry_run_decides_and_leaves_the_registry_and_the_warehouse_alone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, small_models: tuple[Path, Path]) -> None:
    from tasks import promote

    monkeypatch.chdir(tmp_path)
    first, second = small_models
    params, params_file, _ = project_with_a_champion(tmp_path, first)
    paths = params["paths"]
    with Registry(paths["registry_url"], Path(paths["artifact_store"])) as registry:
        before = (registry.list_versions(), registry.audit_log(), registry.champion())
    published_before = published(params, NIGHTS[1])

    for night, would_be in (("2026-02-10", "PROMOTED"), (BACKFILLED[0], "HELD")):
        stage_night(params, night, second, blessed=True)
        argv = ["--params", str(params_file), "--logical-date", night, "--dry-run"]
        assert promote.main(argv) == 0
        decision = read_json(Path(paths["promote"]) / "decision.json")
        assert (decision["decision"], decision["would_be"], decision["version"]) == ("DRY_RUN", would_be, None)
        assert decision["reason"].startswith(f"dry run, nothing registered: would be {would_be}")
        assert run_task("publish", params_file, night) == 0
        assert published(params, night).empty
        summary = json.loads((Path(paths["publish"]) / "summary.json").read_text())
        assert (summary["promotion"], summary["rows"], summary["model_version"]) == ("DRY_RUN", 0, None)

    with Registry(paths["registry_url"], Path(paths["artifact_store"])) as registry:
        assert (registry.list_versions(), registry.audit_log(), registry.champion()) == before
    assert published(params, NIGHTS[1]).equals(published_before)
