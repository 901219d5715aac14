"""Warehouse → Parquet: the night's training window, read in chunks through SQLAlchemy.

The warehouse's own table and column names come from ``extract.mapping`` (pipelines/warehouse.py).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa

from pipelines import schema, warehouse
from pipelines.io import NonRetryableError

log = logging.getLogger(__name__)

CHUNK_ROWS = 200_000

ARROW_SCHEMAS: dict[str, pa.Schema] = {
    "interactions": pa.schema([
        ("event_id", pa.int64()), ("user_id", pa.string()), ("item_id", pa.string()),
        ("event_type", pa.string()), ("rating", pa.float64()), ("ts", pa.timestamp("us")),
    ]),
    "items": pa.schema([
        ("item_id", pa.string()), ("title", pa.string()), ("categories", pa.string()),
        ("description", pa.string()), ("created_at", pa.timestamp("us")),
    ]),
    "users": pa.schema([
        ("user_id", pa.string()), ("attributes", pa.string()), ("created_at", pa.timestamp("us")),
    ]),
}


def data_interval(logical_date: dt.date, interval_days: int) -> tuple[dt.datetime, dt.datetime]:
    """The night's data interval: the ``interval_days`` days before the logical date, [start, end)."""
    if interval_days < 1:
        raise ValueError(f"extract.interval_days must be >= 1, got {interval_days}")
    end = dt.datetime.combine(logical_date, dt.time())
    return end - dt.timedelta(days=interval_days), end


def redact_url(url: str | sa.URL) -> str:
    return warehouse.redact(url)


def _source(clause: sa.TableClause, name: str | None) -> sa.ColumnElement | None:
    return None if name is None else clause.c[name]


def _window_queries(clauses: dict[str, sa.TableClause], mapping: warehouse.SourceMapping, end: dt.datetime,
                    window_days: int) -> dict[str, sa.Select]:
    """One query per table: everything known before the interval's end, within the window.

    Columns are the reflected ones, labelled with their canonical names; absent optional
    columns are filled in afterwards (``_fill_absent``). ``end`` is a bound parameter.
    """
    queries = {}
    for key, clause in clauses.items():
        columns = mapping.tables[key].columns
        selected = [_source(clause, source).label(canonical)
                    for canonical, source in columns.items() if source is not None]
        query = sa.select(*selected)
        if key == "interactions":
            ts = _source(clause, columns["ts"])
            query = query.where(ts < end)
            if window_days > 0:
                query = query.where(ts >= end - dt.timedelta(days=window_days))
            order = columns["event_id"]
        else:
            created = _source(clause, columns["created_at"])
            if created is not None:
                query = query.where(sa.or_(created.is_(None), created < end))
            order = columns["item_id" if key == "items" else "user_id"]
        queries[key] = query.order_by(_source(clause, order))
    return queries


ABSENT_DEFAULTS: dict[str, Any] = {"rating": None, "categories": "", "description": "", "attributes": "",
                                   "created_at": None}


def _fill_absent(frame: pd.DataFrame, arrow_schema: pa.Schema) -> pd.DataFrame:
    for name in arrow_schema.names:
        if name not in frame.columns and name in ABSENT_DEFAULTS:
            frame[name] = ABSENT_DEFAULTS[name]
    return frame


def _canonical_values(frame: pd.DataFrame, table: str, mapping: warehouse.SourceMapping) -> pd.DataFrame:
    """Keys as strings, renamed event types, ratings rescaled onto the canonical range."""
    for name in ("user_id", "item_id"):
        if name in frame.columns and frame[name].dtype != object:
            frame[name] = frame[name].map(lambda value: None if pd.isna(value) else str(value))
    if table != "interactions":
        return frame
    if mapping.event_types:
        frame["event_type"] = frame["event_type"].replace(mapping.event_types)
    if mapping.rating_scale != schema.RATING_RANGE and "rating" in frame.columns:
        (low, high), (lo, hi) = mapping.rating_scale, schema.RATING_RANGE
        frame["rating"] = lo + (pd.to_numeric(frame["rating"]) - low) * (hi - lo) / (high - low)
    return frame


def _to_arrow(frame: pd.DataFrame, arrow_schema: pa.Schema) -> pa.Table:
    columns = [name for name in arrow_schema.names]
    missing = set(columns) - set(frame.columns)
    if missing:
        raise ValueError(f"warehouse query returned no column(s) {sorted(missing)}")
    return pa.Table.from_pandas(frame[columns], schema=arrow_schema, preserve_index=False)


def copy_query_to_parquet(conn: sa.Connection, query: sa.Select, path: Path, arrow_schema: pa.Schema,
                          transform: Callable[[pd.DataFrame], pd.DataFrame] = lambda frame: frame) -> int:
    """Streams a query into one Parquet file, chunk by chunk, so memory stays bounded."""
    rows = 0
    with pq.ParquetWriter(path, arrow_schema) as writer, _bad_values_are_final(path.stem):
        result = conn.execution_options(stream_results=True, yield_per=CHUNK_ROWS).execute(query)
        for chunk in result.partitions():
            frame = transform(_fill_absent(pd.DataFrame(chunk, columns=list(result.keys())), arrow_schema))
            writer.write_table(_to_arrow(frame, arrow_schema))
            rows += len(frame)
        if rows == 0:
            writer.write_table(arrow_schema.empty_table())
    return rows


@contextlib.contextmanager
def _bad_values_are_final(table: str) -> Iterator[None]:
    """A value of the wrong type or undecodable text will read the same on a retry: not retryable."""
    try:
        yield
    except (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeDecodeError) as exc:
        raise NonRetryableError(f"{table}: a value does not fit the canonical schema: {exc}") from exc
    except sa.exc.OperationalError as exc:
        if "decode" not in str(exc.orig).lower():  # anything else may be a lost connection
            raise
        raise NonRetryableError(f"{table}: undecodable text in the warehouse: {exc.orig}") from exc


def extract_window(url: str | sa.URL, out_dir: Path, logical_date: dt.date, interval_days: int,
                   window_days: int, mapping: Any = None, connect_attempts: int = 1,
                   backoff_s: float = 1.0, max_backoff_s: float = 30.0,
                   sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """Writes interactions, items and users Parquet files for the night into ``out_dir``.

    The mapping is checked for plain identifiers before connecting, and against the live
    catalogue before any data query. Returns the manifest fields (the caller writes the
    manifest last); the URL in them has its password hidden.
    """
    start, end = data_interval(logical_date, interval_days)
    source = warehouse.parse_mapping(mapping)
    engine = sa.create_engine(url)
    rows: dict[str, int] = {}
    try:
        with warehouse.connect(engine, connect_attempts, backoff_s, max_backoff_s, sleep) as conn:
            clauses = warehouse.reflect_tables(conn, source)
            for table, query in _window_queries(clauses, source, end, window_days).items():
                rows[table] = copy_query_to_parquet(
                    conn, query, out_dir / f"{table}.parquet", ARROW_SCHEMAS[table],
                    transform=lambda frame, table=table: _canonical_values(frame, table, source))
                log.info("extracted %s from %s: %d rows", table, source.tables[table].table, rows[table])
    finally:
        engine.dispose()
    return {
        "logical_date": logical_date.isoformat(),
        "data_interval": {"start": start.isoformat(), "end": end.isoformat()},
        "window_days": window_days,
        "warehouse": redact_url(engine.url),
        "rows": rows,
    }
