"""Warehouse → Parquet: the night's training window, read in chunks through SQLAlchemy."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa

from pipelines import schema

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


def redact_url(url: str) -> str:
    return sa.engine.make_url(url).render_as_string(hide_password=True)


def _window_queries(end: dt.datetime, window_days: int) -> dict[str, sa.Select]:
    """One query per table: everything known before the interval's end, within the window."""
    interactions = schema.interactions
    events = sa.select(interactions).where(interactions.c.ts < end)
    if window_days > 0:
        events = events.where(interactions.c.ts >= end - dt.timedelta(days=window_days))
    return {
        "interactions": events.order_by(interactions.c.event_id),
        "items": sa.select(schema.items).where(
            sa.or_(schema.items.c.created_at.is_(None), schema.items.c.created_at < end)
        ).order_by(schema.items.c.item_id),
        "users": sa.select(schema.users).where(
            sa.or_(schema.users.c.created_at.is_(None), schema.users.c.created_at < end)
        ).order_by(schema.users.c.user_id),
    }


def _to_arrow(frame: pd.DataFrame, arrow_schema: pa.Schema) -> pa.Table:
    columns = [name for name in arrow_schema.names]
    missing = set(columns) - set(frame.columns)
    if missing:
        raise ValueError(f"warehouse query returned no column(s) {sorted(missing)}")
    return pa.Table.from_pandas(frame[columns], schema=arrow_schema, preserve_index=False)


def copy_query_to_parquet(conn: sa.Connection, query: sa.Select, path: Path, arrow_schema: pa.Schema) -> int:
    """Streams a query into one Parquet file, chunk by chunk, so memory stays bounded."""
    rows = 0
    with pq.ParquetWriter(path, arrow_schema) as writer:
        result = conn.execution_options(stream_results=True, yield_per=CHUNK_ROWS).execute(query)
        for chunk in result.partitions():
            frame = pd.DataFrame(chunk, columns=list(result.keys()))
            writer.write_table(_to_arrow(frame, arrow_schema))
            rows += len(frame)
        if rows == 0:
            writer.write_table(arrow_schema.empty_table())
    return rows


def extract_window(url: str, out_dir: Path, logical_date: dt.date, interval_days: int,
                   window_days: int) -> dict[str, Any]:
    """Writes interactions, items and users Parquet files for the night into ``out_dir``.

    Returns the manifest fields (the caller writes the manifest last).
    """
    start, end = data_interval(logical_date, interval_days)
    engine = sa.create_engine(url)
    rows: dict[str, int] = {}
    try:
        with engine.connect() as conn:
            for table, query in _window_queries(end, window_days).items():
                rows[table] = copy_query_to_parquet(conn, query, out_dir / f"{table}.parquet", ARROW_SCHEMAS[table])
                log.info("extracted %s: %d rows", table, rows[table])
    finally:
        engine.dispose()
    return {
        "logical_date": logical_date.isoformat(),
        "data_interval": {"start": start.isoformat(), "end": end.isoformat()},
        "window_days": window_days,
        "warehouse": redact_url(url),
        "rows": rows,
    }
