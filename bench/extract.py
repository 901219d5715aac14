"""Extraction speed and memory: our extract against a naive ``pandas.read_sql`` on PostgreSQL.

    python bench/extract.py [--sizes 100000,1000000,10000000] [--days 100] [--repeats 3]
                            [--postgres-url URL] [--out bench/results]

For each size, seeds a temporary PostgreSQL database with that many synthetic interactions spread
evenly over ``--days`` days (so one day is about 1% of the rows; primary key on event_id, index on
ts, as a warehouse table clustered by time would have), plus users (rows / 50) and items, whose
``updated_at`` column is mapped (``extract.mapping.<table>.updated_at``). Then measures, side by
side and interleaved, ``--repeats`` times each:

- ``ours_full``: the extract stage (``tasks.extract``, params.yaml's defaults) for the last
  night with an empty snapshot: every event, the dimensions, the night's view and manifest;
- ``ours_incremental``: the same night with (a fresh copy of) the snapshot the previous night
  left: the new day plus the default lookback (2 days), the dimension rows changed since the
  previous night (none), the view and manifest;
- ``naive``: ``pandas.read_sql("SELECT * FROM interactions", engine)``.

Each run is a fresh Python process, so its peak RSS (``ru_maxrss``) is its own; the seconds are
the call's, after each side's imports (pandas, pyarrow, SQLAlchemy, the drivers, the stage's
modules). Prints a table of medians and writes ``<out>/extract.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(PROJECT_ROOT))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.csv as pacsv  # noqa: E402
import yaml  # noqa: E402

from bench.databases import temporary_postgres  # noqa: E402

POSTGRES_ADMIN_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
FIRST_DAY = dt.datetime(2026, 1, 1)
SEED_CHUNK = 1_000_000
EVENT_TYPES = np.array(["view", "like", "rating", "purchase"])
MODES = ("naive", "ours_full", "ours_incremental")

DDL = """
CREATE TABLE users (user_id varchar(64) PRIMARY KEY, attributes text NOT NULL, created_at timestamp,
                    updated_at timestamp NOT NULL);
CREATE TABLE items (item_id varchar(64) PRIMARY KEY, title text NOT NULL, categories text NOT NULL,
                    description text NOT NULL, created_at timestamp, updated_at timestamp NOT NULL);
CREATE TABLE interactions (event_id bigint NOT NULL, user_id varchar(64) NOT NULL, item_id varchar(64) NOT NULL,
                           event_type varchar(32) NOT NULL, rating double precision, ts timestamp NOT NULL);
"""
INDEXES = """
ALTER TABLE interactions ADD PRIMARY KEY (event_id);
CREATE INDEX interactions_ts ON interactions (ts);
CREATE INDEX users_updated_at ON users (updated_at);
CREATE INDEX items_updated_at ON items (updated_at);
"""
# The dimensions' change-tracking column, as a warehouse that keeps one maps it (README "Warehouse").
MAPPING = {"items": {"updated_at": "updated_at"}, "users": {"updated_at": "updated_at"}}


# --- seeding -----------------------------------------------------------------------------------


def _copy_in(cursor: Any, table: str, frame: pa.Table) -> None:
    buffer = io.BytesIO()
    pacsv.write_csv(frame, buffer, write_options=pacsv.WriteOptions(include_header=False))
    buffer.seek(0)
    cursor.copy_expert(f"COPY {table} FROM STDIN WITH (FORMAT csv)", buffer)


def _events(rng: np.random.Generator, first_id: int, count: int, total: int, days: int,
            n_users: int, n_items: int) -> pa.Table:
    """Events ``first_id`` .. ``first_id + count``, their times rising evenly across ``days`` days."""
    ids = np.arange(first_id, first_id + count, dtype=np.int64)
    seconds = (ids * (days * 86_400 / total)).astype(np.int64) * 1_000_000
    kinds = rng.integers(0, len(EVENT_TYPES), count)
    ratings = np.where(kinds == 2, rng.integers(1, 11, count) / 2.0, np.nan)
    items = np.minimum(rng.zipf(1.3, count), n_items) - 1
    return pa.table({
        "event_id": ids,
        "user_id": pa.array(np.char.add("u", rng.integers(0, n_users, count).astype(str))),
        "item_id": pa.array(np.char.add("i", items.astype(str))),
        "event_type": pa.array(EVENT_TYPES[kinds]),
        "rating": pa.array(ratings, from_pandas=True),
        "ts": pa.array(np.datetime64(FIRST_DAY, "us") + seconds.astype("timedelta64[us]")),
    })


def seed(url: str, rows: int, days: int) -> dict[str, int]:
    import sqlalchemy as sa

    rng = np.random.default_rng(rows)
    n_users, n_items = max(1_000, rows // 50), max(500, min(50_000, rows // 200))
    engine = sa.create_engine(url)
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute(DDL)
        _copy_in(cursor, "users", pa.table({"user_id": [f"u{k}" for k in range(n_users)],
                                            "attributes": [f"segment {k % 7}" for k in range(n_users)],
                                            "created_at": pa.nulls(n_users, pa.timestamp("us")),
                                            "updated_at": pa.array([FIRST_DAY] * n_users, pa.timestamp("us"))}))
        _copy_in(cursor, "items", pa.table({"item_id": [f"i{k}" for k in range(n_items)],
                                            "title": [f"Item {k}: a title" for k in range(n_items)],
                                            "categories": [f"c{k % 20}|c{k % 3}" for k in range(n_items)],
                                            "description": [f"about item {k}" for k in range(n_items)],
                                            "created_at": pa.nulls(n_items, pa.timestamp("us")),
                                            "updated_at": pa.array([FIRST_DAY] * n_items, pa.timestamp("us"))}))
        for first in range(0, rows, SEED_CHUNK):
            _copy_in(cursor, "interactions",
                     _events(rng, first, min(SEED_CHUNK, rows - first), rows, days, n_users, n_items))
            print(f"  seeded {min(first + SEED_CHUNK, rows):,} / {rows:,} events", flush=True)
        cursor.execute(INDEXES)
        raw.commit()
        raw.dbapi_connection.autocommit = True  # VACUUM cannot run in a transaction
        cursor.execute("VACUUM ANALYZE")  # hint bits and visibility map set once, before any timed read
    finally:
        raw.close()
        engine.dispose()
    return {"users": n_users, "items": n_items}


# --- one measured run (its own process) ----------------------------------------------------------


def child(mode: str, url: str, night: str, snapshot: str, out: str) -> None:
    """Runs one extract stage (or the naive read) and prints its seconds, rows and peak RSS as JSON."""
    import adbc_driver_postgresql.dbapi  # noqa: F401  (each side's driver loads before the timer)
    import pandas as pd
    import psycopg2  # noqa: F401
    import sqlalchemy as sa

    import pipelines.extract.extraction  # noqa: F401
    from tasks import extract as extract_stage

    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    params["paths"].update(extract=str(Path(out) / "extract"), snapshot=snapshot)
    params["extract"]["mapping"] = MAPPING
    params_file = Path(out) / "params.yaml"
    params_file.write_text(yaml.safe_dump(params))
    os.environ["RETRAIN_WAREHOUSE_URL"] = url
    started = time.perf_counter()  # after the imports: both sides pay the same start-up
    if mode == "naive":
        engine = sa.create_engine(url)
        rows = read = len(pd.read_sql("SELECT * FROM interactions", engine))
        engine.dispose()
    else:  # the stage exactly as a night runs it: snapshot, view, manifest
        if extract_stage.main(["--params", str(params_file), "--logical-date", night]) != 0:
            raise SystemExit("the extract stage failed")
        manifest = json.loads((Path(out) / "extract" / "manifest.json").read_text())
        rows, read = manifest["rows"]["interactions"], manifest["rows_read"]
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "rows": rows, "rows_read": read, "peak_rss_mb": peak_mb}))


def run_child(mode: str, url: str, night: dt.date, snapshot: Path, out: Path) -> dict[str, float]:
    env = {**os.environ, "RETRAIN_LOG_LEVEL": "WARNING"}
    os.sync()  # the previous run's (or the setup's) writes reach the disk before this one is timed
    done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", mode, url, night.isoformat(),
                           str(snapshot), str(out)], capture_output=True, text=True, env=env, cwd=PROJECT_ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"{mode} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- one size ----------------------------------------------------------------------------------


def measure(admin_url: str, rows: int, days: int, repeats: int, scratch: Path) -> dict[str, Any]:
    url, drop, why_not = temporary_postgres(admin_url)
    if url is None:
        raise SystemExit(f"PostgreSQL is needed for this bench: {why_not}")
    try:
        print(f"[{rows:,} rows] seeding ...", flush=True)
        sizes = seed(url, rows, days)
        night = (FIRST_DAY + dt.timedelta(days=days)).date()  # its interval is the last seeded day
        previous = scratch / f"snapshot-{rows}-previous-night"
        run_child("ours_full", url, night - dt.timedelta(days=1), previous, _fresh(scratch))
        runs: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
        for repeat in range(repeats):
            for mode in MODES:  # interleaved, so the machine's load falls on all three alike
                snapshot = _fresh(scratch)
                if mode == "ours_incremental":  # a new night each time: the previous night's snapshot
                    shutil.copytree(previous, snapshot, dirs_exist_ok=True)
                runs[mode].append(run_child(mode, url, night, snapshot, _fresh(scratch)))
                print(f"  {mode:17} run {repeat + 1}: {runs[mode][-1]['seconds']:8.2f} s "
                      f"{runs[mode][-1]['peak_rss_mb']:8.0f} MB", flush=True)
    finally:
        drop()
    return summarise(rows, days, sizes, runs)


def _fresh(scratch: Path) -> Path:
    return Path(tempfile.mkdtemp(dir=scratch))


def summarise(rows: int, days: int, sizes: dict[str, int], runs: dict[str, list[dict[str, float]]]) -> dict[str, Any]:
    def median(mode: str, key: str) -> float:
        return statistics.median(run[key] for run in runs[mode])

    for mode in MODES:  # every way of reading must have seen the whole table
        assert all(run["rows"] == rows for run in runs[mode]), (mode, runs[mode])
    return {
        "rows": rows, "days": days, **{f"seeded_{name}": count for name, count in sizes.items()},
        "ours_full_s": round(median("ours_full", "seconds"), 3),
        "ours_incremental_s": round(median("ours_incremental", "seconds"), 3),
        "naive_s": round(median("naive", "seconds"), 3),
        "ours_peak_rss_mb": round(max(median("ours_full", "peak_rss_mb"), median("ours_incremental", "peak_rss_mb"))),
        "naive_peak_rss_mb": round(median("naive", "peak_rss_mb")),
        "ours_incremental_rows_read": int(median("ours_incremental", "rows_read")),
        "ours_full_rows_per_s": round(rows / median("ours_full", "seconds")),
        "naive_rows_per_s": round(rows / median("naive", "seconds")),
        "speedup_vs_naive": round(median("naive", "seconds") / median("ours_full", "seconds"), 2),
        "incremental_share_of_full": round(median("ours_incremental", "seconds") / median("ours_full", "seconds"), 3),
        "runs": runs,
    }


def print_table(results: list[dict[str, Any]], machine: str) -> None:
    print(f"\nextract from PostgreSQL, medians ({machine})")
    print(f"{'rows':>11} {'ours full s':>11} {'incr s':>8} {'naive s':>8} {'speed-up':>8} {'incr/full':>9} "
          f"{'ours MB':>8} {'naive MB':>8} {'ours rows/s':>12}")
    for r in results:
        print(f"{r['rows']:>11,} {r['ours_full_s']:>11.2f} {r['ours_incremental_s']:>8.2f} {r['naive_s']:>8.2f} "
              f"{r['speedup_vs_naive']:>7.1f}x {r['incremental_share_of_full']:>9.1%} {r['ours_peak_rss_mb']:>8} "
              f"{r['naive_peak_rss_mb']:>8} {r['ours_full_rows_per_s']:>12,}")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        child(*argv[1:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,1000000,10000000")
    parser.add_argument("--days", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--postgres-url", default=POSTGRES_ADMIN_URL, help="admin URL of the server to seed")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()[0]
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-extract-") as scratch:
        for rows in (int(size) for size in args.sizes.split(",")):
            results.append(measure(args.postgres_url, rows, args.days, args.repeats, Path(scratch)))
    machine = (f"{cpu_model()}, {os.cpu_count()} cores, "
               f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB; PostgreSQL on the same "
               f"machine; load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after")
    print_table(results, machine)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "extract.json"
    path.write_text(json.dumps({"machine": machine, "repeats": args.repeats, "results": results}, indent=1) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
