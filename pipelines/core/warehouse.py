"""Where the warehouse is, how to reach it, and how its tables map onto the canonical schema.

The connection comes from Airflow's connection ``warehouse`` (the ``AIRFLOW_CONN_WAREHOUSE``
environment variable, URI or JSON form, parsed here without importing Airflow), else from
``RETRAIN_WAREHOUSE_URL``, else from ``paths.warehouse_url``. Passwords only ever leave this
module inside ``sqlalchemy.URL`` objects, whose ``str()`` hides them.

Table and column names come from ``extract.mapping``. They are checked three times: against a
strict identifier pattern before anything touches the database, against the live database's
catalogue (SQLAlchemy reflection) before any data query runs, and finally quoted by SQLAlchemy
when the query is compiled. Values (the interval bounds) are always bound parameters.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import sqlalchemy as sa

from pipelines.core import schema
from pipelines.core.drivers import require_driver
from pipelines.core.failures import hide, permanent_reason
from pipelines.core.io import NonRetryableError

log = logging.getLogger(__name__)

AIRFLOW_CONN_ENV = "AIRFLOW_CONN_WAREHOUSE"
URL_ENV = "RETRAIN_WAREHOUSE_URL"

# Airflow connection types -> SQLAlchemy dialect+driver (Airflow already turns '-' into '_').
AIRFLOW_SCHEMES: dict[str, str] = {
    "postgres": "postgresql",  # the driver: the first installed (pipelines.core.drivers)
    "postgresql": "postgresql",
    "sqlite": "sqlite",
    "mysql": "mysql",
    "mssql": "mssql+pymssql",
    "oracle": "oracle+oracledb",
    "redshift": "redshift+psycopg2",
    "snowflake": "snowflake",
    "bigquery": "bigquery",
    "duckdb": "duckdb",
    "trino": "trino",
}
# Query keys whose values are hidden when a URL is shown.
SECRET_QUERY_KEY = re.compile(r"password|passwd|secret|token|private_key|credentials", re.IGNORECASE)

# A plain SQL identifier: no quotes, spaces, dots, semicolons or comment markers.
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")

# Canonical columns per table; the required ones must be mapped, the others may be null (absent).
CANONICAL_COLUMNS: dict[str, tuple[str, ...]] = {
    "interactions": schema.INTERACTION_COLUMNS,
    "items": schema.ITEM_COLUMNS,
    "users": schema.USER_COLUMNS,
}
OPTIONAL_COLUMNS: dict[str, frozenset[str]] = {
    "interactions": frozenset({"rating"}),
    "items": frozenset({"categories", "description", "created_at"}),
    "users": frozenset({"attributes", "created_at"}),
}
INTERACTION_EXTRAS = ("event_types", "rating_scale")
# items and users may name a column that every insert and update sets: nights then read only the
# rows it marks as changed (see extract's dimension reads), instead of the whole table.
DIMENSION_EXTRAS = ("updated_at",)


class WarehouseUnavailableError(RuntimeError):
    """The warehouse stayed unreachable through every connection attempt (retryable later)."""


# --------------------------------------------------------------------------- connection

def redact(url: sa.URL | str) -> str:
    """The URL as text with its password (and secret-looking query values) hidden."""
    url = sa.make_url(url)
    secret_keys = [key for key in url.query if SECRET_QUERY_KEY.search(key)]
    if secret_keys:
        url = url.update_query_dict({key: "***" for key in secret_keys})
    return url.render_as_string(hide_password=True)


def resolve_url(environ: Mapping[str, str], params_url: str | None) -> tuple[sa.URL, str]:
    """The warehouse URL and where it came from, in order: Airflow connection, env, params.

    Raises:
        NonRetryableError: no source is set, or the one that is set is malformed or names an
            unsupported scheme. The message never contains the password.
    """
    if environ.get(AIRFLOW_CONN_ENV, "").strip():
        return airflow_connection_url(environ[AIRFLOW_CONN_ENV]), AIRFLOW_CONN_ENV
    for value, source in ((environ.get(URL_ENV), URL_ENV), (params_url, "paths.warehouse_url")):
        if value and value.strip():
            return sqlalchemy_url(value.strip(), source), source
    raise NonRetryableError(f"no warehouse configured: set {AIRFLOW_CONN_ENV}, {URL_ENV} or paths.warehouse_url")


def sqlalchemy_url(text: str, source: str) -> sa.URL:
    """Parses a SQLAlchemy URL, refusing one whose dialect or driver is not installed (a bare
    dialect takes an installed driver: ``pipelines.core.drivers``)."""
    try:
        url = sa.make_url(text)
    except (sa.exc.ArgumentError, ValueError):
        raise NonRetryableError(f"{source} is not a valid SQLAlchemy URL (expected dialect+driver://...)") from None
    return require_driver(url, source)


def airflow_connection_url(value: str, source: str = AIRFLOW_CONN_ENV) -> sa.URL:
    """The SQLAlchemy URL of an Airflow connection given in its URI or JSON form (``source``, the
    variable it came from, names it in errors)."""
    value = value.strip()
    fields = _parse_connection_json(value, source) if value.startswith("{") else _parse_connection_uri(value, source)
    return _connection_to_url(fields, source)


def _parse_connection_json(value: str, source: str) -> dict[str, Any]:
    try:
        fields = json.loads(value)
    except json.JSONDecodeError as exc:
        raise NonRetryableError(
            f"{source} is not valid JSON (line {exc.lineno}, column {exc.colno})") from None
    if not isinstance(fields, dict):
        raise NonRetryableError(f"{source} JSON must be an object with conn_type, host, login, ...")
    extra = fields.get("extra") or {}
    if isinstance(extra, str):
        extra = _parse_extra(extra, source)
    return {**fields, "extra": extra}


def _parse_connection_uri(value: str, source: str) -> dict[str, Any]:
    """Airflow's URI form (``conn_type://login:password@host:port/schema?extra``), as Airflow reads it."""
    parts = urlsplit(value)
    if not parts.scheme or "://" not in value:
        raise NonRetryableError(f"{source} is not a connection URI (expected conn_type://...) nor JSON")
    try:
        port = parts.port
    except ValueError:
        raise NonRetryableError(f"{source} has a malformed port") from None
    netloc_host = parts.netloc.rsplit("@", 1)[-1]
    host = unquote(parts.hostname or "")
    if "/" in host or (parts.scheme == "sqlite" and netloc_host):
        host = unquote(netloc_host)  # a path-like host (sqlite), where hostname would lowercase it
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    extra = _parse_extra(query.pop("__extra__"), source) if "__extra__" in query else query
    return {
        "conn_type": parts.scheme, "host": host or None, "port": port,
        "login": unquote(parts.username) if parts.username else None,
        "password": unquote(parts.password) if parts.password else None,
        "schema": unquote(parts.path[1:]) if parts.path[1:] else None, "extra": extra,
    }


def _parse_extra(text: str, source: str) -> dict[str, Any]:
    try:
        extra = json.loads(text) if text else {}
    except json.JSONDecodeError:
        raise NonRetryableError(f"{source}: the connection's extra is not valid JSON") from None
    if not isinstance(extra, dict):
        raise NonRetryableError(f"{source}: the connection's extra must be a JSON object")
    return extra


def _connection_to_url(fields: Mapping[str, Any], source: str) -> sa.URL:
    conn_type = str(fields.get("conn_type") or "").replace("-", "_").lower()
    if "+" in conn_type:
        drivername = conn_type  # already SQLAlchemy's dialect+driver
    elif conn_type in AIRFLOW_SCHEMES:
        drivername = AIRFLOW_SCHEMES[conn_type]
    else:
        raise NonRetryableError(
            f"{source}: unsupported connection type {conn_type!r}; "
            f"supported: {', '.join(sorted(AIRFLOW_SCHEMES))} or a SQLAlchemy dialect+driver"
        )
    query = {}
    for key, value in (fields.get("extra") or {}).items():
        if not isinstance(value, (str, int, float, bool)):
            raise NonRetryableError(f"{source}: extra {key!r} must be a string or number")
        query[str(key)] = str(value).lower() if isinstance(value, bool) else str(value)
    port = fields.get("port")
    try:
        port = int(port) if port not in (None, "") else None
    except (TypeError, ValueError):
        raise NonRetryableError(f"{source}: port must be an integer") from None
    if drivername.split("+")[0] == "sqlite":
        # Airflow keeps a SQLite file's path in the host; SQLAlchemy wants it as the database.
        database = fields.get("host") or fields.get("schema")
        url = sa.URL.create(drivername, database=database, query=query)
    else:
        if not fields.get("host"):
            raise NonRetryableError(f"{source}: connection type {conn_type!r} needs a host")
        url = sa.URL.create(drivername, username=fields.get("login"), password=fields.get("password"),
                            host=fields.get("host"), port=port, database=fields.get("schema"), query=query)
    return require_driver(url, source)


def _reason(exc: BaseException, url: sa.URL) -> str:
    """The driver's first message line, with the password removed should a driver echo it."""
    orig = getattr(exc, "orig", None) or exc
    text = (str(orig).strip().splitlines() or [""])[0]
    if url.password:
        text = text.replace(str(url.password), "***")
    return f"{type(orig).__name__}: {text}"


def connect(engine: sa.Engine, attempts: int, backoff_s: float, max_backoff_s: float,
            sleep: Callable[[float], None] = time.sleep) -> sa.Connection:
    """Connects, retrying transient failures (OperationalError) with exponential backoff.

    Raises:
        NonRetryableError: a failure no retry can fix (``pipelines.core.failures``: authentication,
            a missing database or role, an unknown host), at the first attempt.
        WarehouseUnavailableError: every attempt failed; names the redacted URL.
    """
    if attempts < 1:
        raise NonRetryableError(f"extract.connect_attempts must be >= 1, got {attempts}")
    shown = redact(engine.url)
    for attempt in range(1, attempts + 1):
        try:
            return engine.connect()
        except sa.exc.OperationalError as exc:
            reason = _reason(exc, engine.url)
            advice = permanent_reason(exc)
            if advice is not None:  # a wrong password or a missing database: no attempt can succeed
                raise NonRetryableError(f"warehouse {shown}: {hide(advice, engine.url.password)}") from None
            if attempt == attempts:
                # `from None`: the chained driver error could carry connection details.
                raise WarehouseUnavailableError(
                    f"warehouse {shown} unreachable after {attempts} attempt(s): {reason}") from None
            delay = min(backoff_s * 2 ** (attempt - 1), max_backoff_s)
            log.warning("warehouse %s unreachable (attempt %d/%d: %s); retrying in %.1f s",
                        shown, attempt, attempts, reason, delay)
            sleep(delay)
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------- schema mapping

@dataclasses.dataclass(frozen=True)
class TableMapping:
    """One canonical table's source: its table (and schema) and canonical -> source columns."""

    key: str
    table: str
    schema: str | None
    columns: dict[str, str | None]  # None: absent in the warehouse (optional columns only)
    updated_at: str | None = None  # items/users: the column marking a row's last change


@dataclasses.dataclass(frozen=True)
class SourceMapping:
    """``extract.mapping``, validated: the three tables plus how interaction values translate."""

    tables: dict[str, TableMapping]
    event_types: dict[str, str]          # warehouse value -> canonical event type
    rating_scale: tuple[float, float]    # the warehouse's rating range


def identifier(value: Any, where: str) -> str:
    """``value`` when it is a plain SQL identifier, else a NonRetryableError naming ``where``."""
    if not isinstance(value, str) or not IDENTIFIER.fullmatch(value):
        raise NonRetryableError(
            f"{where}: {value!r} is not a plain identifier (letters, digits and '_', "
            "not starting with a digit, at most 128 characters)")
    return value


def mapping_entry(value: Any, where: str) -> dict:
    """``value`` as a mapping (None: empty), else a NonRetryableError naming ``where``."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise NonRetryableError(f"{where} must be a mapping, got {type(value).__name__}")
    return value


def parse_table_entry(key: str, entry: dict, canonical: Sequence[str], optional: Collection[str],
                      extras: Collection[str]) -> tuple[str, str | None, dict[str, str | None]]:
    """One table's entry of ``extract.mapping``: (table, schema, canonical column -> source column,
    None for an optional column mapped to null); ``extras`` are the further keys the entry may have."""
    where = f"extract.mapping.{key}"
    allowed = {"table", "schema", "columns"} | set(extras)
    if set(entry) - allowed:
        raise NonRetryableError(f"{where}: unknown key(s) {sorted(set(entry) - allowed)}; expected {sorted(allowed)}")
    table = identifier(entry.get("table", key), f"{where}.table")
    schema_name = None if entry.get("schema") is None else identifier(entry["schema"], f"{where}.schema")
    given = mapping_entry(entry.get("columns"), f"{where}.columns")
    unknown = set(given) - set(canonical)
    if unknown:
        raise NonRetryableError(f"{where}.columns: unknown canonical column(s) {sorted(unknown)}; "
                                f"expected {list(canonical)}")
    columns: dict[str, str | None] = {}
    for name in canonical:
        source = given.get(name, name)
        if source is None and name not in optional:
            raise NonRetryableError(f"{where}.columns.{name} is required and cannot be null")
        columns[name] = None if source is None else identifier(source, f"{where}.columns.{name}")
    return table, schema_name, columns


def parse_mapping(raw: Any) -> SourceMapping:
    """Validates ``extract.mapping`` without touching the database; absent entries are identity.

    Raises:
        NonRetryableError: naming the params key and the offending value.
    """
    raw = mapping_entry(raw, "extract.mapping")
    unknown = set(raw) - set(CANONICAL_COLUMNS)
    if unknown:
        raise NonRetryableError(f"extract.mapping: unknown table key(s) {sorted(unknown)}; "
                                f"expected {sorted(CANONICAL_COLUMNS)}")
    tables = {key: _parse_table(key, mapping_entry(raw.get(key), f"extract.mapping.{key}"))
              for key in CANONICAL_COLUMNS}
    interactions = mapping_entry(raw.get("interactions"), "extract.mapping.interactions")
    return SourceMapping(tables, _parse_event_types(interactions.get("event_types")),
                    _parse_rating_scale(interactions.get("rating_scale")))


def _parse_table(key: str, entry: dict) -> TableMapping:
    where = f"extract.mapping.{key}"
    table, schema_name, columns = parse_table_entry(
        key, entry, CANONICAL_COLUMNS[key], OPTIONAL_COLUMNS[key],
        INTERACTION_EXTRAS if key == "interactions" else DIMENSION_EXTRAS)
    updated_at = entry.get("updated_at")
    if updated_at is not None:
        updated_at = identifier(updated_at, f"{where}.updated_at")
    return TableMapping(key, table, schema_name, columns, updated_at)


def _parse_event_types(raw: Any) -> dict[str, str]:
    renames = mapping_entry(raw, "extract.mapping.interactions.event_types")
    for source, target in renames.items():
        if target not in schema.EVENT_TYPES:
            raise NonRetryableError(f"extract.mapping.interactions.event_types.{source}: {target!r} is not "
                                    f"a canonical event type {list(schema.EVENT_TYPES)}")
    return {str(source): target for source, target in renames.items()}


def _parse_rating_scale(raw: Any) -> tuple[float, float]:
    if raw is None:
        return schema.RATING_RANGE
    where = "extract.mapping.interactions.rating_scale"
    if (not isinstance(raw, (list, tuple)) or len(raw) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in raw) or raw[0] >= raw[1]):
        raise NonRetryableError(f"{where} must be [low, high] numbers with low < high, got {raw!r}")
    return float(raw[0]), float(raw[1])


def reflect_tables(conn: sa.Connection, mapping: SourceMapping) -> dict[str, sa.TableClause]:
    """Checks every mapped table and column against the live catalogue; no data query runs.

    Returns one ``TableClause`` per canonical table, its columns typed as reflected, so the
    queries built on them quote every identifier.

    Raises:
        NonRetryableError: a mapped table or column is missing, naming the params key.
    """
    inspector = sa.inspect(conn)
    clauses = {}
    for key, entry in mapping.tables.items():
        where = f"extract.mapping.{key}"
        qualified = f"{entry.schema}.{entry.table}" if entry.schema else entry.table
        if not inspector.has_table(entry.table, schema=entry.schema):
            known = sorted(inspector.get_table_names(schema=entry.schema)
                           + inspector.get_view_names(schema=entry.schema))
            raise NonRetryableError(f"{where}.table: table {qualified!r} not found in the warehouse "
                                    f"(tables: {', '.join(known) or 'none'})")
        reflected = {column["name"]: column["type"]
                     for column in inspector.get_columns(entry.table, schema=entry.schema)}
        named = {f"columns.{canonical}": source for canonical, source in entry.columns.items()}
        named["updated_at"] = entry.updated_at
        for param, source in named.items():
            if source is not None and source not in reflected:
                raise NonRetryableError(f"{where}.{param}: column {source!r} not found in table "
                                        f"{qualified!r} (columns: {', '.join(sorted(reflected))})")
        used = sorted({source for source in named.values() if source is not None})
        clauses[key] = sa.table(entry.table, *(sa.column(name, reflected[name]) for name in used),
                                schema=entry.schema)
    return clauses
