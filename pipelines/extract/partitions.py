"""The warehouse, kept between nights: events as day partitions, items and users as change logs.

Layout under ``paths.snapshot`` (persistent, like the registry; each night's view of it is the
DVC-versioned ``data/extract``)::

    interactions/<YYYY-MM-DD>.parquet  events whose ts falls on that UTC day, sorted by (ts, event_id)
    interactions/_coverage.json        the days read so far (a day without events has no file), and
                                       where complete history begins
    group_events/...                   the same for group events, when the warehouse has groups
    items/<logical date>.parquet       rows new or changed as seen that night, plus deletions
    items/_state.parquet               the table as of the newest night (a cache of the logs replayed)
    users/...

Each events table (``schema.EVENT_TABLES``) has its own days and coverage; the store's methods on
days take the table, interactions by default. A day is replaced whole, never appended to, so rerunning a night gives the same files. New
files are staged in a hidden directory and moved in only once every read of the night has
succeeded; the coverage file moves in last. One extract at a time holds the store's lock.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

COVERAGE_FILE = "_coverage.json"
DELETED = "_deleted"  # change-log column: the key left the warehouse that night
STAGING_PREFIX = ".staging-"
LOG_NAME = re.compile(r"\d{4}-\d{2}-\d{2}")  # a change log is named by its night
STATE_FILE = "_state.parquet"  # the table as of the newest change log (a cache; the logs are the truth)
STATE_NIGHT = "night"  # the state file's schema metadata key: the night it is the table as of


# --- which days a night reads -----------------------------------------------------------------


@dataclass(frozen=True)
class DayRange:
    """Days [first, end) of event time to read; ``first`` None reads all history before ``end``."""

    first: dt.date | None
    end: dt.date

    def __len__(self) -> int:
        if self.first is None:
            raise ValueError("an unbounded range has no length")
        return (self.end - self.first).days

    def bounds(self) -> tuple[dt.datetime | None, dt.datetime]:
        low = None if self.first is None else dt.datetime.combine(self.first, dt.time())
        return low, dt.datetime.combine(self.end, dt.time())


@dataclass(frozen=True)
class Coverage:
    """The days the store holds and ``origin``: the first day of complete history.

    ``days`` maps each day to its file's ``rows`` and ``sha256``. ``origin`` is set by a read of
    all history; None until one has run.
    """

    days: dict[str, dict[str, Any]]
    origin: dt.date | None

    def has(self, day: dt.date) -> bool:
        return day.isoformat() in self.days


def days_between(first: dt.date, end: dt.date) -> list[dt.date]:
    return [first + dt.timedelta(days=offset) for offset in range((end - first).days)]


def _runs(days: Iterable[dt.date]) -> list[DayRange]:
    """Consecutive days merged into ranges, so a gap is read with one query."""
    ranges: list[DayRange] = []
    for day in sorted(days):
        if ranges and ranges[-1].end == day:
            ranges[-1] = DayRange(ranges[-1].first, day + dt.timedelta(days=1))
        else:
            ranges.append(DayRange(day, day + dt.timedelta(days=1)))
    return ranges


def plan_reads(coverage: Coverage, start: dt.date, end: dt.date, window_days: int,
               lookback_days: int) -> list[DayRange]:
    """What the night must read from the warehouse.

    Always the night's interval plus ``lookback_days`` before it (late-arriving rows), then any
    day of the training window the store lacks; with ``window_days`` 0 (all history) and no
    complete history yet, everything before the re-read.
    """
    if lookback_days < 0:
        raise ValueError(f"extract.lookback_days must be >= 0, got {lookback_days}")
    window_first = end - dt.timedelta(days=window_days) if window_days > 0 else None
    reread_first = start - dt.timedelta(days=lookback_days)
    if window_first is not None:
        reread_first = max(reread_first, window_first)
    reads = [DayRange(reread_first, end)]
    if window_first is not None:
        reads += _runs(day for day in days_between(window_first, reread_first) if not coverage.has(day))
    elif coverage.origin is None:
        reads.append(DayRange(None, reread_first))
    else:
        reads += _runs(day for day in days_between(coverage.origin, reread_first) if not coverage.has(day))
    return [read for read in reads if read.first is None or read.first < read.end]


def split_range(days: DayRange, parts: int) -> list[DayRange]:
    """A bounded range cut into at most ``parts`` consecutive ranges of (nearly) equal day counts."""
    if days.first is None:
        raise ValueError("only a bounded range can be split")
    total = (days.end - days.first).days
    cuts = sorted({days.first + dt.timedelta(days=total * k // parts) for k in range(parts)} | {days.end})
    return [DayRange(lo, hi) for lo, hi in zip(cuts[:-1], cuts[1:])]


def window_days_held(coverage: Coverage, end: dt.date, window_days: int) -> list[dt.date]:
    """The stored days that make the training window ending at ``end``."""
    first = end - dt.timedelta(days=window_days) if window_days > 0 else coverage.origin
    days = sorted(dt.date.fromisoformat(day) for day in coverage.days)
    return [day for day in days if day < end and (first is None or day >= first)]


# --- the store ------------------------------------------------------------------------------


class PartitionStore:
    """The snapshot directory. Use as a context manager: it holds an exclusive lock while open."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.interactions = self.root / "interactions"
        self._lock: int | None = None

    def __enter__(self) -> PartitionStore:
        for directory in (self.interactions, self.root / "items", self.root / "users"):
            directory.mkdir(parents=True, exist_ok=True)
        self._lock = os.open(self.root / ".lock", os.O_CREAT | os.O_RDWR, 0o644)
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        self._remove_stale_staging()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            os.close(self._lock)
            self._lock = None

    def _remove_stale_staging(self) -> None:
        """A killed extract leaves its staging directory behind; under the lock nobody else owns one."""
        for stale in self.root.glob(f"{STAGING_PREFIX}*"):
            shutil.rmtree(stale, ignore_errors=True)

    # events by day

    def coverage(self, table: str = "interactions") -> Coverage:
        path = self.root / table / COVERAGE_FILE
        if not path.is_file():
            return Coverage({}, None)
        raw = json.loads(path.read_text())
        origin = raw.get("origin")
        return Coverage(dict(raw["days"]), None if origin is None else dt.date.fromisoformat(origin))

    def day_path(self, day: dt.date, table: str = "interactions") -> Path:
        return self.root / table / f"{day.isoformat()}.parquet"

    @contextlib.contextmanager
    def staging(self) -> Iterator[Path]:
        """A hidden directory inside the store, removed afterwards (same filesystem: moves are renames)."""
        directory = Path(tempfile.mkdtemp(dir=self.root, prefix=STAGING_PREFIX))
        try:
            yield directory
        finally:
            shutil.rmtree(directory, ignore_errors=True)

    def commit_days(self, staged: Path, written: dict[dt.date, dict[str, Any]], origin: dt.date | None,
                    table: str = "interactions") -> Coverage:
        """Moves the staged day files in (an empty day has none: its old file goes), then records
        them (and a new origin) in the coverage file.

        The days being replaced leave the coverage file first: a run killed while moving files
        leaves them unrecorded, so the next night reads them again rather than trusting a stale
        row count or digest.
        """
        (self.root / table).mkdir(exist_ok=True)
        before = self.coverage(table)
        replaced = {day.isoformat() for day in written}
        self._write_coverage(Coverage({day: entry for day, entry in before.days.items() if day not in replaced},
                                      before.origin), table)
        for day, entry in sorted(written.items()):
            if entry["sha256"] is None:
                self.day_path(day, table).unlink(missing_ok=True)
            else:
                os.replace(staged / f"{day.isoformat()}.parquet", self.day_path(day, table))
        days = {**before.days, **{day.isoformat(): entry for day, entry in written.items()}}
        after = Coverage(dict(sorted(days.items())), origin if origin is not None else before.origin)
        self._write_coverage(after, table)
        return after

    def _write_coverage(self, coverage: Coverage, table: str) -> None:
        _write_json_atomic(self.root / table / COVERAGE_FILE, {
            "origin": None if coverage.origin is None else coverage.origin.isoformat(), "days": coverage.days})

    def forget_days(self, days: Iterable[dt.date], table: str = "interactions") -> int:
        """Removes days from the store (coverage first, then files), so the next night reads them
        again. Returns how many it held."""
        before = self.coverage(table)
        dropped = {day.isoformat() for day in days} & set(before.days)
        if not dropped:
            return 0
        self._write_coverage(Coverage({day: entry for day, entry in before.days.items() if day not in dropped},
                                      before.origin), table)
        for day in dropped:
            self.day_path(dt.date.fromisoformat(day), table).unlink(missing_ok=True)
        return len(dropped)

    # items and users

    def commit_changes(self, table: str, night: dt.date, staged_file: Path, state: pa.Table) -> None:
        """Moves the night's change log in, then keeps the cached state right: ``state`` (the table as
        of that night) replaces it when the night is the newest and changed something, or when the
        cache was written by this night's earlier run (its log is replaced, so the cache may be too)."""
        changed = pq.read_metadata(staged_file).num_rows > 0
        os.replace(staged_file, self.changes_path(table, night))
        cached = self._state_night(table)
        if (changed or (cached is not None and cached >= night)) and not self.has_later_changes(table, night):
            staged_state = self.root / table / f".{STATE_FILE}.tmp"
            pq.write_table(state.replace_schema_metadata({STATE_NIGHT: night.isoformat()}), staged_state)
            os.replace(staged_state, self.root / table / STATE_FILE)

    def _state_night(self, table: str) -> dt.date | None:
        path = self.root / table / STATE_FILE
        if not path.is_file():
            return None
        written = (pq.read_schema(path).metadata or {}).get(STATE_NIGHT.encode())
        return None if written is None else dt.date.fromisoformat(written.decode())

    def cached_state(self, table: str, night: dt.date) -> pa.Table | None:
        """The cached state if it is the table as of ``night``'s change log, else None (replay).

        It is when written that night, or on an earlier night followed only by empty logs (nights
        that changed nothing leave the cache alone). A run killed between moving its log in and
        writing the cache leaves a non-empty log after the cache's night: the logs are replayed.
        """
        written = self._state_night(table)
        if written is None or written > night:
            return None
        since = [logged for logged in self._log_nights(table) if written < logged <= night]
        if any(pq.read_metadata(self.changes_path(table, logged)).num_rows for logged in since):
            return None
        return pq.read_table(self.root / table / STATE_FILE).replace_schema_metadata(None)

    def changes_path(self, table: str, night: dt.date) -> Path:
        return self.root / table / f"{night.isoformat()}.parquet"

    def _log_nights(self, table: str) -> list[dt.date]:
        return sorted(dt.date.fromisoformat(path.stem) for path in (self.root / table).glob("*.parquet")
                      if LOG_NAME.fullmatch(path.stem))

    def has_later_changes(self, table: str, night: dt.date) -> bool:
        return any(logged > night for logged in self._log_nights(table))

    def change_logs(self, table: str, up_to: dt.date, inclusive: bool) -> list[Path]:
        """The table's change files of the nights before ``up_to`` (and that night if ``inclusive``), oldest first."""
        return [self.changes_path(table, night) for night in self._log_nights(table)
                if night < up_to or (inclusive and night == up_to)]


def _write_json_atomic(path: Path, payload: object) -> None:
    staging = path.with_name(f".{path.name}.tmp")
    staging.write_text(json.dumps(payload, indent=1, sort_keys=True) + "\n")
    os.replace(staging, path)


# --- slowly changing dimensions ---------------------------------------------------------------


def dimension_as_of(store: PartitionStore, table: str, night: dt.date, key: str, inclusive: bool,
                    arrow_schema: pa.Schema) -> pa.Table:
    """The table as the change logs left it after the nights before ``night`` (or through it)."""
    paths = store.change_logs(table, night, inclusive)
    if not paths:
        return arrow_schema.empty_table()
    cached = store.cached_state(table, dt.date.fromisoformat(paths[-1].stem))
    if cached is not None:
        return cached
    history = pa.concat_tables([pq.read_table(path) for path in paths])
    history = history.append_column("_row", pa.array(range(history.num_rows), pa.int64()))
    latest = history.take(history.group_by(key, use_threads=False).aggregate([("_row", "max")])["_row_max"])
    return _sorted(latest.filter(pc.invert(latest[DELETED])).select(arrow_schema.names), key)


def apply_changes(before: pa.Table, changes: pa.Table, key: str) -> pa.Table:
    """``before`` with one night's change log applied: what ``dimension_as_of`` gives for that night."""
    kept = before.filter(pc.invert(pc.is_in(before[key], value_set=changes[key].combine_chunks())))
    added = changes.filter(pc.invert(changes[DELETED])).select(before.schema.names)
    return _sorted(pa.concat_tables([kept, added]), key)


def _sorted(table: pa.Table, key: str) -> pa.Table:
    return table.sort_by(key).combine_chunks()


def dimension_changes(before: pa.Table, current: pa.Table, key: str, whole_table: bool = True) -> pa.Table:
    """Rows of ``current`` that are new or differ from ``before``, then (when ``current`` is the
    whole table) ``before``'s rows now gone, each part sorted by key. The result has the canonical
    columns plus ``_deleted``.

    A hash join in Arrow pairs each current row with its stored one; two nulls count as equal.
    """
    others = [name for name in current.schema.names if name != key]
    read_keys = current[key].combine_chunks()
    # Only the stored rows that were read again can pair (a handful when only changed rows were read).
    stored = before if whole_table else before.filter(pc.is_in(before[key], value_set=read_keys))
    stored = stored.select([key, *others]).rename_columns([key, *(f"{name}{_STORED}" for name in others)])
    stored = stored.append_column(_PRESENT, pa.repeat(True, stored.num_rows))
    paired = current.join(stored, keys=key, join_type="left outer", use_threads=False)
    differs = pc.is_null(paired[_PRESENT])
    for name in others:
        new, old = paired[name], paired[f"{name}{_STORED}"]
        same = pc.or_kleene(pc.equal(new, old), pc.and_(pc.is_null(new), pc.is_null(old)))
        differs = pc.or_(differs, pc.invert(pc.fill_null(same, False)))
    changed = _sorted(paired.filter(differs).select(current.schema.names), key)
    gone = _sorted(before.filter(pc.invert(pc.is_in(before[key], value_set=read_keys))), key) \
        if whole_table else before.schema.empty_table()
    return pa.concat_tables([changed.append_column(DELETED, pa.repeat(False, changed.num_rows)),
                             gone.append_column(DELETED, pa.repeat(True, gone.num_rows))])


_STORED = "__stored"
_PRESENT = "__present"


# --- the night's view -------------------------------------------------------------------------


def link_or_copy(source: Path, target: Path) -> None:
    """Hard link (day files are never rewritten in place: a new day file is a new inode), else copy."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def filter_created_before(table: pa.Table, end: dt.datetime, column: str = "created_at") -> pa.Table:
    """Rows known before the interval's end: ``column`` (created_at, a membership's joined_at) null or earlier."""
    if column not in table.schema.names:
        return table
    created = table[column]
    return table.filter(pc.or_kleene(pc.is_null(created), pc.less(created, pa.scalar(end, created.type))))
