"""Model registry: versions, the champion alias and an audit log in SQL, artifacts on disk.

The database (SQLite in the embedded default, PostgreSQL in production) holds one row per
registered model version, one ``champion`` alias and an append-only audit log. Artifacts live
in a content-addressed store, ``<artifact_store>/<sha256>/``, so the same weights are stored
once and any tampering is detected when a version's artifact is resolved.

Registration stores the artifact first and then, in one database transaction, inserts the
version row, its audit row and (when blessed) moves the champion alias. A crash between the
two steps leaves at worst an unreferenced artifact directory, which the next run reuses.

Writers are serialised: PostgreSQL takes a transaction-level advisory lock, SQLite a
``BEGIN IMMEDIATE`` write lock. Inside that lock the next version number is ``max + 1``, so
concurrent registers (threads or processes) never collide and the alias always ends on the
last committed blessed version.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    Column,
    DateTime,
    Engine,
    ForeignKey,
    Integer,
    MetaData,
    Row,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection, make_url

from pipelines.io import NonRetryableError, sha256_dir

log = logging.getLogger(__name__)

STATUS_BLESSED = "blessed"  # passed the gate; became champion when registered
STATUS_REJECTED = "rejected"  # refused by the gate; kept for the record, never champion
STATUSES = (STATUS_BLESSED, STATUS_REJECTED)

ACTION_PROMOTE = "promote"
ACTION_REFUSE = "refuse"

CHAMPION = "champion"

# One fixed key for pg_advisory_xact_lock; advisory locks are scoped to the database.
_PG_LOCK_KEY = int.from_bytes(hashlib.sha256(b"pipelines.registry").digest()[:8], "big", signed=True)
_WRITE_OPTION = "registry_write"  # execution option that makes SQLite begin IMMEDIATE
_SQLITE_BUSY_TIMEOUT_S = 60.0

metadata = MetaData()

model_versions = Table(
    "model_versions",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("created_at", DateTime, nullable=False),  # naive UTC
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
    # A rerun of the same night with the same artifact must find its earlier row.
    UniqueConstraint("artifact_sha256", "run_date", name="uq_model_versions_artifact_run"),
    CheckConstraint(f"status IN ('{STATUS_BLESSED}', '{STATUS_REJECTED}')", name="ck_model_versions_status"),
)

aliases = Table(
    "aliases",
    metadata,
    Column("alias", String(64), primary_key=True),  # the key is what makes "one champion" hold
    Column("version", Integer, ForeignKey("model_versions.version"), nullable=False),
    Column("updated_at", DateTime, nullable=False),
)

audit_log_table = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime, nullable=False),
    Column("action", String(32), nullable=False),
    Column("version", Integer, ForeignKey("model_versions.version"), nullable=True),
    Column("actor", String(128), nullable=False),
    Column("reason", Text, nullable=False),
    Column("details_json", Text, nullable=False),
)


class UnknownVersionError(KeyError):
    """The registry has no such version."""

    def __str__(self) -> str:  # KeyError would show the message in quotes
        return str(self.args[0]) if self.args else "unknown version"


class ArtifactIntegrityError(NonRetryableError):
    """A stored artifact's content no longer matches the hash it was registered under."""


@dataclass(frozen=True)
class ModelVersion:
    version: int
    created_at: dt.datetime
    run_date: str
    status: str
    artifact_sha256: str
    artifact_uri: str
    base_model: str
    data_interval_start: str
    data_interval_end: str
    params: dict[str, Any]
    metrics: dict[str, Any]
    lineage: dict[str, Any]
    git_commit: str
    report_path: str
    reason: str

    @property
    def blessed(self) -> bool:
        return self.status == STATUS_BLESSED

    @property
    def data_interval(self) -> tuple[str, str]:
        return (self.data_interval_start, self.data_interval_end)


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: dt.datetime
    action: str
    version: int | None
    actor: str
    reason: str
    details: dict[str, Any]


class Registry:
    """A model registry on a SQLAlchemy URL with a content-addressed artifact store.

    Args:
        url: SQLAlchemy URL (``sqlite:///state/registry.db`` or ``postgresql+psycopg2://...``).
            Its password is never stored or logged.
        artifact_store: Directory that holds one ``<sha256>/`` directory per artifact.
    """

    def __init__(self, url: str, artifact_store: Path) -> None:
        parsed = make_url(url)
        self._safe_url = parsed.render_as_string(hide_password=True)
        self._dialect = parsed.get_backend_name()
        self.artifact_store = Path(artifact_store)
        self.artifact_store.mkdir(parents=True, exist_ok=True)
        self._engine = _create_engine(url)
        try:
            with self._write() as conn:  # the lock also serialises concurrent first opens
                metadata.create_all(conn)
        except BaseException:
            self._engine.dispose()
            raise
        log.info("registry opened at %s (artifacts in %s)", self._safe_url, self.artifact_store)

    def __repr__(self) -> str:
        return f"Registry({self._safe_url!r}, {str(self.artifact_store)!r})"

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._engine.dispose()

    # -- artifacts -----------------------------------------------------------------------

    def store_artifact(self, model_dir: Path) -> tuple[str, Path]:
        """Copies ``model_dir`` into the store under its content hash.

        The copy is made in a hidden staging directory, verified, and renamed into place, so
        ``<store>/<sha>/`` is either complete or absent. An existing copy is reused after its
        hash is checked.

        Returns:
            The sha256 of the directory (``pipelines.io.sha256_dir``) and the stored path.

        Raises:
            ArtifactIntegrityError: The existing stored copy does not match its hash, or
                ``model_dir`` changed while it was being copied.
        """
        model_dir = Path(model_dir)
        if not model_dir.is_dir() or not any(p.is_file() for p in model_dir.rglob("*")):
            raise NonRetryableError(f"model directory is missing or has no files: {model_dir}")
        sha = sha256_dir(model_dir)
        target = self.artifact_store / sha
        if not target.exists():
            _copy_into_place(model_dir, target, sha)
        _verify(target, sha)
        return sha, target

    def artifact_path(self, version: int) -> Path:
        """The stored artifact of ``version``, after checking its content still matches."""
        sha = self.get(version).artifact_sha256
        path = self.artifact_store / sha
        if not path.is_dir():
            raise ArtifactIntegrityError(f"artifact of version {version} is missing from the store: {path}")
        _verify(path, sha)
        return path

    # -- registration --------------------------------------------------------------------

    def register(
        self,
        *,
        model_dir: Path,
        run_date: str,
        blessed: bool,
        reason: str,
        base_model: str,
        data_interval: tuple[str, str],
        params: Mapping[str, Any],
        metrics: Mapping[str, Any],
        lineage: Mapping[str, Any],
        git_commit: str,
        report_path: str,
        actor: str = "pipeline",
    ) -> ModelVersion:
        """Records a candidate: a blessed one becomes champion, a refused one is kept on file.

        Idempotent per (artifact hash, run date): a rerun of the same night returns the
        existing version and writes nothing, except that a version first refused and now
        blessed is promoted (and audited).
        """
        _check_run_date(run_date)
        start, end = data_interval
        sha, stored = self.store_artifact(model_dir)  # before the transaction: see module doc
        with self._write() as conn:
            existing = _find(conn, sha, run_date)
            if existing is not None:
                version = existing.version
                if blessed and existing.status == STATUS_REJECTED:
                    _promote_existing(conn, version, reason=reason, actor=actor)
                else:
                    log.info("version %d already registered for %s; nothing to do", version, run_date)
            else:
                version = _next_version(conn)
                row = {
                    "version": version,
                    "created_at": _utcnow(),
                    "run_date": run_date,
                    "status": STATUS_BLESSED if blessed else STATUS_REJECTED,
                    "artifact_sha256": sha,
                    "artifact_uri": str(stored.resolve()),
                    "base_model": base_model,
                    "data_interval_start": str(start),
                    "data_interval_end": str(end),
                    "params_json": _dumps(params),
                    "metrics_json": _dumps(metrics),
                    "lineage_json": _dumps(lineage),
                    "git_commit": git_commit,
                    "report_path": str(report_path),
                    "reason": reason,
                }
                _insert_version(conn, row, actor=actor)
            return _to_version(_select_version(conn, version))

    # -- queries -------------------------------------------------------------------------

    def champion(self) -> ModelVersion | None:
        query = (
            select(model_versions)
            .join(aliases, aliases.c.version == model_versions.c.version)
            .where(aliases.c.alias == CHAMPION)
        )
        with self._engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else _to_version(row)

    def get(self, version: int) -> ModelVersion:
        with self._engine.connect() as conn:
            return _to_version(_select_version(conn, version))

    def list_versions(self) -> list[ModelVersion]:
        with self._engine.connect() as conn:
            rows = conn.execute(select(model_versions).order_by(model_versions.c.version)).all()
        return [_to_version(r) for r in rows]

    def audit_log(self, limit: int | None = None) -> list[AuditEntry]:
        """Audit entries, newest first; ``limit`` keeps only the most recent ones."""
        query = select(audit_log_table).order_by(audit_log_table.c.id.desc()).limit(limit)
        with self._engine.connect() as conn:
            rows = conn.execute(query).all()
        return [_to_audit(r) for r in rows]

    # -- internals -----------------------------------------------------------------------

    @contextlib.contextmanager
    def _write(self) -> Iterator[Connection]:
        """One write transaction that holds the registry's writer lock until it ends."""
        with self._engine.connect() as conn:
            conn.execution_options(**{_WRITE_OPTION: True})
            with conn.begin():
                if self._dialect == "postgresql":
                    conn.execute(select(func.pg_advisory_xact_lock(_PG_LOCK_KEY)))
                yield conn


def _create_engine(url: str) -> Engine:
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        return create_engine(parsed, pool_pre_ping=True)
    if backend != "sqlite":
        # Without a writer lock, concurrent registers could race on version numbers.
        raise NonRetryableError(f"registry supports sqlite and postgresql URLs, not {backend!r}")
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(parsed, connect_args={"timeout": _SQLITE_BUSY_TIMEOUT_S})

    # pysqlite's own implicit BEGIN is deferred and cannot take the write lock up front;
    # hand transaction control to SQLAlchemy (the documented recipe) and begin ourselves.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        dbapi_conn.execute("PRAGMA foreign_keys = ON")

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get(_WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def _find(conn: Connection, sha: str, run_date: str) -> Row[Any] | None:
    query = select(model_versions.c.version, model_versions.c.status).where(
        model_versions.c.artifact_sha256 == sha, model_versions.c.run_date == run_date
    )
    return conn.execute(query).first()


def _next_version(conn: Connection) -> int:
    """max + 1; only safe under the writer lock that ``Registry._write`` holds."""
    return int(conn.execute(select(func.coalesce(func.max(model_versions.c.version), 0) + 1)).scalar_one())


def _insert_version(conn: Connection, row: dict[str, Any], *, actor: str) -> None:
    blessed = row["status"] == STATUS_BLESSED
    previous = _champion_version(conn)
    conn.execute(insert(model_versions).values(**row))
    _audit(
        conn,
        action=ACTION_PROMOTE if blessed else ACTION_REFUSE,
        version=row["version"],
        actor=actor,
        reason=row["reason"],
        details={"run_date": row["run_date"], "artifact_sha256": row["artifact_sha256"], "previous_champion": previous},
    )
    if blessed:
        _move_alias(conn, CHAMPION, row["version"])
    log.info("registered version %d (%s): %s", row["version"], row["status"], row["reason"])


def _promote_existing(conn: Connection, version: int, *, reason: str, actor: str) -> None:
    previous = _champion_version(conn)
    conn.execute(
        update(model_versions)
        .where(model_versions.c.version == version)
        .values(status=STATUS_BLESSED, reason=reason)
    )
    _audit(
        conn,
        action=ACTION_PROMOTE,
        version=version,
        actor=actor,
        reason=reason,
        details={"previous_status": STATUS_REJECTED, "previous_champion": previous},
    )
    _move_alias(conn, CHAMPION, version)
    log.info("promoted previously refused version %d: %s", version, reason)


def _champion_version(conn: Connection) -> int | None:
    return conn.execute(select(aliases.c.version).where(aliases.c.alias == CHAMPION)).scalar_one_or_none()


def _move_alias(conn: Connection, alias: str, version: int) -> None:
    """Upsert; update-then-insert is race-free here because the writer lock is held."""
    values = {"version": version, "updated_at": _utcnow()}
    result = conn.execute(update(aliases).where(aliases.c.alias == alias).values(**values))
    if result.rowcount == 0:
        conn.execute(insert(aliases).values(alias=alias, **values))


def _audit(
    conn: Connection, *, action: str, version: int | None, actor: str, reason: str, details: Mapping[str, Any]
) -> None:
    conn.execute(
        insert(audit_log_table).values(
            at=_utcnow(), action=action, version=version, actor=actor, reason=reason, details_json=_dumps(details)
        )
    )


def _select_version(conn: Connection, version: int) -> Row[Any]:
    row = conn.execute(select(model_versions).where(model_versions.c.version == version)).first()
    if row is None:
        raise UnknownVersionError(f"model version {version} is not in the registry")
    return row


def _to_version(row: Row[Any]) -> ModelVersion:
    m = row._mapping
    return ModelVersion(
        version=m["version"],
        created_at=m["created_at"],
        run_date=m["run_date"],
        status=m["status"],
        artifact_sha256=m["artifact_sha256"],
        artifact_uri=m["artifact_uri"],
        base_model=m["base_model"],
        data_interval_start=m["data_interval_start"],
        data_interval_end=m["data_interval_end"],
        params=json.loads(m["params_json"]),
        metrics=json.loads(m["metrics_json"]),
        lineage=json.loads(m["lineage_json"]),
        git_commit=m["git_commit"],
        report_path=m["report_path"],
        reason=m["reason"],
    )


def _to_audit(row: Row[Any]) -> AuditEntry:
    m = row._mapping
    return AuditEntry(
        id=m["id"],
        at=m["at"],
        action=m["action"],
        version=m["version"],
        actor=m["actor"],
        reason=m["reason"],
        details=json.loads(m["details_json"]),
    )


def _copy_into_place(source: Path, target: Path, sha: str) -> None:
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{sha}.tmp-"))
    try:
        shutil.copytree(source, staging, dirs_exist_ok=True)
        if sha256_dir(staging) != sha:
            raise ArtifactIntegrityError(f"{source} changed while it was being copied into the store")
        _fsync_tree(staging)
        try:
            os.replace(staging, target)
        except OSError:
            if not target.is_dir():  # not "another writer stored it first"
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _fsync_tree(root: Path) -> None:
    """Flushes every file and directory so the rename never publishes unwritten data."""
    for path in [*sorted(root.rglob("*")), root]:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _verify(path: Path, sha: str) -> None:
    actual = sha256_dir(path)
    if actual != sha:
        raise ArtifactIntegrityError(f"stored artifact {path} was modified: its content hash is now {actual}")


def _check_run_date(run_date: str) -> None:
    try:
        ok = dt.date.fromisoformat(run_date).isoformat() == run_date
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise NonRetryableError(f"run_date must be 'YYYY-MM-DD', got {run_date!r}")


def _dumps(payload: Mapping[str, Any]) -> str:
    return json.dumps(dict(payload), sort_keys=True, default=str)


def _utcnow() -> dt.datetime:
    """Naive UTC, the project's timestamp convention (and what SQLite returns anyway)."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
