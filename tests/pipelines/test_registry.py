"""Unit tests of the model registry, on SQLite and on PostgreSQL."""

from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select

from pipelines import registry as registry_module
from pipelines.io import NonRetryableError, sha256_dir
from pipelines.registry import (
    ACTION_PROMOTE,
    ACTION_REFUSE,
    STATUS_BLESSED,
    STATUS_REJECTED,
    ArtifactIntegrityError,
    ModelVersion,
    Registry,
    UnknownVersionError,
    aliases,
    model_versions,
)

NIGHT = "2026-03-02"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def registry_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state' / 'registry.db'}"
    return request.getfixturevalue("postgres_url")


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
