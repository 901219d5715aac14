"""Schema migrations of the model registry (Alembic), on SQLite and on PostgreSQL."""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import shutil
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import (
    CheckConstraint,
    Column,
    DateTime,
    Engine,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    inspect,
    text,
)

from pipelines.registry import migrations
from pipelines.core.io import NonRetryableError, sha256_dir
from pipelines.registry.store import NothingToRollBackError, Registry, metadata

# The registry's tables exactly as the code before migrations created them (metadata.create_all).
LEGACY = MetaData()
Table(
    "model_versions",
    LEGACY,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("created_at", DateTime, nullable=False),
    Column("run_date", String(10), nullable=False, index=True),
    Column("status", String(16), nullable=False),
    Column("artifact_sha256", String(64), nullable=False),
    Column("artifact_uri", Text, nullable=False),
    Column("base_model", Text, nullable=False),
    Column("data_interval_start", String(40), nullable=False),
    Column("data_interval_end", String(40), nullable=False),
    Column("params_json", Text, nullable=False),
    Column("metrics_json", Text, nullable=False),
    Column("lineage_json", Text, nullable=False),
    Column("git_commit", String(64), nullable=False),
    Column("report_path", Text, nullable=False),
    Column("reason", Text, nullable=False),
    UniqueConstraint("artifact_sha256", "run_date", name="uq_model_versions_artifact_run"),
    CheckConstraint("status IN ('blessed', 'rejected')", name="ck_model_versions_status"),
)
Table(
    "aliases",
    LEGACY,
    Column("alias", String(64), primary_key=True),
    Column("version", Integer, ForeignKey("model_versions.version"), nullable=False),
    Column("updated_at", DateTime, nullable=False),
)
Table(
    "audit_log",
    LEGACY,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime, nullable=False),
    Column("action", String(32), nullable=False),
    Column("version", Integer, ForeignKey("model_versions.version"), nullable=True),
    Column("actor", String(128), nullable=False),
    Column("reason", Text, nullable=False),
    Column("details_json", Text, nullable=False),
)

LOCK = "c" * 64
AT = dt.datetime(2026, 3, 2, 4, 0, 0)


@pytest.fixture
def db_url(database_url: str) -> str:
    return database_url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = create_engine(db_url)
    yield engine
    engine.dispose()


def open_registry(url: str, tmp_path: Path) -> Registry:
    return Registry(url, tmp_path / "artifacts")


def tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names())


def revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return migrations.current_revision(conn)


def schema(engine: Engine) -> dict[str, Any]:
    """The registry tables as the database reports them, comparable across creation paths."""
    insp = inspect(engine)
    out: dict[str, Any] = {}
    for name in migrations.REGISTRY_TABLES:
        out[name] = {
            "columns": [(c["name"], str(c["type"]), c["nullable"]) for c in insp.get_columns(name)],
            "pk": insp.get_pk_constraint(name)["constrained_columns"],
            "fks": sorted(
                (tuple(fk["constrained_columns"]), fk["referred_table"], tuple(fk["referred_columns"]))
                for fk in insp.get_foreign_keys(name)
            ),
            "indexes": sorted((i["name"], tuple(i["column_names"]), i["unique"]) for i in insp.get_indexes(name)),
            "uniques": sorted((u["name"], tuple(u["column_names"])) for u in insp.get_unique_constraints(name)),
            "checks": sorted(c["name"] for c in insp.get_check_constraints(name)),
        }
    return out


def seed_legacy(engine: Engine, shas: dict[int, str] | None = None) -> None:
    """A registry as the pre-migration code left it: two nights promoted, one refused.

    ``shas`` gives versions the hash of a real stored artifact; others get a placeholder.
    """
    shas = shas or {}
    LEGACY.create_all(engine)
    versions, alias, audit = (LEGACY.tables[n] for n in ("model_versions", "aliases", "audit_log"))

    def version_row(version: int, status: str, lineage: dict[str, Any]) -> dict[str, Any]:
        return {
            "version": version, "created_at": AT, "run_date": f"2026-03-0{version}", "status": status,
            "artifact_sha256": shas.get(version, f"{version}" * 64), "artifact_uri": f"/store/{version}",
            "base_model": "minilm-l6",
            "data_interval_start": "2026-03-01T00:00:00", "data_interval_end": "2026-03-02T00:00:00",
            "params_json": json.dumps({"lora_rank": 8}), "metrics_json": json.dumps({"ndcg@10": 0.1 * version}),
            "lineage_json": json.dumps(lineage), "git_commit": "0123abcd", "report_path": "reports/x.html",
            "reason": f"reason {version}",
        }

    def audit_row(action: str, version: int, previous: int | None) -> dict[str, Any]:
        return {"at": AT, "action": action, "version": version, "actor": "pipeline", "reason": f"reason {version}",
                "details_json": json.dumps({"previous_champion": previous})}

    with engine.begin() as conn:
        conn.execute(versions.insert(), [
            version_row(1, "blessed", {"dvc_lock_sha256": LOCK}),
            version_row(2, "rejected", {"dvc_lock_sha256": None}),
            version_row(3, "blessed", {"manifests": {}}),
        ])
        conn.execute(audit.insert(), [audit_row("promote", 1, None), audit_row("refuse", 2, 1),
                                      audit_row("promote", 3, 1)])
        conn.execute(alias.insert().values(alias="champion", version=3, updated_at=AT))


def test_empty_database_is_created_at_head(db_url: str, engine: Engine, tmp_path: Path) -> None:
    with open_registry(db_url, tmp_path) as reg:
        assert reg.list_versions() == [] and reg.champion() is None

    assert revision(engine) == migrations.HEAD_REVISION
    assert set(migrations.REGISTRY_TABLES) | {migrations.VERSION_TABLE} <= tables(engine)
    assert "alembic_version" not in tables(engine)  # Airflow's, in a shared database


def test_head_revision_constant_matches_the_shipped_scripts() -> None:
    scripts = migrations.scripts()
    chain = [s.revision for s in scripts.walk_revisions()]  # newest first, one line of descent

    assert scripts.get_heads() == [migrations.HEAD_REVISION]
    assert chain[0] == migrations.HEAD_REVISION and chain[-1] == migrations.BASELINE_REVISION
    assert scripts.get_revision(migrations.BASELINE_REVISION).down_revision is None


def test_revision_0001_is_the_schema_of_the_pre_migration_code(db_url: str, engine: Engine, tmp_path: Path) -> None:
    LEGACY.create_all(engine)
    legacy = schema(engine)
    LEGACY.drop_all(engine)

    with engine.begin() as conn:
        command.upgrade(migrations.alembic_config(conn), migrations.BASELINE_REVISION)

    assert schema(engine) == legacy


def test_head_schema_is_the_registry_metadata(db_url: str, engine: Engine, tmp_path: Path) -> None:
    metadata.create_all(engine)
    expected = schema(engine)
    metadata.drop_all(engine)

    open_registry(db_url, tmp_path).close()

    assert schema(engine) == expected


def test_pre_migration_database_is_stamped_upgraded_and_keeps_its_rows(
    db_url: str, engine: Engine, tmp_path: Path
) -> None:
    seed_legacy(engine)

    with open_registry(db_url, tmp_path) as reg:
        versions = reg.list_versions()
        assert [(v.version, v.status, v.reason) for v in versions] == [
            (1, "blessed", "reason 1"), (2, "rejected", "reason 2"), (3, "blessed", "reason 3")
        ]
        assert versions[0].metrics == {"ndcg@10": pytest.approx(0.1)} and versions[0].created_at == AT
        # The dvc.lock digest moves into its column where the lineage record held one; no parent was recorded.
        assert [v.dvc_lock_sha256 for v in versions] == [LOCK, None, None]
        assert [v.parent_version for v in versions] == [None, None, None]
        assert reg.champion().version == 3
        assert [(e.action, e.version, e.details) for e in reg.audit_log()] == [
            ("promote", 3, {"previous_champion": 1}), ("refuse", 2, {"previous_champion": 1}),
            ("promote", 1, {"previous_champion": None}),
        ]

    assert revision(engine) == migrations.HEAD_REVISION


def test_rollback_follows_the_audit_trail_written_before_migrations(
    db_url: str, engine: Engine, tmp_path: Path
) -> None:
    shas = {}
    for version in (1, 3):  # rollback verifies the target's artifact: v1 and v3 get a stored copy
        model_dir = tmp_path / f"m{version}"
        model_dir.mkdir()
        (model_dir / "weights").write_text(f"weights-{version}")
        shas[version] = sha256_dir(model_dir)
        shutil.copytree(model_dir, tmp_path / "artifacts" / shas[version])
    seed_legacy(engine, shas)

    with open_registry(db_url, tmp_path) as reg:
        assert reg.rollback(reason="v3 is bad", actor="ops").champion.version == 1
        with pytest.raises(NothingToRollBackError):
            reg.rollback(reason="and v1?", actor="ops")


def test_migrations_are_idempotent(db_url: str, engine: Engine, tmp_path: Path) -> None:
    seed_legacy(engine)
    open_registry(db_url, tmp_path).close()
    before = schema(engine)

    with open_registry(db_url, tmp_path) as reg:
        with reg._write() as conn:
            assert migrations.upgrade(conn) is False
        assert len(reg.list_versions()) == 3

    assert schema(engine) == before
    with engine.connect() as conn:
        assert conn.execute(text(f"SELECT version_num FROM {migrations.VERSION_TABLE}")).scalars().all() == [
            migrations.HEAD_REVISION
        ]


def test_airflow_alembic_version_table_is_left_alone(db_url: str, engine: Engine, tmp_path: Path) -> None:
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)"))
        conn.execute(text("INSERT INTO alembic_version VALUES ('29ce7909c52b')"))

    open_registry(db_url, tmp_path).close()

    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == ["29ce7909c52b"]
    assert revision(engine) == migrations.HEAD_REVISION


def test_failed_migration_leaves_the_database_as_it_was(db_url: str, engine: Engine, tmp_path: Path) -> None:
    seed_legacy(engine)
    with engine.begin() as conn:  # revision 0002 reads every lineage record: make one unreadable
        conn.execute(text("UPDATE model_versions SET lineage_json = '{broken' WHERE version = 2"))
    before = schema(engine)

    with pytest.raises(json.JSONDecodeError):
        open_registry(db_url, tmp_path)

    assert schema(engine) == before
    assert migrations.VERSION_TABLE not in tables(engine)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM model_versions")).scalar_one() == 3


def test_partial_schema_is_refused(db_url: str, engine: Engine, tmp_path: Path) -> None:
    LEGACY.tables["model_versions"].create(engine)

    with pytest.raises(NonRetryableError, match=r"has tables \['model_versions'\] but not \['aliases', 'audit_log'\]"):
        open_registry(db_url, tmp_path)

    assert tables(engine) == {"model_versions"}


def test_database_from_a_newer_release_is_refused(db_url: str, engine: Engine, tmp_path: Path) -> None:
    open_registry(db_url, tmp_path).close()
    with engine.begin() as conn:
        conn.execute(text(f"UPDATE {migrations.VERSION_TABLE} SET version_num = '0099'"))

    with pytest.raises(NonRetryableError, match="revision '0099', unknown to this code"):
        open_registry(db_url, tmp_path)


def test_downgrade_to_the_baseline_and_back_keeps_rows(db_url: str, engine: Engine, tmp_path: Path) -> None:
    seed_legacy(engine)
    legacy_schema = schema(engine)
    with open_registry(db_url, tmp_path) as reg:
        with reg._write() as conn:
            command.downgrade(migrations.alembic_config(conn), migrations.BASELINE_REVISION)

    assert revision(engine) == migrations.BASELINE_REVISION
    assert schema(engine) == legacy_schema

    with open_registry(db_url, tmp_path) as reg:
        assert [v.version for v in reg.list_versions()] == [1, 2, 3]
        assert reg.get(1).dvc_lock_sha256 == LOCK and reg.champion().version == 3
        assert len(reg.audit_log()) == 3


def test_concurrent_first_opens_migrate_once(db_url: str, engine: Engine, tmp_path: Path) -> None:
    n = 6
    start = threading.Barrier(n)

    def worker(_: int) -> None:
        start.wait()
        open_registry(db_url, tmp_path).close()

    with ThreadPoolExecutor(max_workers=n) as pool:
        list(pool.map(worker, range(n)))

    assert revision(engine) == migrations.HEAD_REVISION
    with engine.connect() as conn:
        assert conn.execute(text(f"SELECT count(*) FROM {migrations.VERSION_TABLE}")).scalar_one() == 1


def test_offline_sql_for_a_dba_to_review() -> None:
    config = migrations.alembic_config(url="postgresql+psycopg2://registry@db.example/registry")
    config.output_buffer = io.StringIO()

    command.upgrade(config, "head", sql=True)

    sql = config.output_buffer.getvalue()
    assert "CREATE TABLE registry_alembic_version" in sql
    assert "CREATE TABLE model_versions" in sql
    assert "ALTER TABLE model_versions ADD COLUMN parent_version INTEGER REFERENCES model_versions (version)" in sql
    assert not re.search(r"\balembic_version\b", sql)
