"""Promote killed with SIGKILL between its steps, then rerun: registry, champion, decision and
published table end consistent.

Each test runs night one to a champion, kills night two's promote at one point (a launcher
patches one step to SIGKILL its own process, so production code carries no fault hooks), checks
the kill happened where intended, reruns promote, publishes, and checks every invariant.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from pipelines.core.io import read_json, sha256_dir
from pipelines.registry.store import ACTION_PROMOTE, ACTION_REFUSE, Registry, aliases
from tests.conftest import PROJECT_ROOT
from tests.reliability.night import NIGHTS, USER_IDS, make_project, published, run_task, stage_night

# Runs tasks.promote.main with one step wrapped to SIGKILL the process at the chosen point.
LAUNCHER = r"""
import contextlib, os, signal, sys

point, argv = sys.argv[1], sys.argv[2:]

def die(*_args, **_kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

if point == "artifact-stored":
    from pipelines.registry.store import Registry
    store = Registry.store_artifact
    def store_then_die(self, *args, **kwargs):
        store(self, *args, **kwargs)
        die()
    Registry.store_artifact = store_then_die
elif point == "before-commit":
    import sqlalchemy as sa
    wrote = []
    @sa.event.listens_for(sa.engine.Engine, "before_cursor_execute")
    def seen(conn, cursor, statement, *rest):
        if statement.lstrip().upper().startswith("INSERT INTO MODEL_VERSIONS"):
            wrote.append(statement)
    @sa.event.listens_for(sa.engine.Engine, "commit")
    def before_commit(conn):
        if wrote:
            die()
elif point == "after-commit":
    import pipelines.registry.promote
    pipelines.registry.promote.write_decision = die
elif point == "before-rename":
    import pipelines.core.io
    real_atomic_dir = pipelines.core.io.atomic_dir
    @contextlib.contextmanager
    def atomic_dir_then_die(target):
        with real_atomic_dir(target) as staging:
            yield staging
            die()
    pipelines.core.io.atomic_dir = atomic_dir_then_die
else:
    raise SystemExit(f"unknown kill point {point!r}")

import tasks.promote
raise SystemExit(tasks.promote.main(argv))
"""

KILL_POINTS = ("artifact-stored", "before-commit", "after-commit", "before-rename")


def promote_killed_at(point: str, params_file: Path, night: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", LAUNCHER, point, "--params", str(params_file), "--logical-date", night],
        cwd=params_file.parent, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == -signal.SIGKILL, f"promote was not killed at {point}:\n{result.stderr[-2000:]}"


def night_versions(registry: Registry, night: str) -> list[Any]:
    return [v for v in registry.list_versions() if v.run_date == night]


def check_killed_where_intended(point: str, params: dict[str, Any], candidate_sha: str) -> None:
    """The state a kill at ``point`` leaves: proves the launcher stopped promote there."""
    paths = params["paths"]
    assert (Path(paths["artifact_store"]) / candidate_sha).is_dir()  # every point is after the copy
    with Registry(paths["registry_url"], Path(paths["artifact_store"])) as registry:
        registered = night_versions(registry, NIGHTS[1])
    assert len(registered) == (0 if point in ("artifact-stored", "before-commit") else 1)
    assert read_json(Path(paths["promote"]) / "decision.json")["logical_date"] == NIGHTS[0]
    staged = list(Path(paths["promote"]).parent.glob(".promote.tmp-*/decision.json"))
    if point == "before-rename":
        assert [read_json(p)["logical_date"] for p in staged] == [NIGHTS[1]]


def check_consistent(params: dict[str, Any], *, blessed: bool, candidate_sha: str, first_sha: str) -> None:
    paths = params["paths"]
    with Registry(paths["registry_url"], Path(paths["artifact_store"])) as registry:
        [previous] = night_versions(registry, NIGHTS[0])
        [tonight] = night_versions(registry, NIGHTS[1])  # one version row for the night
        champion = registry.champion()
        assert champion is not None
        assert champion.version == (tonight.version if blessed else previous.version)
        assert tonight.blessed is blessed and tonight.artifact_sha256 == candidate_sha
        assert previous.artifact_sha256 == first_sha
        for version in (previous, tonight):  # artifact_path re-hashes the stored copy
            assert sha256_dir(registry.artifact_path(version.version)) == version.artifact_sha256
        decisions = [e for e in registry.audit_log() if e.action in (ACTION_PROMOTE, ACTION_REFUSE)]
    assert [(e.version, e.action) for e in decisions if e.version == tonight.version] == [
        (tonight.version, ACTION_PROMOTE if blessed else ACTION_REFUSE)]
    assert len(decisions) == 2  # one per night, none repeated by the rerun
    engine = sa.create_engine(paths["registry_url"])
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(aliases)
                                .where(aliases.c.alias == "champion")).scalar_one() == 1
    finally:
        engine.dispose()
    decision = read_json(Path(paths["promote"]) / "decision.json")
    assert decision == {"logical_date": NIGHTS[1], "version": tonight.version, "blessed": blessed,
                        "decision": "PROMOTED" if blessed else "REFUSED", "reason": tonight.reason,
                        "champion_version": champion.version}
    rows = published(params, NIGHTS[1])
    assert set(rows["model_version"]) == {champion.version}
    assert sorted(rows["user_id"].unique()) == USER_IDS and not rows.duplicated(["user_id", "rank"]).any()
    summary = json.loads((Path(paths["publish"]) / "summary.json").read_text())
    assert (summary["model_version"], summary["promotion"]) == (champion.version, decision["decision"])


def run_night_with_kill(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, small_models: tuple[Path, Path],
                        point: str, blessed: bool, registry_url: str | None = None) -> None:
    monkeypatch.chdir(tmp_path)
    params, params_file = make_project(tmp_path, registry_url)
    first, second = small_models
    stage_night(params, NIGHTS[0], first, blessed=True)
    first_sha = sha256_dir(Path(params["paths"]["candidate"]))
    assert run_task("promote", params_file, NIGHTS[0]) == 0
    stage_night(params, NIGHTS[1], second, blessed=blessed)
    candidate_sha = sha256_dir(Path(params["paths"]["candidate"]))

    promote_killed_at(point, params_file, NIGHTS[1])
    check_killed_where_intended(point, params, candidate_sha)

    assert run_task("promote", params_file, NIGHTS[1]) == 0
    assert run_task("publish", params_file, NIGHTS[1]) == 0
    check_consistent(params, blessed=blessed, candidate_sha=candidate_sha, first_sha=first_sha)


@pytest.mark.parametrize("blessed", [True, False], ids=["blessed", "refused"])
@pytest.mark.parametrize("point", KILL_POINTS)
def test_promote_killed_then_rerun_is_consistent(tmp_path, monkeypatch, small_models, point, blessed):
    run_night_with_kill(tmp_path, monkeypatch, small_models, point, blessed)


@pytest.mark.postgres
@pytest.mark.parametrize("blessed", [True, False], ids=["blessed", "refused"])
def test_promote_killed_inside_a_postgresql_transaction_rolls_back(tmp_path, monkeypatch, small_models,
                                                                   postgres_url, blessed):
    run_night_with_kill(tmp_path, monkeypatch, small_models, "before-commit", blessed, registry_url=postgres_url)
