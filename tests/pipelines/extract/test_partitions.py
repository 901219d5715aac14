"""Incremental extraction: day partitions, reruns, late rows, slowly changing dimensions.

Every test that talks to a warehouse runs on SQLite (the chunked-cursor path) and on the local
PostgreSQL (the COPY path).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from pipelines.extract import extraction as extract_module
from pipelines.extract import partitions
from pipelines.extract import pgarrow
from pipelines.core import schema
from pipelines.extract.extraction import extract_window
from pipelines.core.io import NonRetryableError, sha256_dir
from pipelines.extract.partitions import Coverage, DayRange, plan_reads
from tests.conftest import PLAIN_EXTRACT

D = dt.date
T0 = dt.datetime(2026, 3, 1)
NIGHT = D(2026, 3, 11)  # its interval is 03-10; the warehouse holds 03-01 .. 03-10


# --- planning, no database ---------------------------------------------------------------------


def covered(*days: dt.date, origin: dt.date | None = None) -> Coverage:
    return Coverage({day.isoformat(): {"rows": 1, "sha256": "x"} for day in days}, origin)


def test_first_night_reads_its_interval_with_lookback_then_all_history():
    assert plan_reads(covered(), D(2026, 3, 10), D(2026, 3, 11), window_days=0, lookback_days=2) == [
        DayRange(D(2026, 3, 8), D(2026, 3, 11)), DayRange(None, D(2026, 3, 8))]


def test_a_night_after_a_complete_history_reads_only_its_interval_and_lookback():
    held = covered(*partitions.days_between(D(2026, 3, 1), D(2026, 3, 10)), origin=D(2026, 3, 1))
    assert plan_reads(held, D(2026, 3, 10), D(2026, 3, 11), 0, 2) == [DayRange(D(2026, 3, 8), D(2026, 3, 11))]


def test_gaps_in_the_window_are_read_as_ranges():
    held = covered(D(2026, 3, 1), D(2026, 3, 4), D(2026, 3, 5), origin=D(2026, 3, 1))
    assert plan_reads(held, D(2026, 3, 10), D(2026, 3, 11), 0, 1) == [
        DayRange(D(2026, 3, 9), D(2026, 3, 11)), DayRange(D(2026, 3, 2), D(2026, 3, 4)),
        DayRange(D(2026, 3, 6), D(2026, 3, 9))]


def test_a_fixed_window_reads_only_days_inside_it():
    assert plan_reads(covered(), D(2026, 3, 10), D(2026, 3, 11), window_days=3, lookback_days=7) == [
        DayRange(D(2026, 3, 8), D(2026, 3, 11))]
    with pytest.raises(ValueError, match="lookback_days"):
        plan_reads(covered(), D(2026, 3, 10), D(2026, 3, 11), 0, -1)


# --- against a warehouse -----------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path}/wh.db" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    engine = sa.create_engine(url)
    schema.create_warehouse_tables(engine)
    with engine.begin() as conn:
        conn.execute(schema.users.insert(), [{"user_id": f"u{k}", "attributes": "", "created_at": None}
                                             for k in range(3)])
        conn.execute(schema.items.insert(), [
            {"item_id": "a", "title": 'A "quoted",\ntwo-line title', "categories": "", "description": "",
             "created_at": None},
            {"item_id": "b", "title": "B", "categories": "x|y", "description": "d", "created_at": T0},
        ])
        conn.execute(schema.interactions.insert(), [event(k) for k in range(1, 41)])
    engine.dispose()
    return url


def event(k: int, day_offset: int | None = None, **values: object) -> dict[str, object]:
    """Four events a day over 03-01 .. 03-10; event ids rise with time except where given."""
    day = (k - 1) // 4 if day_offset is None else day_offset
    row = {"event_id": k, "user_id": f"u{k % 3}", "item_id": "ab"[k % 2], "event_type": "rating" if k % 2 else "view",
           "rating": 4.0 if k % 2 else None, "ts": T0 + dt.timedelta(days=day, hours=k % 4 * 5)}
    return {**row, **values}


def execute(url: str, *statements: sa.Executable | str, rows: list[dict] | None = None) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(sa.text(statement) if isinstance(statement, str) else statement, rows)
    engine.dispose()


def run(url: str, root: Path, night: dt.date, name: str, **settings: object) -> tuple[dict, Path]:
    out = root / name
    out.mkdir(parents=True)
    fields = extract_window(url, out, night, snapshot_dir=root / "snapshot",
                            **{**PLAIN_EXTRACT, "lookback_days": 2, **settings})
    return fields, out


def events_in(out: Path) -> pd.DataFrame:
    return pd.read_parquet(out / "interactions").sort_values("event_id", ignore_index=True)


def test_incremental_nights_match_a_full_extract_byte_for_byte(url: str, tmp_path: Path) -> None:
    first, _ = run(url, tmp_path / "nightly", NIGHT - dt.timedelta(days=1), "first")
    assert first["rows_read"] == 36 and first["days_read"] == 9
    second, incremental = run(url, tmp_path / "nightly", NIGHT, "second")
    assert second["reads"] == [{"first_day": "2026-03-08", "end_day": "2026-03-11"}]
    assert second["rows_read"] == 12 and second["rows"]["interactions"] == 40
    _, full = run(url, tmp_path / "from-scratch", NIGHT, "full")
    assert sha256_dir(incremental / "interactions") == sha256_dir(full / "interactions")
    assert sorted(path.name for path in (full / "interactions").iterdir())[::9] == [
        "2026-03-01.parquet", "2026-03-10.parquet"]
    assert list(events_in(full)["event_id"]) == list(range(1, 41))


def test_concurrent_streams_write_the_same_days_as_one(url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    _, one = run(url, tmp_path / "one", NIGHT, "view", lookback_days=9)
    monkeypatch.setattr(extract_module, "MIN_SPLIT_DAYS", 2)
    caplog.clear()
    with caplog.at_level("INFO", logger="pipelines.extract.extraction"):
        fields, several = run(url, tmp_path / "several", NIGHT, "view", read_workers=3, lookback_days=9)
    streams = [record for record in caplog.records if record.getMessage().startswith("read events")]
    assert len(streams) == (3 if url.startswith("postgresql") else 1)  # SQLite reads on one connection
    assert fields["reads"] == [{"first_day": "2026-03-01", "end_day": "2026-03-11"}] and fields["days_read"] == 10
    assert sha256_dir(several / "interactions") == sha256_dir(one / "interactions")


def test_rerunning_a_night_replaces_its_days_without_duplicates(url: str, tmp_path: Path) -> None:
    _, once = run(url, tmp_path, NIGHT, "once")
    store_once = sha256_dir(tmp_path / "snapshot" / "interactions")
    _, twice = run(url, tmp_path, NIGHT, "twice")
    assert sha256_dir(twice / "interactions") == sha256_dir(once / "interactions")
    assert sha256_dir(tmp_path / "snapshot" / "interactions") == store_once
    assert events_in(twice)["event_id"].is_unique


def test_late_rows_inside_the_lookback_are_picked_up_and_older_ones_are_not(url: str, tmp_path: Path) -> None:
    run(url, tmp_path, NIGHT - dt.timedelta(days=1), "before")
    execute(url, schema.interactions.insert(), rows=[
        event(101, day_offset=8),  # 03-09: inside the next night's two-day lookback
        event(102, day_offset=2),  # 03-03: too late for any lookback
    ])
    fields, out = run(url, tmp_path, NIGHT, "after")
    ids = set(events_in(out)["event_id"])
    assert 101 in ids and 102 not in ids
    assert fields["rows"]["interactions"] == 41


def test_days_without_events_are_read_once_and_stored_without_files(url: str, tmp_path: Path) -> None:
    # One stray event in 1970 (a reset clock) makes 20,000 days of history, nearly all empty.
    execute(url, schema.interactions.insert(), rows=[event(999, ts=dt.datetime(1970, 1, 1, 12))])
    first, out = run(url, tmp_path, NIGHT - dt.timedelta(days=1), "first")
    coverage = partitions.PartitionStore(tmp_path / "snapshot").coverage()
    assert first["days_read"] == len(coverage.days) > 20_000 and first["rows"]["interactions"] == 37
    stored = sorted(path.name for path in (tmp_path / "snapshot" / "interactions").glob("*.parquet"))
    assert stored[0] == "1970-01-01.parquet" and len(stored) == 10
    assert len(list((out / "interactions").iterdir())) == 10
    second, _ = run(url, tmp_path, NIGHT, "second")
    assert second["days_read"] == 3  # the empty days count as read


def test_a_fixed_window_holds_only_its_days(url: str, tmp_path: Path) -> None:
    fields, out = run(url, tmp_path, NIGHT, "window", window_days=3)
    assert sorted(path.stem for path in (out / "interactions").iterdir()) == ["2026-03-08", "2026-03-09", "2026-03-10"]
    assert fields["rows"]["interactions"] == 12


def test_items_and_users_are_stored_as_changes_and_viewed_as_of_each_night(url: str, tmp_path: Path) -> None:
    first, before = run(url, tmp_path, NIGHT - dt.timedelta(days=1), "first")
    assert first["dimension_changes"]["items"] == {"read": "whole table", "rows_read": 2, "changed": 2, "deleted": 0}
    execute(url, "UPDATE items SET title = 'B, renamed' WHERE item_id = 'b'", "DELETE FROM users WHERE user_id = 'u2'",
            schema.items.insert().values(item_id="c", title="C", categories="", description="", created_at=None))
    second, after = run(url, tmp_path, NIGHT, "second")
    assert second["dimension_changes"] == {
        "items": {"read": "whole table", "rows_read": 3, "changed": 2, "deleted": 0},
        "users": {"read": "whole table", "rows_read": 2, "changed": 0, "deleted": 1}}
    log = pd.read_parquet(tmp_path / "snapshot" / "items" / f"{NIGHT.isoformat()}.parquet")
    assert sorted(log["item_id"]) == ["b", "c"]  # only what changed is stored
    items = pd.read_parquet(after / "items.parquet")
    assert items.set_index("item_id")["title"].to_dict() == {"a": 'A "quoted",\ntwo-line title', "b": "B, renamed",
                                                              "c": "C"}
    assert list(pd.read_parquet(after / "users.parquet")["user_id"]) == ["u0", "u1"]
    # The night's view (the cached state with tonight's log applied) is what replaying the logs gives.
    with partitions.PartitionStore(tmp_path / "snapshot") as store:
        cached = partitions.dimension_as_of(store, "items", NIGHT, "item_id", inclusive=True,
                                            arrow_schema=extract_module.ARROW_SCHEMAS["items"])
        (tmp_path / "snapshot" / "items" / partitions.STATE_FILE).unlink()
        replayed = partitions.dimension_as_of(store, "items", NIGHT, "item_id", inclusive=True,
                                              arrow_schema=extract_module.ARROW_SCHEMAS["items"])
    assert replayed.equals(cached) and replayed.equals(pq.read_table(after / "items.parquet"))
    # Rerunning the earlier night still sees the dimensions as recorded then, not today's.
    rerun_fields, rerun = run(url, tmp_path, NIGHT - dt.timedelta(days=1), "rerun")
    assert rerun_fields["dimension_changes"]["items"] == {"recorded_by_later_night": True}
    assert pd.read_parquet(rerun / "items.parquet").equals(pd.read_parquet(before / "items.parquet"))


def test_with_updated_at_mapped_a_night_reads_only_the_rows_it_marks(url: str, tmp_path: Path) -> None:
    execute(url, "ALTER TABLE items ADD COLUMN modified TIMESTAMP", "UPDATE items SET modified = '2026-02-01 00:00:00'")
    mapping = {"items": {"updated_at": "modified"}}
    first, _ = run(url, tmp_path, NIGHT - dt.timedelta(days=1), "first", mapping=mapping)
    assert first["dimension_changes"]["items"]["read"] == "whole table"  # nothing stored yet
    execute(url, "UPDATE items SET title = 'B2', modified = '2026-03-10 08:00:00' WHERE item_id = 'b'",
            "UPDATE items SET title = 'A, silently' WHERE item_id = 'a'",  # updated_at not set: not seen
            "INSERT INTO items (item_id, title, categories, description, modified) "
            "VALUES ('c', 'C', '', '', '2026-03-10 09:00:00')")
    second, out = run(url, tmp_path, NIGHT, "second", mapping=mapping)
    # The last recorded night is 03-10 (its interval ended then): changes since then, less the lookback.
    assert second["dimension_changes"]["items"] == {"read": "changed since 2026-03-08T00:00:00", "rows_read": 2,
                                                    "changed": 2, "deleted": 0}
    items = pd.read_parquet(out / "items.parquet").set_index("item_id")["title"].to_dict()
    assert items == {"a": 'A "quoted",\ntwo-line title', "b": "B2", "c": "C"}
    with pytest.raises(NonRetryableError, match="extract.mapping.users.updated_at"):
        run(url, tmp_path, NIGHT, "bad", mapping={"users": {"updated_at": "no_such_column"}})


def test_copy_path_keeps_nulls_empty_strings_and_typed_keys(postgres_url: str, tmp_path: Path) -> None:
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE ev (id bigint, who integer, what integer, kind text, stars numeric, "
                             "at timestamp)")
        conn.exec_driver_sql("CREATE TABLE it (id integer, name text, cats text)")
        conn.exec_driver_sql("CREATE TABLE us (id integer)")
        conn.exec_driver_sql("INSERT INTO ev VALUES (1, 7, 70, 'pv', NULL, '2026-03-10 01:00:00.123456'), "
                             "(2, 8, 71, 'buy', 8, '2026-03-10 02:00:00')")
        conn.exec_driver_sql("INSERT INTO it VALUES (70, 'x', ''), (71, 'y', NULL)")
        conn.exec_driver_sql("INSERT INTO us VALUES (7), (8)")
    engine.dispose()
    mapping = {"interactions": {"table": "ev", "columns": {"event_id": "id", "user_id": "who", "item_id": "what",
                                                           "event_type": "kind", "rating": "stars", "ts": "at"},
                                "event_types": {"pv": "view", "buy": "purchase"}, "rating_scale": [0, 10]},
               "items": {"table": "it", "columns": {"item_id": "id", "title": "name", "categories": "cats",
                                                    "description": None, "created_at": None}},
               "users": {"table": "us", "columns": {"user_id": "id", "attributes": None, "created_at": None}}}
    fields, out = run(postgres_url, tmp_path, NIGHT, "night", mapping=mapping)
    assert fields["read_path"] == "postgresql ADBC (binary COPY)"
    events = events_in(out)
    assert events["user_id"].tolist() == ["7", "8"] and events["event_type"].tolist() == ["view", "purchase"]
    assert events["rating"].isna().tolist() == [True, False]
    assert events["rating"].iloc[1] == pytest.approx(0.5 + 8 * 4.5 / 10)  # 8 on 0-10 mapped onto 0.5-5
    assert events["ts"].iloc[0] == pd.Timestamp("2026-03-10 01:00:00.123456")
    items = pd.read_parquet(out / "items.parquet")
    # '' stays '' and NULL stays null (validation judges it)
    assert items["categories"].iloc[0] == "" and items["categories"].isna().tolist() == [False, True]
    assert items["description"].tolist() == ["", ""]


def test_a_read_cut_short_by_the_server_names_the_cause_and_never_the_password(postgres_url: str) -> None:
    password = "s3cret-pw"
    engine = sa.create_engine(postgres_url)
    schema.create_warehouse_tables(engine)
    with engine.begin() as conn:
        conn.execute(schema.interactions.insert(), [event(k) for k in range(1, 41)])
        conn.exec_driver_sql(f"CREATE ROLE etl LOGIN PASSWORD '{password}'")
        conn.exec_driver_sql("GRANT SELECT ON interactions TO etl")
        # 1 / (event_id - 20) fails on the server part-way through the stream.
        query = sa.select(schema.interactions.c.event_id, (1 / (schema.interactions.c.event_id - 20)).label("x"))
        sql = pgarrow.literal_sql(conn, query)
    url = engine.url.set(username="etl", password=password)
    try:
        with pytest.raises(pgarrow.PostgresReadError, match="division by zero") as info, \
                pgarrow.Connections(url) as connections:
            list(connections.stream(sql))
        assert password not in str(info.value)
        with pytest.raises(pgarrow.PostgresReadError) as info, \
                pgarrow.Connections(url.set(port=1)) as connections:  # nothing listens on port 1
            list(connections.stream(sql))
        assert "port 1" in str(info.value) and password not in str(info.value)
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP OWNED BY etl")
            conn.exec_driver_sql("DROP ROLE etl")
        engine.dispose()


def test_a_failed_read_leaves_the_snapshot_as_it_was(url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run(url, tmp_path, NIGHT - dt.timedelta(days=1), "first")
    before = sha256_dir(tmp_path / "snapshot")
    real_read = extract_module._read_days
    calls = []

    def read_then_lose_the_connection(*args, **kwargs):
        calls.append(real_read(*args, **kwargs))
        raise sa.exc.OperationalError("SELECT", {}, Exception("server closed the connection unexpectedly"))

    monkeypatch.setattr(extract_module, "_read_days", read_then_lose_the_connection)
    with pytest.raises(sa.exc.OperationalError):
        run(url, tmp_path, NIGHT, "second")
    assert calls and sha256_dir(tmp_path / "snapshot") == before
    assert not list((tmp_path / "snapshot").glob(".staging-*"))


def test_the_cached_dimension_state_always_equals_replaying_the_logs(tmp_path: Path) -> None:
    schema_ = extract_module.ARROW_SCHEMAS["users"]

    def users(**attributes: str) -> pa.Table:
        return pa.table({"user_id": list(attributes), "attributes": list(attributes.values()),
                         "created_at": pa.nulls(len(attributes), pa.timestamp("us"))}, schema=schema_)

    def night(store: partitions.PartitionStore, day: dt.date, warehouse: pa.Table) -> None:
        before = partitions.dimension_as_of(store, "users", day, "user_id", False, schema_)
        changes = partitions.dimension_changes(before, warehouse, "user_id")
        staged = tmp_path / "staged.parquet"
        pq.write_table(changes, staged)
        store.commit_changes("users", day, staged, partitions.apply_changes(before, changes, "user_id"))

    def replayed(store: partitions.PartitionStore, day: dt.date) -> pa.Table:
        state = tmp_path / "snapshot" / "users" / partitions.STATE_FILE
        kept = state.read_bytes() if state.exists() else None
        state.unlink(missing_ok=True)
        table = partitions.dimension_as_of(store, "users", day, "user_id", True, schema_)
        if kept is not None:
            state.write_bytes(kept)
        return table

    nights = [D(2026, 3, k) for k in (1, 2, 3)]
    warehouses = [users(a="x", b="y"), users(a="x", b="y"), users(a="x2", c="z")]
    with partitions.PartitionStore(tmp_path / "snapshot") as store:
        for day, warehouse in zip(nights, warehouses):
            night(store, day, warehouse)
            cached = partitions.dimension_as_of(store, "users", day, "user_id", True, schema_)
            assert cached.equals(replayed(store, day)) and cached.equals(warehouse), day
        # Night 2 changed nothing, so the cache was not rewritten and still served night 3's "before".
        # A rerun of night 3 that now finds nothing changed since night 2 must not keep night 3's first state.
        night(store, nights[2], warehouses[1])
        cached = partitions.dimension_as_of(store, "users", nights[2], "user_id", True, schema_)
        assert cached.equals(warehouses[1]) and cached.equals(replayed(store, nights[2]))
