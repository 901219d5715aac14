"""Model registry: versions, the champion alias and an audit log in SQL, artifacts on disk.

The database (SQLite in the embedded default, PostgreSQL in production) holds one row per
registered model version with its lineage, one ``champion`` alias and an append-only audit
log. Artifacts live in a content-addressed store, ``<artifact_store>/<sha256>/``, so the same
weights are stored once and any tampering is detected when a version's artifact is resolved.
The schema is migrated with Alembic when the registry opens (``pipelines.registry.migrations``).

Registration stores the artifact first and then, in one database transaction, inserts the
version row, its audit row and (when blessed) moves the champion alias. A crash between the
two steps leaves at worst an unreferenced artifact directory, which the next run reuses.

Writers are serialised: PostgreSQL takes a transaction-level advisory lock, SQLite a
``BEGIN IMMEDIATE`` write lock. Inside that lock the next version number is ``max + 1``, so
concurrent registers (threads or processes) never collide and the alias always ends on the
last committed alias move.

Every move of the champion alias (the gate's promotion, a manual or forced promotion, a
rollback) writes an audit entry in the same transaction. Each such entry names, in
``details["back_to_entry"]``, the earlier entry whose champion a rollback would restore, so the
champions form a stack that ``rollback`` pops with a few lookups on the audit log's primary
key (the newest move, then the entry it points to), however long the log.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

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
    text,
    update,
)
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

from pipelines.registry import migrations
from pipelines.core.failures import named_if_permanent
from pipelines.core.io import NonRetryableError, sha256_dir

log = logging.getLogger(__name__)

REGISTRY_SETTING = "paths.registry_url or RETRAIN_REGISTRY_URL"
ARTIFACT_STORE_SETTING = "paths.artifact_store or RETRAIN_ARTIFACT_STORE"

STATUS_BLESSED = "blessed"  # passed the gate; became champion when registered
STATUS_REJECTED = "rejected"  # refused by the gate; champion only through a forced promotion
STATUSES = (STATUS_BLESSED, STATUS_REJECTED)

ACTION_PROMOTE = "promote"  # a blessed version made champion (by the gate or by hand)
ACTION_REFUSE = "refuse"  # the gate refused a candidate; the champion stays
ACTION_FORCE_PROMOTE = "force_promote"  # a version the gate refused made champion by hand
ACTION_ROLLBACK = "rollback"
ACTION_BLESS = "bless"  # the gate blessed a refused version that was already champion (forced); no move
ACTION_HOLD = "hold"  # the gate blessed a version of a night older than the champion's; no move
ALIAS_ACTIONS = (ACTION_PROMOTE, ACTION_FORCE_PROMOTE, ACTION_ROLLBACK)  # the entries that move the champion

CHAMPION = "champion"

# One fixed key for pg_advisory_xact_lock; advisory locks are scoped to the database.
_PG_LOCK_KEY = int.from_bytes(hashlib.sha256(b"pipelines.registry.store").digest()[:8], "big", signed=True)
_WRITE_OPTION = "registry_write"  # execution option that makes SQLite begin IMMEDIATE
_SQLITE_BUSY_TIMEOUT_S = 60.0
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")

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
    Column("dvc_lock_sha256", String(64), nullable=True),  # revision 0002
    Column("parent_version", Integer, ForeignKey("model_versions.version"), nullable=True),  # revision 0002
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


class RegistryError(NonRetryableError):
    """A registry operation that cannot be done as asked (bad input, refused, nothing to do)."""


class PromotionRefusedError(RegistryError):
    """A manual promotion of a version the gate refused, asked without ``force``."""


class NothingToRollBackError(RegistryError):
    """There is no earlier champion to go back to."""


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
    dvc_lock_sha256: str | None = None
    parent_version: int | None = None  # the champion it was warm-started from or compared with

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


@dataclass(frozen=True)
class ChampionChange:
    """The outcome of ``promote`` or ``rollback``.

    Attributes:
        previous: The champion before (None where there was none).
        champion: The champion now.
        audit_id: The audit entry of the move; None when nothing changed (already champion).
    """

    previous: int | None
    champion: ModelVersion
    audit_id: int | None

    @property
    def moved(self) -> bool:
        return self.audit_id is not None


@dataclass(frozen=True)
class VersionDiff:
    """What differs between two versions; each section maps a key to ``{"v1": a, "v2": b}``.

    A key that only one version has carries only that side. Nested params and metrics are
    flattened to dotted keys (``candidate.ndcg@10``); lineage holds the lineage columns and
    the lineage record's entries (``lineage.<key>``); status holds status, reason and champion.
    """

    v1: int
    v2: int
    status: dict[str, dict[str, Any]]
    params: dict[str, dict[str, Any]]
    metrics: dict[str, dict[str, Any]]
    lineage: dict[str, dict[str, Any]]

    @property
    def identical(self) -> bool:
        return not (self.status or self.params or self.metrics or self.lineage)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Registry:
    """A model registry on a SQLAlchemy URL with a content-addressed artifact store.

    Args:
        url: SQLAlchemy URL (``sqlite:///state/registry.db`` or ``postgresql+psycopg2://...``).
            Its password is never stored or logged.
        artifact_store: Directory that holds one ``<sha256>/`` directory per artifact.
    """

    def __init__(self, url: str, artifact_store: Path) -> None:
        parsed = registry_url(url)
        self._safe_url = parsed.render_as_string(hide_password=True)
        self._dialect = parsed.get_backend_name()
        self.artifact_store = Path(artifact_store)
        self.artifact_store.mkdir(parents=True, exist_ok=True)
        self._engine = _create_engine(parsed)
        try:
            with named_if_permanent(f"registry {self._safe_url} ({REGISTRY_SETTING})", parsed.password):
                self._migrate()
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
            The sha256 of the directory (``pipelines.core.io.sha256_dir``) and the stored path.

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
            # A full or read-only disk names the store, not a staging file in it.
            with named_if_permanent(f"artifact store {self.artifact_store} ({ARTIFACT_STORE_SETTING})",
                                    errors=(OSError,)):
                try:
                    _copy_into_place(model_dir, target, sha)
                except shutil.Error as exc:  # copytree lists one (source, target, why) per file that failed
                    if exc.args and isinstance(exc.args[0], list) and exc.args[0]:
                        raise OSError(exc.args[0][0][2]) from exc
                    raise
        _verify(target, sha)
        return sha, target

    def artifact_path(self, version: int) -> Path:
        """The stored artifact of ``version``, after checking its content still matches."""
        found = self.get(version)
        self._verify_artifact(found)
        return self.artifact_store / found.artifact_sha256

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
        dvc_lock_sha256: str | None = None,
        parent_version: int | None = None,
    ) -> ModelVersion:
        """Records a candidate: a blessed one becomes champion, a refused one is kept on file.

        A blessed candidate of a night older than the champion's (a backfill, or a rerun of an
        old night) is kept on file as blessed and audited as ``hold``: the newer champion keeps
        serving, and only ``promote`` (by hand, with a reason) can serve the older one.

        Idempotent per (artifact hash, run date): a rerun of the same night returns the
        existing version and writes nothing, except that a version first refused and now
        blessed is promoted, or held (and audited).

        Args:
            dvc_lock_sha256: sha256 of the ``dvc.lock`` the night ran with; defaults to
                ``lineage["dvc_lock_sha256"]``, where the promote stage records it.
            parent_version: The champion the candidate was warm-started from or compared
                with; must be a registered version. None where there was none (or unknown).
        """
        _check_run_date(run_date)
        start, end = data_interval
        dvc_lock = _dvc_lock_digest(dvc_lock_sha256, lineage)
        sha, stored = self.store_artifact(model_dir)  # before the transaction: see module doc
        with self._write() as conn:
            if parent_version is not None:
                _select_version(conn, parent_version, role="parent_version")
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
                    "dvc_lock_sha256": dvc_lock,
                    "parent_version": parent_version,
                }
                _insert_version(conn, row, actor=actor)
            return _to_version(_select_version(conn, version))

    # -- champion moves ------------------------------------------------------------------

    def promote(self, version: int, *, reason: str, actor: str, force: bool = False) -> ChampionChange:
        """Makes ``version`` the champion by hand, after checking its artifact's hash.

        The gate promotes on its own (``register``); this is the operator's override. A
        version the gate refused needs ``force=True``. Promoting the current champion changes
        and audits nothing.

        Raises:
            RegistryError: ``reason`` or ``actor`` is empty.
            PromotionRefusedError: The gate refused ``version`` and ``force`` is False.
            UnknownVersionError: No such version.
            ArtifactIntegrityError: Its stored artifact is missing or modified.
        """
        reason, actor = _required_text(reason, "reason"), _required_text(actor, "actor")
        with self._write() as conn:
            target = _to_version(_select_version(conn, version))
            previous = _champion_version(conn)
            if previous == version:
                log.info("version %d is already the champion; nothing to do", version)
                return ChampionChange(previous=previous, champion=target, audit_id=None)
            if target.status == STATUS_REJECTED and not force:
                raise PromotionRefusedError(
                    f"version {version} was refused by the gate ({target.reason}); "
                    "promoting it by hand needs force=True and a reason"
                )
            self._verify_artifact(target)
            action = ACTION_FORCE_PROMOTE if target.status == STATUS_REJECTED else ACTION_PROMOTE
            details = {"manual": True, "forced": force, "status": target.status}
            audit_id = _move_champion(conn, version, action=action, actor=actor, reason=reason, details=details)
        log.info("%s: version %d is champion (was %s) by %s: %s", action, version, previous, actor, reason)
        return ChampionChange(previous=previous, champion=target, audit_id=audit_id)

    def rollback(self, *, reason: str, actor: str, to_version: int | None = None) -> ChampionChange:
        """Gives the champion alias back to the previous champion, or to ``to_version``.

        The previous champion is the one before the current one in the audit trail; a second
        rollback goes one further back (the champions form a stack), never forth again.
        ``to_version`` must have been champion before; any other version needs ``promote``.
        The newest move and the entry it points to are found on the primary key, so the cost
        does not grow with the log.

        Raises:
            RegistryError: ``reason`` or ``actor`` is empty, ``to_version`` is the champion or
                was never champion.
            NothingToRollBackError: No champion, or no champion before it.
            UnknownVersionError: ``to_version`` is not registered.
            ArtifactIntegrityError: The target's stored artifact is missing or modified.
        """
        reason, actor = _required_text(reason, "reason"), _required_text(actor, "actor")
        with self._write() as conn:
            current = _champion_version(conn)
            latest = _latest_alias_entry(conn)
            if current is None or latest is None:
                raise NothingToRollBackError("nothing to roll back: the registry has no champion yet")
            if to_version is None:
                target_id, back_to = _rollback_target(conn, latest, current)
            else:
                target_id, back_to = _explicit_target(conn, to_version, current), latest.id
            target = _to_version(_select_version(conn, target_id))
            self._verify_artifact(target)
            details = {"rolled_back_from": current, "requested": to_version}
            audit_id = _move_champion(
                conn, target.version, action=ACTION_ROLLBACK, actor=actor, reason=reason, details=details,
                back_to_entry=back_to,
            )
        log.info("rollback: version %d is champion again (was %d) by %s: %s", target.version, current, actor, reason)
        return ChampionChange(previous=current, champion=target, audit_id=audit_id)

    def record(
        self, action: str, *, reason: str, actor: str, details: Mapping[str, Any], version: int | None = None
    ) -> int:
        """Appends an audit entry for an event that moves no alias (e.g. ``accept_anomaly``).

        Returns:
            The audit entry's id.

        Raises:
            RegistryError: ``action``, ``reason`` or ``actor`` is empty, or ``action`` is one
                that moves the champion (those go through ``promote``/``rollback``).
            UnknownVersionError: ``version`` is given and not registered.
        """
        action = _required_text(action, "action")
        reason, actor = _required_text(reason, "reason"), _required_text(actor, "actor")
        if action in ALIAS_ACTIONS or action in (ACTION_REFUSE, ACTION_BLESS, ACTION_HOLD):
            raise RegistryError(f"action {action!r} is written by the registry itself, not by record()")
        with self._write() as conn:
            if version is not None:
                _select_version(conn, version)
            audit_id = _audit(conn, action=action, version=version, actor=actor, reason=reason, details=details)
        log.info("%s recorded by %s (audit entry %d): %s", action, actor, audit_id, reason)
        return audit_id

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

    def champion_as_of(self, run_date: str) -> ModelVersion | None:
        """The champion a night of ``run_date`` is judged against and starts from: the current
        champion when it is of an earlier night, else (a backfill, or a rerun of tonight after its
        promotion) the latest blessed version of an earlier night; None if there is none.
        Never a model trained on ``run_date`` or later, whose data hold that night's targets."""
        _check_run_date(run_date)
        champion = self.champion()
        if champion is not None and champion.run_date < run_date:
            return champion
        earlier = [v for v in self.list_versions() if v.blessed and v.run_date < run_date]
        return max(earlier, key=lambda v: (v.run_date, v.version)) if earlier else None

    def get(self, version: int) -> ModelVersion:
        with self._engine.connect() as conn:
            return _to_version(_select_version(conn, version))

    def list_versions(self) -> list[ModelVersion]:
        with self._engine.connect() as conn:
            rows = conn.execute(select(model_versions).order_by(model_versions.c.version)).all()
        return [_to_version(r) for r in rows]

    def audit_log(self, limit: int | None = None) -> list[AuditEntry]:
        """Audit entries, newest first; ``limit`` keeps only the most recent ones."""
        if limit is not None and limit < 1:
            raise RegistryError(f"audit log limit must be at least 1, got {limit}")
        query = select(audit_log_table).order_by(audit_log_table.c.id.desc()).limit(limit)
        with self._engine.connect() as conn:
            rows = conn.execute(query).all()
        return [_to_audit(r) for r in rows]

    def diff(self, v1: int, v2: int) -> VersionDiff:
        """What differs between two versions: status, params, metrics and lineage, as data."""
        with self._engine.connect() as conn:
            a, b = _to_version(_select_version(conn, v1)), _to_version(_select_version(conn, v2))
            champion = _champion_version(conn)
        status = {
            "status": (a.status, b.status),
            "reason": (a.reason, b.reason),
            "champion": (a.version == champion, b.version == champion),
        }
        return VersionDiff(
            v1=v1,
            v2=v2,
            status=_changes({k: v[0] for k, v in status.items()}, {k: v[1] for k, v in status.items()}),
            params=_changes(_flatten(a.params), _flatten(b.params)),
            metrics=_changes(_flatten(a.metrics), _flatten(b.metrics)),
            lineage=_changes(_lineage_of(a), _lineage_of(b)),
        )

    # -- internals -----------------------------------------------------------------------

    def _migrate(self) -> None:
        """Applies pending schema migrations; only takes the writer lock when some are due."""
        with self._engine.connect() as conn:
            if migrations.current_revision(conn) == migrations.HEAD_REVISION:
                return
        with self._write() as conn:  # the lock serialises concurrent first opens
            migrations.upgrade(conn)  # checks the revision again, under the lock

    def _verify_artifact(self, version: ModelVersion) -> None:
        path = self.artifact_store / version.artifact_sha256
        if not path.is_dir():
            raise ArtifactIntegrityError(f"artifact of version {version.version} is missing from the store: {path}")
        _verify(path, version.artifact_sha256)

    @contextlib.contextmanager
    def _write(self) -> Iterator[Connection]:
        """One write transaction that holds the registry's writer lock until it ends.

        Raises:
            NonRetryableError: the database refused the write for a reason no retry can fix (a
                read-only or full disk, a denied permission); the message names the registry.
        """
        with named_if_permanent(f"registry {self._safe_url} ({REGISTRY_SETTING})", self._engine.url.password,
                                errors=(DBAPIError,)), self._engine.connect() as conn:
            conn.execution_options(**{_WRITE_OPTION: True})
            with conn.begin():
                if self._dialect == "postgresql":
                    conn.execute(select(func.pg_advisory_xact_lock(_PG_LOCK_KEY)))
                yield conn


def create_database(url: str) -> bool:
    """Creates the registry's PostgreSQL database when it does not exist yet (connecting to the
    server's ``postgres`` database as the same user); True if it created one. A SQLite registry
    needs nothing: its file is created on first open.

    Raises:
        NonRetryableError: the URL is neither SQLite nor PostgreSQL.
    """
    parsed = registry_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return False
    if backend != "postgresql":
        raise NonRetryableError(f"registry supports sqlite and postgresql URLs, not {backend!r}")
    name = parsed.database
    if not name:
        raise NonRetryableError(f"the registry URL names no database: {parsed.render_as_string(hide_password=True)}")
    engine = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")  # CREATE DATABASE
    try:
        with engine.connect() as conn:
            if conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}).first():
                return False
            conn.execute(text(f'CREATE DATABASE "{name.replace(chr(34), chr(34) * 2)}"'))
    finally:
        engine.dispose()
    log.info("created the registry database %r", name)
    return True


def registry_url(url: str | URL) -> URL:
    """The parsed registry URL with an installed driver (a bare ``postgresql://`` included).

    Raises:
        NonRetryableError: the URL is malformed or its driver is not installed.
    """
    from pipelines.core.drivers import require_driver

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise NonRetryableError(f"the registry URL ({REGISTRY_SETTING}) is not a valid SQLAlchemy URL "
                                "(expected dialect+driver://...)") from None
    return require_driver(parsed, f"the registry URL ({REGISTRY_SETTING})")


def _create_engine(parsed: URL) -> Engine:
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
    version, reason = row["version"], row["reason"]
    conn.execute(insert(model_versions).values(**row))
    details = {"run_date": row["run_date"], "artifact_sha256": row["artifact_sha256"]}
    if row["status"] == STATUS_BLESSED:
        _promote_unless_champion_is_newer(conn, version, row["run_date"], reason=reason, actor=actor, details=details)
    else:
        details["previous_champion"] = _champion_version(conn)
        _audit(conn, action=ACTION_REFUSE, version=version, actor=actor, reason=reason, details=details)
    log.info("registered version %d (%s): %s", version, row["status"], reason)


def _promote_existing(conn: Connection, version: int, *, reason: str, actor: str) -> None:
    conn.execute(
        update(model_versions)
        .where(model_versions.c.version == version)
        .values(status=STATUS_BLESSED, reason=reason)
    )
    details: dict[str, Any] = {"previous_status": STATUS_REJECTED}
    champion = _champion_version(conn)
    if champion == version:  # force-promoted earlier: the alias stays, so no move goes on the stack
        details["previous_champion"] = champion
        _audit(conn, action=ACTION_BLESS, version=version, actor=actor, reason=reason, details=details)
        log.info("blessed version %d, already the champion: %s", version, reason)
        return
    run_date = _to_version(_select_version(conn, version)).run_date
    _promote_unless_champion_is_newer(conn, version, run_date, reason=reason, actor=actor, details=details)


def held_back_by(champion: ModelVersion | None, run_date: str) -> bool:
    """Whether ``champion`` keeps the alias from a blessed version of ``run_date``: it is of a later night."""
    return champion is not None and champion.run_date > run_date


def _promote_unless_champion_is_newer(conn: Connection, version: int, run_date: str, *, reason: str, actor: str,
                                      details: dict[str, Any]) -> None:
    """Moves the champion to blessed ``version`` unless the champion is of a later night (then audits a hold)."""
    champion = _champion_version(conn)
    newer = None if champion is None else _to_version(_select_version(conn, champion))
    if held_back_by(newer, run_date):
        details.update(champion=newer.version, champion_run_date=newer.run_date)
        _audit(conn, action=ACTION_HOLD, version=version, actor=actor, reason=reason, details=details)
        log.info("version %d (%s) blessed but held: champion %d is of a later night (%s)", version, run_date,
                 newer.version, newer.run_date)
        return
    _move_champion(conn, version, action=ACTION_PROMOTE, actor=actor, reason=reason, details=details)
    log.info("version %d (%s) is champion: %s", version, run_date, reason)


def _champion_version(conn: Connection) -> int | None:
    return conn.execute(select(aliases.c.version).where(aliases.c.alias == CHAMPION)).scalar_one_or_none()


def _move_champion(
    conn: Connection,
    version: int,
    *,
    action: str,
    actor: str,
    reason: str,
    details: Mapping[str, Any],
    back_to_entry: int | None | Literal["latest"] = "latest",
) -> int:
    """Audits and moves the champion alias; returns the audit entry's id. Needs the writer lock.

    Args:
        back_to_entry: The audit entry whose champion a rollback of this move restores;
            "latest" (a new move pushed on the stack) means the entry that made the current
            champion.
    """
    if back_to_entry == "latest":
        latest = _latest_alias_entry(conn)
        back_to_entry = None if latest is None else latest.id
    full = {**details, "previous_champion": _champion_version(conn), "back_to_entry": back_to_entry}
    audit_id = _audit(conn, action=action, version=version, actor=actor, reason=reason, details=full)
    _move_alias(conn, CHAMPION, version)
    return audit_id


def _latest_alias_entry(conn: Connection, before: int | None = None) -> AuditEntry | None:
    """The newest audit entry that moved the champion (older than entry ``before`` if given)."""
    query = select(audit_log_table).where(audit_log_table.c.action.in_(ALIAS_ACTIONS))
    if before is not None:
        query = query.where(audit_log_table.c.id < before)
    row = conn.execute(query.order_by(audit_log_table.c.id.desc()).limit(1)).first()
    return None if row is None else _to_audit(row)


def _back_to(conn: Connection, entry: AuditEntry) -> int | None:
    """The audit entry a rollback of ``entry`` returns to.

    Entries written before rollbacks existed carry no pointer; they were plain promotions,
    each on top of the one before it.
    """
    if "back_to_entry" in entry.details:
        return entry.details["back_to_entry"]
    earlier = _latest_alias_entry(conn, before=entry.id)
    return None if earlier is None else earlier.id


def _rollback_target(conn: Connection, latest: AuditEntry, current: int) -> tuple[int, int | None]:
    """The previous champion and the entry a rollback of the rollback would return to."""
    target_id = _back_to(conn, latest)
    if target_id is None:
        raise NothingToRollBackError(f"nothing to roll back to: version {current} is the first champion on record")
    row = conn.execute(select(audit_log_table).where(audit_log_table.c.id == target_id)).first()
    target = None if row is None else _to_audit(row)
    if target is None or target.version is None or target.version == current:
        raise RegistryError(
            f"audit entry {latest.id} points back to entry {target_id}, which names no earlier champion"
        )
    return target.version, _back_to(conn, target)


def _explicit_target(conn: Connection, version: int, current: int) -> int:
    """Checks that ``version`` can be rolled back to: registered, not champion, champion before."""
    _select_version(conn, version)
    if version == current:
        raise RegistryError(f"version {version} is already the champion; nothing to roll back")
    was_champion = conn.execute(
        select(audit_log_table.c.id)
        .where(audit_log_table.c.version == version, audit_log_table.c.action.in_(ALIAS_ACTIONS))
        .limit(1)
    ).first()
    if was_champion is None:
        raise RegistryError(
            f"version {version} was never champion, so there is nothing to roll back to; "
            "promote it (with force and a reason) instead"
        )
    return version


def _move_alias(conn: Connection, alias: str, version: int) -> None:
    """Upsert; update-then-insert is race-free here because the writer lock is held."""
    values = {"version": version, "updated_at": _utcnow()}
    result = conn.execute(update(aliases).where(aliases.c.alias == alias).values(**values))
    if result.rowcount == 0:
        conn.execute(insert(aliases).values(alias=alias, **values))


def _audit(
    conn: Connection, *, action: str, version: int | None, actor: str, reason: str, details: Mapping[str, Any]
) -> int:
    result = conn.execute(
        insert(audit_log_table).values(
            at=_utcnow(), action=action, version=version, actor=actor, reason=reason, details_json=_dumps(details)
        )
    )
    return int(result.inserted_primary_key[0])


def _select_version(conn: Connection, version: int, role: str = "model version") -> Row[Any]:
    row = conn.execute(select(model_versions).where(model_versions.c.version == version)).first()
    if row is None:
        raise UnknownVersionError(f"{role} {version} is not in the registry")
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
        dvc_lock_sha256=m["dvc_lock_sha256"],
        parent_version=m["parent_version"],
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


def _required_text(value: str, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise RegistryError(f"{name} must be a non-empty string, got {value!r}")
    return value.strip()


def _dvc_lock_digest(explicit: str | None, lineage: Mapping[str, Any]) -> str | None:
    """The ``dvc.lock`` digest from the keyword or, failing that, the lineage record."""
    recorded = lineage.get("dvc_lock_sha256")
    if explicit is not None and recorded is not None and explicit != recorded:
        raise NonRetryableError(f"dvc_lock_sha256 {explicit!r} contradicts lineage['dvc_lock_sha256'] {recorded!r}")
    digest = explicit if explicit is not None else recorded
    if digest is not None and not (isinstance(digest, str) and _SHA256_HEX.fullmatch(digest)):
        raise NonRetryableError(f"dvc_lock_sha256 must be 64 lowercase hex digits, got {digest!r}")
    return digest


def _flatten(payload: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as dotted keys; other values (lists included) are compared whole."""
    flat: dict[str, Any] = {}
    for key, value in payload.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _changes(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    changed: dict[str, dict[str, Any]] = {}
    for key in sorted(set(a) | set(b)):
        if key in a and key in b and a[key] == b[key]:
            continue
        changed[key] = {side: values[key] for side, values in (("v1", a), ("v2", b)) if key in values}
    return changed


def _lineage_of(version: ModelVersion) -> dict[str, Any]:
    """Where a version came from: its lineage columns and its lineage record's entries."""
    columns = {
        "run_date": version.run_date,
        "base_model": version.base_model,
        "artifact_sha256": version.artifact_sha256,
        "data_interval": list(version.data_interval),
        "dvc_lock_sha256": version.dvc_lock_sha256,
        "parent_version": version.parent_version,
        "git_commit": version.git_commit,
        "report_path": version.report_path,
    }
    record = {f"lineage.{k}": v for k, v in _flatten(version.lineage).items() if k not in columns}
    return {**columns, **record}


def _dumps(payload: Mapping[str, Any]) -> str:
    return json.dumps(dict(payload), sort_keys=True, default=str)


def _utcnow() -> dt.datetime:
    """Naive UTC, the project's timestamp convention (and what SQLite returns anyway)."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
