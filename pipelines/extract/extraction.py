"""Warehouse → Parquet, incrementally: each night reads only what the snapshot lacks.

Events (interactions, and group events where the warehouse has explicit groups) are stored by
day and items and users as change logs (``pipelines/extract/partitions.py``); the night's training
window is assembled from them. Group memberships are small: read whole every night. Reads stream
in bounded chunks: PostgreSQL's binary COPY through ADBC (``pipelines/extract/pgarrow.py``), else a
server-side cursor. The warehouse's own table and column names come from ``extract.mapping``
(``pipelines/core/warehouse.py``, and ``pipelines/extract/mapping.py`` for the group tables).
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import sqlalchemy as sa

from pipelines.extract import partitions

from pipelines.extract import pgarrow
from pipelines.extract.mapping import ExtractMapping, parse_extract_mapping

from pipelines.core import schema

from pipelines.core import warehouse
from pipelines.core.io import NonRetryableError, sha256_file

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
    "group_members": pa.schema([
        ("group_id", pa.string()), ("user_id", pa.string()), ("joined_at", pa.timestamp("us")),
        ("left_at", pa.timestamp("us")),
    ]),
    "group_events": pa.schema([
        ("group_id", pa.string()), ("item_id", pa.string()), ("event_type", pa.string()), ("ts", pa.timestamp("us")),
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


def _selected(clause: sa.TableClause, columns: dict[str, str | None]) -> list[sa.ColumnElement]:
    """The mapped columns, labelled with their canonical names (absent ones are filled later)."""
    return [_source(clause, source).label(canonical) for canonical, source in columns.items() if source is not None]


def interactions_query(clause: sa.TableClause, mapping: warehouse.SourceMapping,
                       days: partitions.DayRange) -> sa.Select:
    return events_query(clause, mapping.tables["interactions"], days)


def events_query(clause: sa.TableClause, entry: warehouse.TableMapping, days: partitions.DayRange) -> sa.Select:
    """Events (interactions or group events) with ts in the day range, ordered by ts so days arrive
    one after another.

    Only by ts: an index on ts (or a table clustered by time) then needs no sort on the server;
    ``DayFiles`` orders each day by its full sort key itself. The bounds are bound parameters;
    identifiers are the reflected ones, quoted by SQLAlchemy.
    """
    columns = entry.columns
    ts = _source(clause, columns["ts"])
    low, high = days.bounds()
    query = sa.select(*_selected(clause, columns)).where(ts < high)
    if low is not None:
        query = query.where(ts >= low)
    return query.order_by(ts)


def dimension_query(clause: sa.TableClause, mapping: warehouse.SourceMapping, table: str,
                    changed_since: dt.datetime | None = None) -> sa.Select:
    """The items or users table (compared with the stored one to find what changed): whole, or
    with ``changed_since`` only the rows its ``updated_at`` column marks as changed since then."""
    entry = mapping.tables[table]
    query = sa.select(*_selected(clause, entry.columns)).order_by(_source(clause, entry.columns[DIMENSION_KEYS[table]]))
    if changed_since is not None:
        query = query.where(_source(clause, entry.updated_at) >= changed_since)
    return query


def future_rows_query(clause: sa.TableClause, mapping: warehouse.SourceMapping, now: dt.datetime) -> sa.Select:
    ts = _source(clause, mapping.tables["interactions"].columns["ts"])
    return sa.select(sa.func.count()).select_from(clause).where(ts > now)


ABSENT_DEFAULTS: dict[str, Any] = {"rating": None, "categories": "", "description": "", "attributes": "",
                                   "created_at": None, "joined_at": None, "left_at": None}
DIMENSION_KEYS = {"items": "item_id", "users": "user_id"}


def _renamed(column: pa.ChunkedArray, renames: dict[str, str]) -> pa.ChunkedArray:
    """Values found in ``renames`` replaced by their targets; others kept."""
    index = pc.index_in(column, value_set=pa.array(list(renames), pa.string()))
    return pc.if_else(pc.is_null(index), column, pc.take(pa.array(list(renames.values()), pa.string()), index))


def canonical_table(table: pa.Table, key: str, mapping: ExtractMapping) -> pa.Table:
    """The canonical schema: absent optional columns filled, keys as strings, event types renamed,
    ratings rescaled onto the canonical range.

    Raises:
        NonRetryableError: a value does not convert, naming the column.
    """
    target = ARROW_SCHEMAS[key]
    columns = []
    for field in target:
        if field.name not in table.column_names:
            default = ABSENT_DEFAULTS[field.name]
            columns.append(pa.nulls(len(table), field.type) if default is None
                           else pa.array([default] * len(table), field.type))
            continue
        try:
            column = pc.cast(table[field.name], field.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise NonRetryableError(f"{key}.{field.name} (warehouse column "
                                    f"{mapping.tables[key].columns[field.name]!r}): a value does not convert "
                                    f"to {field.type}: {exc}") from exc
        if key == "interactions" and field.name == "event_type" and mapping.event_types:
            column = _renamed(column, mapping.event_types)
        if key == "group_events" and field.name == "event_type" and mapping.group_event_types:
            column = _renamed(column, mapping.group_event_types)
        if key == "interactions" and field.name == "rating" and mapping.rating_scale != schema.RATING_RANGE:
            (low, high), (lo, hi) = mapping.rating_scale, schema.RATING_RANGE
            column = pc.add(lo, pc.multiply(pc.subtract(column, low), (hi - lo) / (high - low)))
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=target)


def _frame_to_arrow(frame: pd.DataFrame) -> pa.Table:
    """Generic path: driver values to Arrow; keys of any type become strings as the canonical schema wants."""
    for name in ("user_id", "item_id", "group_id"):
        if name in frame.columns and frame[name].dtype != object:
            frame[name] = frame[name].map(lambda value: None if pd.isna(value) else str(value))
    return pa.Table.from_pandas(frame, preserve_index=False)


@dataclasses.dataclass(frozen=True)
class Source:
    """The warehouse as one night's extract reads it: an open connection, the mapped tables
    (reflected, so every identifier is checked and quoted), and the Arrow-native connections
    when the database has them."""

    conn: sa.Connection
    clauses: dict[str, sa.TableClause]
    mapping: ExtractMapping
    arrow: pgarrow.Connections | None

    @property
    def read_path(self) -> str:
        return "chunked cursor" if self.arrow is None else "postgresql ADBC (binary COPY)"

    def stream(self, query: sa.Select, key: str) -> Iterator[pa.Table]:
        """The query's rows as canonical Arrow tables of bounded size, in the query's order.

        PostgreSQL takes the Arrow-native path (``pipelines/extract/pgarrow.py``: binary COPY decoded in
        C++) when the ADBC driver is installed. Every other database streams through a
        server-side cursor in chunks of ``CHUNK_ROWS``.
        """
        with _bad_values_are_final(key):
            if self.arrow is not None:
                for table in self.arrow.stream(pgarrow.literal_sql(self.conn, query)):
                    yield canonical_table(table, key, self.mapping)
                return
            result = self.conn.execution_options(stream_results=True, yield_per=CHUNK_ROWS).execute(query)
            names = list(result.keys())
            for chunk in result.partitions():
                yield canonical_table(_frame_to_arrow(pd.DataFrame(chunk, columns=names)), key, self.mapping)


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


class DayFiles:
    """Writes events arriving in ts order into one Parquet file per day, a day at a time.

    A day is buffered whole, sorted by its table's ``DAY_SORT_KEYS`` and written as one table with
    fixed row groups, so its file's bytes depend only on its rows, not on how the stream was chunked or
    how the server ordered ties: a day read alone on an incremental night and the same day read
    in a full extract give the same file. Writing happens on a second thread (Arrow releases the
    GIL), overlapping the next day's read; at most ``MAX_PENDING_DAYS`` wait in memory.
    """

    def __init__(self, directory: Path, table: str = "interactions") -> None:
        self.directory = directory
        self.table = table
        self.written: dict[dt.date, dict[str, Any]] = {}
        self._day: dt.date | None = None
        self._buffer: list[pa.Table] = []
        self._writer = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="day-files")
        self._pending: collections.deque[concurrent.futures.Future] = collections.deque()

    def __enter__(self) -> DayFiles:
        return self

    def __exit__(self, *exc: object) -> None:
        self._writer.shutdown(wait=True, cancel_futures=True)

    def add(self, table: pa.Table) -> None:
        days = pc.cast(table["ts"], pa.date32()).to_numpy(zero_copy_only=False).astype("int64")
        breaks = [0, *(np.flatnonzero(np.diff(days)) + 1).tolist(), len(days)]
        for lo, hi in zip(breaks[:-1], breaks[1:]):
            if lo < hi:
                self._append(EPOCH + dt.timedelta(days=int(days[lo])), table.slice(lo, hi - lo))

    def _append(self, day: dt.date, rows: pa.Table) -> None:
        if self._day is not None and day < self._day:
            raise RuntimeError(f"events arrived out of ts order ({day} after {self._day})")
        if day != self._day:
            self._flush()
            self._day = day
        self._buffer.append(rows)

    def _flush(self) -> None:
        if self._day is not None:
            self._submit(self._day, pa.concat_tables(self._buffer))
        self._day, self._buffer = None, []

    def _submit(self, day: dt.date, table: pa.Table) -> None:
        while len(self._pending) >= MAX_PENDING_DAYS:
            self._pending.popleft().result()
        self._pending.append(self._writer.submit(self._write, day, table))

    def _write(self, day: dt.date, table: pa.Table) -> None:
        table = table.sort_by([(key, "ascending") for key in DAY_SORT_KEYS[self.table]]).combine_chunks()
        path = self.directory / f"{day.isoformat()}.parquet"
        pq.write_table(table, path, row_group_size=ROW_GROUP_ROWS, **DAY_WRITE_OPTIONS[self.table])
        self.written[day] = {"rows": table.num_rows, "sha256": sha256_file(path)}

    def close(self, days: partitions.DayRange) -> dict[dt.date, dict[str, Any]]:
        """Flushes the last day, waits for every write (raising the first failure), and records each
        day of the range without events as read but empty: no file (a stray 1970 timestamp must
        not leave twenty thousand empty files)."""
        self._flush()
        while self._pending:
            self._pending.popleft().result()
        first = days.first or min(self.written, default=None)
        for day in partitions.days_between(first, days.end) if first else []:
            self.written.setdefault(day, {"rows": 0, "sha256": None})
        return dict(sorted(self.written.items()))


# Returned with the manifest fields, not written: the day files' sha256 for write_manifest(known=...).
KNOWN_HASHES = "known_file_sha256"
EPOCH = dt.date(1970, 1, 1)
ROW_GROUP_ROWS = 1 << 20
MAX_PENDING_DAYS = 2
MIN_SPLIT_DAYS = 14  # shorter reads are not worth a second connection
# Dictionary pages for the repetitive strings and min/max only where readers prune (time, ids):
# string statistics and dictionaries for unique values cost about 40% of the write time.
DAY_FILE_OPTIONS: dict[str, Any] = {"use_dictionary": ["user_id", "item_id", "event_type"],
                                    "write_statistics": ["ts", "event_id"]}
DAY_WRITE_OPTIONS: dict[str, dict[str, Any]] = {
    "interactions": DAY_FILE_OPTIONS,
    "group_events": {"use_dictionary": ["group_id", "item_id", "event_type"], "write_statistics": ["ts"]},
}
# A day's row order; group events have no event_id, so every column breaks ties (same rows, same file).
DAY_SORT_KEYS: dict[str, tuple[str, ...]] = {"interactions": ("ts", "event_id"),
                                             "group_events": ("ts", "group_id", "item_id", "event_type")}


def _read_days(source: Source, days: partitions.DayRange, staging: Path,
               table: str = "interactions") -> dict[dt.date, dict[str, Any]]:
    query = events_query(source.clauses[table], source.mapping.tables[table], days)
    with DayFiles(staging, table) as files:
        for chunk in source.stream(query, table):
            files.add(chunk)
        return files.close(days)


def _resolve_history(source: Source, reads: list[partitions.DayRange],
                     table: str = "interactions") -> tuple[list[partitions.DayRange], dt.date | None]:
    """Turns a read of all history into one from the oldest event's day, which becomes the origin.

    Returns the bounded reads and the origin (None when no read was unbounded).
    """
    origin = None
    bounded = []
    for days in reads:
        if days.first is None:
            ts = _source(source.clauses[table], source.mapping.tables[table].columns["ts"])
            oldest = source.conn.execute(sa.select(sa.func.min(ts)).where(ts < days.bounds()[1])).scalar_one()
            origin = days.end if oldest is None else min(_as_datetime(oldest).date(), days.end)
            days = partitions.DayRange(origin, days.end)
        bounded.append(days)
    return [days for days in bounded if days.first < days.end], origin


def _as_datetime(value: Any) -> dt.datetime:
    """SQLite hands an aggregate of a DateTime column back as text."""
    return value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))


def _read_ranges(source: Source, reads: list[partitions.DayRange], staging: Path,
                 workers: int, table: str = "interactions") -> dict[dt.date, dict[str, Any]]:
    """Reads every range into day files; long ranges in ``workers`` concurrent streams.

    Concurrent streams need their own server connections (the Arrow-native path only); the
    server then formats rows on several cores while this process decodes and writes.
    """
    workers = workers if source.arrow is not None else 1
    parts = [part for days in reads
             for part in partitions.split_range(days, workers if len(days) >= MIN_SPLIT_DAYS else 1)]
    if workers > 1 and len(parts) > 1:
        with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="read") as pool:
            results = list(pool.map(lambda days: _read_days(source, days, staging, table), parts))
    else:
        results = [_read_days(source, days, staging, table) for days in parts]
    written: dict[dt.date, dict[str, Any]] = {}
    for days, got in zip(parts, results):
        log.info("read %s %s..%s: %d rows over %d day(s)", "events" if table == "interactions" else table,
                 days.first, days.end, sum(entry["rows"] for entry in got.values()), len(got))
        written.update(got)
    return written


def _read_dimension(source: Source, table: str, store: partitions.PartitionStore, night: dt.date,
                    changed_since: dt.datetime, staged_file: Path) -> tuple[dict[str, Any], pa.Table]:
    """Reads the table and stages the night's change log: new, changed and deleted rows.

    With ``updated_at`` mapped and a stored state, only the rows changed since ``changed_since``
    are read (and a deleted row goes unnoticed); otherwise the whole table, which also finds
    deletions. Returns the counts and the table as of the night (the stored state, log applied).
    """
    key = DIMENSION_KEYS[table]
    before = partitions.dimension_as_of(store, table, night, key, inclusive=False, arrow_schema=ARROW_SCHEMAS[table])
    since = changed_since if source.mapping.tables[table].updated_at and store.change_logs(table, night, False) \
        else None
    query = dimension_query(source.clauses[table], source.mapping, table, since)
    chunks = list(source.stream(query, table))
    read = pa.concat_tables(chunks) if chunks else ARROW_SCHEMAS[table].empty_table()
    changes = partitions.dimension_changes(before, read, key, whole_table=since is None)
    pq.write_table(changes, staged_file)
    deleted = int(pc.sum(changes[partitions.DELETED]).as_py() or 0)
    counts = {"read": "whole table" if since is None else f"changed since {since.isoformat()}",
              "rows_read": read.num_rows, "changed": changes.num_rows - deleted, "deleted": deleted}
    return counts, partitions.apply_changes(before, changes, key)


def extract_window(url: str | sa.URL, out_dir: Path, logical_date: dt.date, *, snapshot_dir: Path,
                   interval_days: int, window_days: int, lookback_days: int, read_workers: int,
                   mapping: Any, connect_attempts: int, backoff_s: float, max_backoff_s: float,
                   sleep: Callable[[float], None] = time.sleep,
                   now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc)) -> dict[str, Any]:
    """Brings the snapshot up to date for the night and writes the night's view into ``out_dir``.

    Reads from the warehouse only what the snapshot lacks (``partitions.plan_reads``): the
    night's interval and its lookback, plus any missing day of the window. Nothing in the
    snapshot changes unless every read succeeds. The view is ``interactions/<day>.parquet`` for
    each day of the training window, and ``items.parquet`` and ``users.parquet`` as they stood
    at the interval's end. Where the mapping has the group tables, also ``group_events/<day>.parquet``
    (read by day like interactions, with their own coverage) and ``group_members.parquet``.

    The mapping is checked for plain identifiers before connecting, and against the live
    catalogue before any data query. Returns the manifest fields (the caller writes the manifest
    last); the URL in them has its password hidden.
    """
    start, end = data_interval(logical_date, interval_days)
    parsed = parse_extract_mapping(mapping)
    extracted_at = now().astimezone(dt.timezone.utc).replace(tzinfo=None, microsecond=0)
    if end > extracted_at:  # its events are not all in yet: extracting now would keep a partial night
        raise NonRetryableError(
            f"the night {logical_date} covers [{start:%Y-%m-%d %H:%M}, {end:%Y-%m-%d %H:%M}) UTC, which has not "
            f"ended (now {extracted_at:%Y-%m-%d %H:%M} UTC): a night runs once its interval is over; check "
            "--logical-date and this machine's clock")
    engine = sa.create_engine(url)
    try:
        with partitions.PartitionStore(snapshot_dir) as store, \
                warehouse.connect(engine, connect_attempts, backoff_s, max_backoff_s, sleep) as conn, \
                contextlib.ExitStack() as closing:
            arrow = closing.enter_context(pgarrow.Connections(engine.url)) if pgarrow.supported(conn) else None
            source = Source(conn, warehouse.reflect_tables(conn, parsed), parsed, arrow)
            reads = partitions.plan_reads(store.coverage(), start.date(), end.date(), window_days, lookback_days)
            with store.staging() as staging:
                reads, origin = _resolve_history(source, reads)
                written = _read_ranges(source, reads, staging, read_workers)
                groups = _read_groups(source, store, staging, start, end, window_days, lookback_days,
                                      read_workers) if parsed.has_groups else None
                # A rerun of an earlier night keeps its recorded dimensions: the warehouse only
                # knows their present state, which later nights' change logs already hold.
                changes: dict[str, dict[str, Any]] = {}
                states: dict[str, pa.Table] = {}
                for table in DIMENSION_KEYS:
                    if store.has_later_changes(table, logical_date):
                        changes[table] = {"recorded_by_later_night": True}
                    else:
                        changes[table], states[table] = _read_dimension(
                            source, table, store, logical_date, _changed_since(store, table, logical_date, start, lookback_days),
                            staging / f"{table}.parquet")
                future_rows = conn.execute(
                    future_rows_query(source.clauses["interactions"], parsed, extracted_at)).scalar_one()
                # Every read succeeded: only now does the snapshot change.
                coverage = store.commit_days(staging, written, origin)
                group_coverage = None if groups is None else \
                    store.commit_days(groups.staged, groups.written, groups.origin, "group_events")
                for table, state in states.items():
                    store.commit_changes(table, logical_date, staging / f"{table}.parquet", state)
            rows, day_hashes = _write_view(store, coverage, states, out_dir, logical_date, end, window_days)
            if groups is not None:
                group_rows, group_hashes = _write_group_view(store, group_coverage, groups.members, out_dir, end,
                                                             window_days)
                rows, day_hashes = {**rows, **group_rows}, {**day_hashes, **group_hashes}
    finally:
        engine.dispose()
    log.info("extracted %s", ", ".join(f"{table} {count}" for table, count in rows.items()))
    return {
        "logical_date": logical_date.isoformat(),
        "data_interval": {"start": start.isoformat(), "end": end.isoformat()},
        "window_days": window_days,
        "lookback_days": lookback_days,
        "warehouse": redact_url(engine.url),
        "read_path": source.read_path,
        "reads": [{"first_day": days.first.isoformat(), "end_day": days.end.isoformat()} for days in reads],
        "days_read": len(written),
        "rows_read": sum(entry["rows"] for entry in written.values()),
        "dimension_changes": changes,
        "extracted_at": extracted_at.isoformat(),
        "future_rows": int(future_rows),
        "rows": rows,
        **({} if groups is None else {"group_events": groups.manifest()}),
        KNOWN_HASHES: day_hashes,
    }


@dataclasses.dataclass(frozen=True)
class GroupRead:
    """What a night read of the group tables, staged until every read of the night has succeeded."""

    reads: list[partitions.DayRange]
    origin: dt.date | None
    written: dict[dt.date, dict[str, Any]]
    members: pa.Table
    staged: Path

    def manifest(self) -> dict[str, Any]:
        reads = [{"first_day": days.first.isoformat(), "end_day": days.end.isoformat()} for days in self.reads]
        return {"reads": reads, "days_read": len(self.written),
                "rows_read": sum(entry["rows"] for entry in self.written.values())}


def _read_groups(source: Source, store: partitions.PartitionStore, staging: Path, start: dt.datetime,
                 end: dt.datetime, window_days: int, lookback_days: int, workers: int) -> GroupRead:
    """Group events as interactions are read (their own coverage, the same plan); memberships whole,
    as they are few."""
    staged = staging / "group_events"
    staged.mkdir()
    reads = partitions.plan_reads(store.coverage("group_events"), start.date(), end.date(), window_days,
                                  lookback_days)
    reads, origin = _resolve_history(source, reads, "group_events")
    written = _read_ranges(source, reads, staged, workers, "group_events")
    return GroupRead(reads, origin, written, _read_members(source, end), staged)


def _read_members(source: Source, end: dt.datetime) -> pa.Table:
    """The memberships known at the interval's end (joined_at null or earlier), in a fixed order."""
    query = sa.select(*_selected(source.clauses["group_members"], source.mapping.tables["group_members"].columns))
    chunks = list(source.stream(query, "group_members"))
    read = pa.concat_tables(chunks) if chunks else ARROW_SCHEMAS["group_members"].empty_table()
    known = partitions.filter_created_before(read, end, column="joined_at")
    return known.sort_by([(name, "ascending") for name in schema.GROUP_MEMBER_COLUMNS]).combine_chunks()


def _changed_since(store: partitions.PartitionStore, table: str, night: dt.date, start: dt.datetime,
                   lookback_days: int) -> dt.datetime:
    """Where tonight's read of changed dimension rows starts: the earlier of tonight's interval start
    and the end of the last recorded night's interval (its read ran after that), less the lookback."""
    recorded = store.change_logs(table, night, inclusive=False)
    last = dt.datetime.combine(dt.date.fromisoformat(recorded[-1].stem), dt.time()) if recorded else start
    return min(start, last) - dt.timedelta(days=lookback_days)


def _write_view(store: partitions.PartitionStore, coverage: partitions.Coverage, states: dict[str, pa.Table],
                out_dir: Path, night: dt.date, end: dt.datetime,
                window_days: int) -> tuple[dict[str, int], dict[str, str]]:
    """The night's training window from the snapshot: linked day files, dimensions as of the night
    (``states`` where the night just computed them, else replayed from the change logs).

    Returns the row counts and the day files' sha256 (known from when they were written).
    """
    events, hashes = _link_days(store, coverage, "interactions", out_dir, end, window_days)
    rows = {"interactions": events}
    for table, key in DIMENSION_KEYS.items():
        view = states.get(table)
        if view is None:
            view = partitions.dimension_as_of(store, table, night, key, inclusive=True,
                                              arrow_schema=ARROW_SCHEMAS[table])
        view = partitions.filter_created_before(view, end)
        pq.write_table(view, out_dir / f"{table}.parquet")
        rows[table] = view.num_rows
    return rows, hashes


def _link_days(store: partitions.PartitionStore, coverage: partitions.Coverage, table: str, out_dir: Path,
               end: dt.datetime, window_days: int) -> tuple[int, dict[str, str]]:
    """Links the window's stored day files of an events table into ``out_dir/<table>``.

    Returns the events linked and the files' sha256 (known from when they were written).
    """
    days_dir = out_dir / table
    days_dir.mkdir(parents=True, exist_ok=True)
    events = 0
    for day in partitions.window_days_held(coverage, end.date(), window_days):
        entry = coverage.days[day.isoformat()]
        if entry["sha256"] is not None:  # an empty day has no file
            partitions.link_or_copy(store.day_path(day, table), days_dir / f"{day.isoformat()}.parquet")
            events += int(entry["rows"])
    hashes = {f"{table}/{path.name}": coverage.days[path.stem]["sha256"] for path in days_dir.iterdir()}
    if not hashes:  # a window without one event still reads as a table (with no rows)
        pq.write_table(ARROW_SCHEMAS[table].empty_table(),
                       days_dir / f"{(end.date() - dt.timedelta(days=1)).isoformat()}.parquet")
    return events, hashes


def _write_group_view(store: partitions.PartitionStore, coverage: partitions.Coverage, members: pa.Table,
                      out_dir: Path, end: dt.datetime, window_days: int) -> tuple[dict[str, int], dict[str, str]]:
    """The window's group events (day files, as interactions) and the memberships, beside the other tables."""
    events, hashes = _link_days(store, coverage, "group_events", out_dir, end, window_days)
    pq.write_table(members, out_dir / "group_members.parquet")
    return {"group_members": members.num_rows, "group_events": events}, hashes
