"""Unit tests of the model registry, on SQLite and on PostgreSQL."""

from __future__ import annotations

import logging
import multiprocessing
import shutil
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select

from pipelines.registry import store as registry_module
from pipelines.core.io import NonRetryableError, sha256_dir
from pipelines.registry.store import (
    ACTION_BLESS,
    ACTION_FORCE_PROMOTE,
    ACTION_HOLD,
    ACTION_PROMOTE,
    ACTION_REFUSE,
    ACTION_ROLLBACK,
    ALIAS_ACTIONS,
    STATUS_BLESSED,
    STATUS_REJECTED,
    ArtifactIntegrityError,
    AuditEntry,
    ModelVersion,
    NothingToRollBackError,
    PromotionRefusedError,
    Registry,
    RegistryError,
    UnknownVersionError,
    aliases,
    audit_log_table,
    model_versions,
)

NIGHT = "2026-03-02"


@pytest.fixture
def registry_url(database_url: str) -> str:
    return database_url


@pytest.fixture
def registry(registry_url: str, tmp_path: Path) -> Iterator[Registry]:
    with Registry(registry_url, tmp_path / "artifacts") as reg:
        yield reg


@pytest.fixture
def sqlite_registry(tmp_path: Path) -> Iterator[Registry]:
    """For checks of the artifact store alone, which no database backend changes."""
    with Registry(f"sqlite:///{tmp_path / 'registry.db'}", tmp_path / "artifacts") as reg:
        yield reg


def make_model(root: Path, name: str, weights: str) -> Path:
    model_dir = root / "models" / name
    (model_dir / "adapter").mkdir(parents=True)
    (model_dir / "adapter" / "adapter_model.safetensors").write_text(weights)
    (model_dir / "config.json").write_text('{"rank": 8}')
    return model_dir


def register(reg: Registry, model_dir: Path, *, blessed: bool, run_date: str = NIGHT, **overrides: Any) -> ModelVersion:
    fields: dict[str, Any] = {
        "reason": "ndcg@10 0.140 >= 0.010; gain +0.004 >= 0.0" if blessed else "ndcg@10 gain -0.020 < 0.0",
        "base_model": "minilm-l6",
        "data_interval": (f"{run_date}T00:00:00", f"{run_date}T23:59:59"),
        "params": {"lora_rank": 8, "epochs": 8},
        "metrics": {"ndcg@10": 0.14, "hr@10": 0.25},
        "lineage": {"profiles": "sha-of-profiles", "dvc_lock": "sha-of-lock"},
        "git_commit": "0123abcd",
        "report_path": f"reports/{run_date}/evaluate.html",
        **overrides,
    }
    return reg.register(model_dir=model_dir, run_date=run_date, blessed=blessed, **fields)


def count_rows(url: str, table: Any) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(table)).scalar_one())
    finally:
        engine.dispose()


def test_blessed_version_becomes_champion(registry: Registry, tmp_path: Path) -> None:
    assert registry.champion() is None

    version = register(registry, make_model(tmp_path, "a", "weights-a"), blessed=True)

    assert version.version == 1
    assert version.status == STATUS_BLESSED and version.blessed
    assert version.params == {"lora_rank": 8, "epochs": 8}
    assert version.metrics["ndcg@10"] == pytest.approx(0.14)
    assert version.lineage["dvc_lock"] == "sha-of-lock"
    assert version.data_interval == (f"{NIGHT}T00:00:00", f"{NIGHT}T23:59:59")
    assert registry.champion() == version
    [entry] = registry.audit_log()
    assert (entry.action, entry.version, entry.actor) == (ACTION_PROMOTE, 1, "pipeline")
    assert entry.details["previous_champion"] is None


def test_refused_version_leaves_champion_and_is_audited(registry: Registry, tmp_path: Path) -> None:
    champion = register(registry, make_model(tmp_path, "a", "weights-a"), blessed=True)

    refused = register(
        registry, make_model(tmp_path, "b", "weights-b"), blessed=False, run_date="2026-03-03", actor="alice"
    )

    assert refused.status == STATUS_REJECTED and not refused.blessed
    assert registry.champion() == champion
    latest = registry.audit_log(limit=1)
    assert len(latest) == 1
    assert (latest[0].action, latest[0].version, latest[0].actor) == (ACTION_REFUSE, 2, "alice")
    assert latest[0].reason == "ndcg@10 gain -0.020 < 0.0" == refused.reason
    assert latest[0].details["previous_champion"] == 1


def test_rerun_of_a_night_returns_the_existing_version(registry: Registry, registry_url: str, tmp_path: Path) -> None:
    model_dir = make_model(tmp_path, "a", "weights-a")
    first = register(registry, model_dir, blessed=True)
    refused = register(registry, make_model(tmp_path, "b", "weights-b"), blessed=False)

    assert register(registry, model_dir, blessed=True) == first
    assert register(registry, model_dir, blessed=False) == first  # a rerun never demotes
    assert register(registry, tmp_path / "models" / "b", blessed=False) == refused

    assert [v.version for v in registry.list_versions()] == [1, 2]
    assert len(registry.audit_log()) == 2
    assert count_rows(registry_url, aliases) == 1


def test_rerun_of_an_older_night_does_not_take_the_champion_back(registry: Registry, tmp_path: Path) -> None:
    old = make_model(tmp_path, "old", "weights-old")
    register(registry, old, blessed=True, run_date="2026-03-01")
    newer = register(registry, make_model(tmp_path, "new", "weights-new"), blessed=True)

    register(registry, old, blessed=True, run_date="2026-03-01")

    assert registry.champion() == newer
    assert len(registry.audit_log()) == 2


def test_blessed_backfills_are_held_and_the_newer_champion_keeps_serving(registry: Registry, tmp_path: Path) -> None:
    newer = register(registry, make_model(tmp_path, "new", "weights-new"), blessed=True)  # NIGHT, 2026-03-02
    backfills = [register(registry, make_model(tmp_path, f"old{d}", f"weights-{d}"), blessed=True,
                          run_date=f"2026-02-2{d}") for d in (5, 6, 7)]

    assert registry.champion() == newer
    assert all(v.status == STATUS_BLESSED for v in backfills)
    holds = registry.audit_log(limit=3)
    assert [(e.action, e.version) for e in holds] == [(ACTION_HOLD, 4), (ACTION_HOLD, 3), (ACTION_HOLD, 2)]
    assert all(e.details["champion"] == newer.version and e.details["champion_run_date"] == NIGHT for e in holds)
    assert [e.version for e in alias_moves(registry)] == [newer.version]  # the alias moved once

    change = registry.promote(backfills[-1].version, reason="serve the backfilled model", actor="alice")
    assert change.champion.version == backfills[-1].version == registry.champion().version
    with pytest.raises(RegistryError, match="written by the registry itself"):
        registry.record(ACTION_HOLD, reason="by hand", actor="alice", details={}, version=2)


def test_a_refused_old_night_blessed_on_rerun_is_held_too(registry: Registry, tmp_path: Path) -> None:
    old = make_model(tmp_path, "old", "weights-old")
    register(registry, old, blessed=False, run_date="2026-02-20")
    newer = register(registry, make_model(tmp_path, "new", "weights-new"), blessed=True)

    held = register(registry, old, blessed=True, run_date="2026-02-20", reason="thresholds relaxed")

    assert held.status == STATUS_BLESSED and registry.champion() == newer
    assert registry.audit_log(limit=1)[0].action == ACTION_HOLD


def test_the_champion_as_of_a_night_never_saw_that_night(registry: Registry, tmp_path: Path) -> None:
    assert registry.champion_as_of("2026-03-01") is None  # the first night
    v1 = register(registry, make_model(tmp_path, "a", "weights-a"), blessed=True, run_date="2026-03-01")
    register(registry, make_model(tmp_path, "r", "weights-r"), blessed=False, run_date="2026-03-02")
    v3 = register(registry, make_model(tmp_path, "b", "weights-b"), blessed=True, run_date="2026-03-03")

    assert registry.champion_as_of("2026-03-04") == v3  # a normal night: the champion
    assert registry.champion_as_of("2026-03-03") == v1  # a rerun of v3's night: where that night started
    assert registry.champion_as_of("2026-03-02") == v1  # a backfill: the newest blessed earlier night
    assert registry.champion_as_of("2026-03-01") is None
    held = register(registry, make_model(tmp_path, "c", "weights-c"), blessed=True, run_date="2026-02-28")
    assert registry.champion_as_of("2026-03-01") == held  # a held backfill is the next backfill's champion
    assert registry.champion_as_of("2026-03-02") == v1  # by night, not by registration order

    registry.rollback(reason="v3 is bad", actor="carol")
    assert registry.champion_as_of("2026-03-04") == v1  # a rollback is respected
    with pytest.raises(NonRetryableError, match="YYYY-MM-DD"):
        registry.champion_as_of("tomorrow")


def test_refused_then_blessed_promotes_the_existing_version(registry: Registry, tmp_path: Path) -> None:
    model_dir = make_model(tmp_path, "a", "weights-a")
    refused = register(registry, model_dir, blessed=False)
    assert registry.champion() is None

    promoted = register(registry, model_dir, blessed=True, reason="thresholds relaxed by operator")

    assert promoted.version == refused.version == 1
    assert promoted.status == STATUS_BLESSED
    assert promoted.reason == "thresholds relaxed by operator"
    assert registry.champion() == promoted
    assert [v.version for v in registry.list_versions()] == [1]
    promote, refuse = registry.audit_log()
    assert (promote.action, promote.version, refuse.action) == (ACTION_PROMOTE, 1, ACTION_REFUSE)
    assert promote.details["previous_status"] == STATUS_REJECTED


def test_artifacts_are_content_addressed(registry: Registry, tmp_path: Path) -> None:
    store = tmp_path / "artifacts"
    first = register(registry, make_model(tmp_path, "a", "same weights"), blessed=True, run_date="2026-03-01")
    # Same bytes from another directory on another night: a new version, the same stored copy.
    second = register(registry, make_model(tmp_path, "b", "same weights"), blessed=True)
    third = register(registry, make_model(tmp_path, "c", "other weights"), blessed=True, run_date="2026-03-03")

    assert first.version != second.version
    assert first.artifact_sha256 == second.artifact_sha256 != third.artifact_sha256
    assert first.artifact_sha256 == sha256_dir(tmp_path / "models" / "a")
    assert registry.artifact_path(1) == registry.artifact_path(2) == store / first.artifact_sha256
    assert Path(first.artifact_uri) == (store / first.artifact_sha256).resolve()
    assert (registry.artifact_path(3) / "adapter" / "adapter_model.safetensors").read_text() == "other weights"
    assert sorted(p.name for p in store.iterdir()) == sorted({first.artifact_sha256, third.artifact_sha256})


def test_tampered_artifact_is_detected(sqlite_registry: Registry, tmp_path: Path) -> None:
    model_dir = make_model(tmp_path, "a", "weights-a")
    version = register(sqlite_registry, model_dir, blessed=True)
    stored = sqlite_registry.artifact_path(version.version)

    (stored / "adapter" / "adapter_model.safetensors").write_text("weights-evil")

    with pytest.raises(ArtifactIntegrityError, match="modified"):
        sqlite_registry.artifact_path(version.version)
    with pytest.raises(ArtifactIntegrityError, match="modified"):
        sqlite_registry.store_artifact(model_dir)  # the damaged copy is never silently reused


def test_missing_artifact_is_detected(sqlite_registry: Registry, tmp_path: Path) -> None:
    version = register(sqlite_registry, make_model(tmp_path, "a", "weights-a"), blessed=True)
    shutil.rmtree(sqlite_registry.artifact_path(version.version))

    with pytest.raises(ArtifactIntegrityError, match="missing"):
        sqlite_registry.artifact_path(version.version)


def test_failure_inside_the_transaction_changes_nothing(
    registry: Registry, registry_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    champion = register(registry, make_model(tmp_path, "a", "weights-a"), blessed=True, run_date="2026-03-01")
    candidate = make_model(tmp_path, "b", "weights-b")

    def crash(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("worker killed mid-transaction")

    # The alias moves last, after the version and audit rows were inserted: all must roll back.
    monkeypatch.setattr(registry_module, "_move_alias", crash)
    with pytest.raises(RuntimeError, match="worker killed"):
        register(registry, candidate, blessed=True)

    assert registry.champion() == champion
    assert [v.version for v in registry.list_versions()] == [1]
    assert count_rows(registry_url, model_versions) == 1
    assert len(registry.audit_log()) == 1
    monkeypatch.undo()
    # The artifact stored before the crash is reused by the rerun.
    retried = register(registry, candidate, blessed=True)
    assert retried.version == 2 and registry.champion() == retried


def test_list_get_and_audit_log(registry: Registry, tmp_path: Path) -> None:
    for i, blessed in enumerate([True, False, True], start=1):
        register(registry, make_model(tmp_path, f"m{i}", f"weights-{i}"), blessed=blessed, run_date=f"2026-03-0{i}")

    versions = registry.list_versions()
    assert [(v.version, v.status) for v in versions] == [(1, "blessed"), (2, "rejected"), (3, "blessed")]
    assert registry.get(2) == versions[1]
    assert registry.get(2).run_date == "2026-03-02"
    assert registry.champion() == versions[2]
    log = registry.audit_log()
    assert [(e.action, e.version) for e in log] == [(ACTION_PROMOTE, 3), (ACTION_REFUSE, 2), (ACTION_PROMOTE, 1)]
    assert [e.version for e in registry.audit_log(limit=2)] == [3, 2]
    assert log[0].details["previous_champion"] == 1


def test_unknown_version_is_a_clear_error(registry: Registry) -> None:
    with pytest.raises(UnknownVersionError, match="model version 42 is not in the registry"):
        registry.get(42)
    with pytest.raises(KeyError):
        registry.artifact_path(42)


@pytest.mark.parametrize("run_date", ["2026-3-2", "20260302", "2026-02-30", ""])
def test_malformed_run_date_is_refused_before_anything_is_written(
    sqlite_registry: Registry, tmp_path: Path, run_date: str
) -> None:
    with pytest.raises(NonRetryableError, match="YYYY-MM-DD"):
        register(sqlite_registry, make_model(tmp_path, "a", "weights-a"), blessed=True, run_date=run_date)
    assert sqlite_registry.list_versions() == []
    assert list((tmp_path / "artifacts").iterdir()) == []


def test_registry_reopens_on_an_existing_database(registry_url: str, tmp_path: Path) -> None:
    with Registry(registry_url, tmp_path / "artifacts") as reg:
        first = register(reg, make_model(tmp_path, "a", "weights-a"), blessed=True)
    with Registry(registry_url, tmp_path / "artifacts") as reg:
        assert reg.champion() == first
        assert reg.artifact_path(1).is_dir()


@pytest.mark.postgres
def test_password_is_never_logged(postgres_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # The server trusts local connections, so any password connects; it must still stay hidden.
    url = postgres_url.replace("postgres@", "postgres:s3cr3t-pw@", 1)
    caplog.set_level(logging.DEBUG)
    with Registry(url, tmp_path / "artifacts") as reg:
        register(reg, make_model(tmp_path, "a", "weights-a"), blessed=True)
        text = repr(reg)
    assert "***" in text
    assert "s3cr3t-pw" not in text
    assert caplog.records and all("s3cr3t-pw" not in r.getMessage() for r in caplog.records)


def test_concurrent_registers_get_distinct_versions_and_one_champion(registry_url: str, tmp_path: Path) -> None:
    n = 8
    models = [make_model(tmp_path, f"m{i}", f"weights-{i}") for i in range(n)]
    start = threading.Barrier(n)

    def worker(model_dir: Path) -> int:
        start.wait()  # every worker opens (create_all) and registers at the same time
        with Registry(registry_url, tmp_path / "artifacts") as reg:
            return register(reg, model_dir, blessed=True).version

    with ThreadPoolExecutor(max_workers=n) as pool:
        versions = list(pool.map(worker, models))

    assert sorted(versions) == list(range(1, n + 1))
    assert count_rows(registry_url, aliases) == 1
    with Registry(registry_url, tmp_path / "artifacts") as reg:
        # Versions are numbered in commit order, so the last commit (the champion) is the highest.
        champion = reg.champion()
        assert champion is not None and champion.version == n
        log = reg.audit_log()
        assert sorted(e.version for e in log) == list(range(1, n + 1))
        assert {e.action for e in log} == {ACTION_PROMOTE}
        assert [e.details["previous_champion"] for e in reversed(log)] == [None, *range(1, n)]


# -- lineage -------------------------------------------------------------------------------

LOCK_A, LOCK_B = "a" * 64, "b" * 64


def test_lineage_columns_are_recorded(registry: Registry, tmp_path: Path) -> None:
    parent = register(registry, make_model(tmp_path, "a", "weights-a"), blessed=True, run_date="2026-03-01")

    child = register(
        registry, make_model(tmp_path, "b", "weights-b"), blessed=True, dvc_lock_sha256=LOCK_A,
        parent_version=parent.version,
    )

    assert (child.dvc_lock_sha256, child.parent_version) == (LOCK_A, parent.version)
    assert registry.get(child.version) == child
    assert (parent.dvc_lock_sha256, parent.parent_version) == (None, None)


def test_dvc_lock_digest_defaults_to_the_lineage_record(registry: Registry, tmp_path: Path) -> None:
    # What tasks/promote.py passes: the digest inside lineage, no keyword.
    version = register(registry, make_model(tmp_path, "a", "weights-a"), blessed=True,
                       lineage={"dvc_lock_sha256": LOCK_B, "manifests": {}})

    assert version.dvc_lock_sha256 == LOCK_B
    assert version.lineage["dvc_lock_sha256"] == LOCK_B


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"dvc_lock_sha256": "not-a-digest"}, "64 lowercase hex"),
        ({"dvc_lock_sha256": LOCK_A, "lineage": {"dvc_lock_sha256": LOCK_B}}, "contradicts"),
        ({"parent_version": 42}, "parent_version 42 is not in the registry"),
    ],
)
def test_bad_lineage_is_refused_and_nothing_is_written(
    registry: Registry, tmp_path: Path, overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises((NonRetryableError, UnknownVersionError), match=message):
        register(registry, make_model(tmp_path, "a", "weights-a"), blessed=True, **overrides)

    assert registry.list_versions() == [] and registry.audit_log() == []
    assert registry.champion() is None


# -- promote -------------------------------------------------------------------------------


def three_versions(reg: Registry, tmp_path: Path) -> tuple[ModelVersion, ModelVersion, ModelVersion]:
    """v1 blessed, v2 refused by the gate, v3 blessed and champion."""
    v1 = register(reg, make_model(tmp_path, "m1", "weights-1"), blessed=True, run_date="2026-03-01")
    v2 = register(reg, make_model(tmp_path, "m2", "weights-2"), blessed=False, run_date="2026-03-02")
    v3 = register(reg, make_model(tmp_path, "m3", "weights-3"), blessed=True, run_date="2026-03-03")
    return v1, v2, v3


def alias_moves(reg: Registry) -> list[AuditEntry]:
    """The audit entries that moved the champion, oldest first."""
    return [e for e in reversed(reg.audit_log()) if e.action in ALIAS_ACTIONS]


def test_promote_an_earlier_blessed_version(registry: Registry, tmp_path: Path) -> None:
    v1, _, _ = three_versions(registry, tmp_path)

    change = registry.promote(1, reason="v3 regressed on cold users", actor="alice")

    assert (change.previous, change.champion, change.moved) == (3, v1, True)
    assert registry.champion() == v1
    entry = registry.audit_log(limit=1)[0]
    assert entry.id == change.audit_id
    assert (entry.action, entry.version, entry.actor, entry.reason) == (
        ACTION_PROMOTE, 1, "alice", "v3 regressed on cold users"
    )
    assert entry.details["previous_champion"] == 3 and entry.details["manual"] is True


def test_promote_of_a_refused_version_needs_force(registry: Registry, registry_url: str, tmp_path: Path) -> None:
    three_versions(registry, tmp_path)
    entries = len(registry.audit_log())

    with pytest.raises(PromotionRefusedError, match="version 2 was refused by the gate.*force"):
        registry.promote(2, reason="I know better", actor="alice")

    assert registry.champion().version == 3
    assert len(registry.audit_log()) == entries
    assert count_rows(registry_url, aliases) == 1


def test_force_promote_of_a_refused_version_is_audited(registry: Registry, tmp_path: Path) -> None:
    three_versions(registry, tmp_path)

    change = registry.promote(2, reason="hotfix: v3 breaks the cold-start path", actor="bob", force=True)

    assert (change.previous, change.champion.version) == (3, 2)
    champion = registry.champion()
    assert champion.version == 2
    assert champion.status == STATUS_REJECTED  # the gate's verdict stays on record
    entry = registry.audit_log(limit=1)[0]
    assert (entry.action, entry.version, entry.actor) == (ACTION_FORCE_PROMOTE, 2, "bob")
    assert entry.reason == "hotfix: v3 breaks the cold-start path"
    assert entry.details["previous_champion"] == 3 and entry.details["forced"] is True
    assert entry.details["status"] == STATUS_REJECTED


def test_gate_blessing_a_force_promoted_champion_moves_nothing(registry: Registry, tmp_path: Path) -> None:
    three_versions(registry, tmp_path)
    registry.promote(2, reason="hotfix", actor="bob", force=True)

    # The night of v2 is rerun with relaxed thresholds and now passes the gate.
    blessed = register(registry, tmp_path / "models" / "m2", blessed=True, run_date="2026-03-02", reason="relaxed")

    assert (blessed.version, blessed.status) == (2, STATUS_BLESSED)
    entry = registry.audit_log(limit=1)[0]
    assert (entry.action, entry.version, entry.details["previous_champion"]) == (ACTION_BLESS, 2, 2)
    assert registry.rollback(reason="v2 after all not", actor="bob").champion.version == 3


@pytest.mark.parametrize("reason", ["", "   "])
def test_promote_and_rollback_need_a_reason(registry: Registry, tmp_path: Path, reason: str) -> None:
    three_versions(registry, tmp_path)

    with pytest.raises(RegistryError, match="reason must be a non-empty string"):
        registry.promote(1, reason=reason, actor="alice", force=True)
    with pytest.raises(RegistryError, match="reason must be a non-empty string"):
        registry.rollback(reason=reason, actor="alice")
    with pytest.raises(RegistryError, match="actor must be a non-empty string"):
        registry.rollback(reason="bad model", actor="")

    assert registry.champion().version == 3
    assert [e.action for e in registry.audit_log()] == [ACTION_PROMOTE, ACTION_REFUSE, ACTION_PROMOTE]


def test_promote_of_an_unknown_version_is_a_clear_error(registry: Registry, tmp_path: Path) -> None:
    three_versions(registry, tmp_path)
    with pytest.raises(UnknownVersionError, match="model version 42 is not in the registry"):
        registry.promote(42, reason="typo", actor="alice", force=True)
    assert registry.champion().version == 3


def test_promote_of_the_champion_changes_nothing(registry: Registry, tmp_path: Path) -> None:
    _, _, v3 = three_versions(registry, tmp_path)

    change = registry.promote(3, reason="make sure", actor="alice", force=True)

    assert (change.moved, change.previous, change.champion) == (False, 3, v3)
    assert len(registry.audit_log()) == 3


def test_promote_verifies_the_artifact_before_moving_the_alias(registry: Registry, tmp_path: Path) -> None:
    v1, _, _ = three_versions(registry, tmp_path)
    (tmp_path / "artifacts" / v1.artifact_sha256 / "config.json").write_text('{"rank": 64}')

    with pytest.raises(ArtifactIntegrityError, match="modified"):
        registry.promote(1, reason="go back", actor="alice", force=True)

    assert registry.champion().version == 3
    assert len(registry.audit_log()) == 3


# -- rollback ------------------------------------------------------------------------------


def test_rollback_returns_to_the_previous_champion(registry: Registry, tmp_path: Path) -> None:
    v1, _, _ = three_versions(registry, tmp_path)

    change = registry.rollback(reason="v3 doubles latency", actor="carol")

    assert (change.previous, change.champion, change.moved) == (3, v1, True)
    assert registry.champion() == v1
    entry = registry.audit_log(limit=1)[0]
    assert (entry.id, entry.action, entry.version, entry.actor, entry.reason) == (
        change.audit_id, ACTION_ROLLBACK, 1, "carol", "v3 doubles latency"
    )
    assert entry.details["previous_champion"] == 3 and entry.details["rolled_back_from"] == 3


def test_rollback_twice_goes_further_back_then_stops(registry: Registry, tmp_path: Path) -> None:
    for i in range(1, 4):
        register(registry, make_model(tmp_path, f"m{i}", f"weights-{i}"), blessed=True, run_date=f"2026-03-0{i}")

    assert registry.rollback(reason="v3 is bad", actor="carol").champion.version == 2
    assert registry.rollback(reason="v2 is bad too", actor="carol").champion.version == 1
    with pytest.raises(NothingToRollBackError, match="version 1 is the first champion on record"):
        registry.rollback(reason="and v1?", actor="carol")

    assert registry.champion().version == 1
    assert [(e.action, e.version, e.details["previous_champion"]) for e in alias_moves(registry)] == [
        (ACTION_PROMOTE, 1, None), (ACTION_PROMOTE, 2, 1), (ACTION_PROMOTE, 3, 2),
        (ACTION_ROLLBACK, 2, 3), (ACTION_ROLLBACK, 1, 2),
    ]


def test_rollback_after_a_force_promote_restores_the_champion_before_it(registry: Registry, tmp_path: Path) -> None:
    three_versions(registry, tmp_path)
    registry.promote(2, reason="try the refused one", actor="bob", force=True)

    assert registry.rollback(reason="it was refused for a reason", actor="bob").champion.version == 3
    # The force-promote is off the stack: the next rollback goes behind v3, not back to v2.
    assert registry.rollback(reason="v3 too", actor="bob").champion.version == 1


def test_rollback_to_an_earlier_champion_and_back(registry: Registry, tmp_path: Path) -> None:
    for i in range(1, 4):
        register(registry, make_model(tmp_path, f"m{i}", f"weights-{i}"), blessed=True, run_date=f"2026-03-0{i}")

    change = registry.rollback(reason="v2 and v3 share a bug", actor="dave", to_version=1)

    assert (change.previous, change.champion.version) == (3, 1)
    assert registry.audit_log(limit=1)[0].details["requested"] == 1
    # Undoing an explicit rollback returns to where it started.
    assert registry.rollback(reason="bug was elsewhere", actor="dave").champion.version == 3


def test_rollback_errors_change_nothing(registry: Registry, tmp_path: Path) -> None:
    with pytest.raises(NothingToRollBackError, match="no champion yet"):
        registry.rollback(reason="empty registry", actor="erin")
    register(registry, make_model(tmp_path, "m0", "weights-0"), blessed=False, run_date="2026-02-28")
    with pytest.raises(NothingToRollBackError, match="no champion yet"):
        registry.rollback(reason="only a refusal", actor="erin")
    three_versions(registry, tmp_path)  # v2 refused, v3 blessed, v4 champion (numbers shift by one)

    with pytest.raises(RegistryError, match="version 4 is already the champion"):
        registry.rollback(reason="noop", actor="erin", to_version=4)
    with pytest.raises(RegistryError, match="version 3 was never champion"):
        registry.rollback(reason="refused one", actor="erin", to_version=3)
    with pytest.raises(UnknownVersionError, match="model version 42 is not in the registry"):
        registry.rollback(reason="typo", actor="erin", to_version=42)

    assert registry.champion().version == 4
    assert ACTION_ROLLBACK not in {e.action for e in registry.audit_log()}


def test_rollback_verifies_the_target_artifact(registry: Registry, tmp_path: Path) -> None:
    v1, _, _ = three_versions(registry, tmp_path)
    shutil.rmtree(tmp_path / "artifacts" / v1.artifact_sha256)

    with pytest.raises(ArtifactIntegrityError, match="artifact of version 1 is missing"):
        registry.rollback(reason="v3 is bad", actor="carol")

    assert registry.champion().version == 3


# -- diff ----------------------------------------------------------------------------------


def test_diff_reports_params_metrics_lineage_and_status(registry: Registry, tmp_path: Path) -> None:
    v1 = register(
        registry, make_model(tmp_path, "a", "weights-a"), blessed=True, run_date="2026-03-01",
        params={"lora_rank": 8, "epochs": 8, "optim": {"lr": 0.001}},
        metrics={"candidate": {"ndcg@10": 0.14}}, lineage={"profiles": "p1", "dvc_lock_sha256": LOCK_A},
    )
    v2 = register(
        registry, make_model(tmp_path, "b", "weights-b"), blessed=False,
        params={"lora_rank": 16, "epochs": 8, "optim": {"lr": 0.001}, "dropout": 0.1},
        metrics={"candidate": {"ndcg@10": 0.12}}, lineage={"profiles": "p2", "dvc_lock_sha256": LOCK_B},
        parent_version=1,
    )

    diff = registry.diff(1, 2)

    assert (diff.v1, diff.v2, diff.identical) == (1, 2, False)
    assert diff.params == {"lora_rank": {"v1": 8, "v2": 16}, "dropout": {"v2": 0.1}}
    assert diff.metrics == {"candidate.ndcg@10": {"v1": 0.14, "v2": 0.12}}
    assert diff.status["status"] == {"v1": STATUS_BLESSED, "v2": STATUS_REJECTED}
    assert diff.status["champion"] == {"v1": True, "v2": False}
    assert diff.status["reason"] == {"v1": v1.reason, "v2": v2.reason}
    assert diff.lineage["dvc_lock_sha256"] == {"v1": LOCK_A, "v2": LOCK_B}
    assert diff.lineage["parent_version"] == {"v1": None, "v2": 1}
    assert diff.lineage["lineage.profiles"] == {"v1": "p1", "v2": "p2"}
    assert diff.lineage["artifact_sha256"] == {"v1": v1.artifact_sha256, "v2": v2.artifact_sha256}
    assert diff.lineage["run_date"] == {"v1": "2026-03-01", "v2": NIGHT}
    assert {"base_model", "git_commit", "lineage.dvc_lock_sha256"}.isdisjoint(diff.lineage)
    assert diff.to_dict()["params"]["lora_rank"] == {"v1": 8, "v2": 16}


def test_diff_of_a_version_with_itself_is_empty(registry: Registry, tmp_path: Path) -> None:
    register(registry, make_model(tmp_path, "a", "weights-a"), blessed=True)
    diff = registry.diff(1, 1)
    assert diff.identical
    assert (diff.status, diff.params, diff.metrics, diff.lineage) == ({}, {}, {}, {})
    with pytest.raises(UnknownVersionError, match="model version 7 is not in the registry"):
        registry.diff(1, 7)


# -- many processes ------------------------------------------------------------------------

N_PROCESSES = 20
N_SEEDED = 7  # blessed at the start: deep enough that no mix of rollbacks runs out


def _contender(job: tuple[str, Any], url: str, store: str, start: Any, results: Any) -> None:
    """One OS process: open the registry, wait for the others, do one champion move."""
    kind, arg = job
    with Registry(url, Path(store)) as reg:
        start.wait(timeout=300)
        if kind == "register":
            version = register(reg, Path(arg[0]), blessed=True, run_date=arg[1]).version
        elif kind == "force":
            version = reg.promote(arg, reason="forced under load", actor=f"force-{arg}", force=True).champion.version
        else:
            version = reg.rollback(reason="rolled back under load", actor=f"rollback-{arg}").champion.version
    results.put((kind, arg, version))


def test_twenty_processes_promote_force_and_roll_back(registry: Registry, registry_url: str, tmp_path: Path) -> None:
    for i in range(N_SEEDED):
        register(registry, make_model(tmp_path, f"seed{i}", f"seed-{i}"), blessed=True, run_date=f"2026-02-0{i + 1}")
    refused = [
        register(registry, make_model(tmp_path, f"refused{i}", f"refused-{i}"), blessed=False, run_date="2026-02-20")
        for i in range(N_SEEDED)
    ]
    new_models = [(str(make_model(tmp_path, f"new{i}", f"new-{i}")), f"2026-03-{10 + i}") for i in range(N_SEEDED)]
    jobs: list[tuple[str, Any]] = [
        *(("register", model) for model in new_models),
        *(("force", v.version) for v in refused),
        *(("rollback", i) for i in range(N_PROCESSES - 2 * N_SEEDED)),
    ]
    seeded_versions = 2 * N_SEEDED

    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Barrier(N_PROCESSES), ctx.Queue()
    processes = [
        ctx.Process(target=_contender, args=(job, registry_url, str(tmp_path / "artifacts"), start, results))
        for job in jobs
    ]
    for process in processes:
        process.start()
    outcomes = []
    try:
        for _ in jobs:
            outcomes.append(results.get(timeout=300))
    finally:
        for process in processes:
            process.join(timeout=60)
    assert [p.exitcode for p in processes] == [0] * N_PROCESSES

    assert len(outcomes) == N_PROCESSES
    registered = sorted(v for kind, _, v in outcomes if kind == "register")
    assert registered == list(range(seeded_versions + 1, seeded_versions + N_SEEDED + 1))
    assert sorted(v for kind, _, v in outcomes if kind == "force") == [v.version for v in refused]
    assert count_rows(registry_url, aliases) == 1
    moves = alias_moves(registry)
    # A register that finds a later night's champion (the nights race here) is held, not moved.
    holds = [e.version for e in registry.audit_log() if e.action == ACTION_HOLD]
    assert len(moves) == N_SEEDED + N_PROCESSES - len(holds)
    promoted_new = [m.version for m in moves if m.action == ACTION_PROMOTE and m.version > seeded_versions]
    assert sorted(promoted_new + holds) == registered  # each new version moved the alias or was held
    champion = registry.champion()
    assert champion is not None and champion.version == moves[-1].version
    # Serialised: every move started from the champion the move before it left.
    assert [m.details["previous_champion"] for m in moves[1:]] == [m.version for m in moves[:-1]]
    assert count_rows(registry_url, audit_log_table) == N_SEEDED * 2 + N_PROCESSES
