"""Extraction of the optional group tables: memberships whole, group events by day and incrementally.

Every test that reads groups through a mapping runs on SQLite (the chunked cursor) and on the
local PostgreSQL (the binary COPY path), with warehouse names that differ from the canonical ones.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from pipelines.core import schema
from pipelines.core.io import NonRetryableError, sha256_dir
from pipelines.extract.extraction import KNOWN_HASHES, extract_window
from tests.conftest import PLAIN_EXTRACT

T0 = dt.datetime(2026, 3, 1)
NIGHT = dt.date(2026, 3, 11)  # its interval is 03-10; the warehouse holds 03-01 .. 03-10
MAPPING = {
    "group_members": {"table": "households", "columns": {"group_id": "hh", "user_id": "person",
                                                         "joined_at": "since", "left_at": "until"}},
    "group_events": {"table": "household_orders", "columns": {"group_id": "hh", "item_id": "sku",
                                                               "event_type": "kind", "ts": "at"},
                     "event_types": {"buy": "purchase"}},
}
source_tables = sa.MetaData()
households = sa.Table("households", source_tables, sa.Column("hh", sa.Integer), sa.Column("person", sa.String(8)),
                      sa.Column("since", sa.DateTime), sa.Column("until", sa.DateTime))
orders = sa.Table("household_orders", source_tables, sa.Column("hh", sa.Integer), sa.Column("sku", sa.String(8)),
                  sa.Column("kind", sa.String(8)), sa.Column("at", sa.DateTime))


def order(k: int, **values: object) -> dict[str, object]:
    """Two group events a day over 03-01 .. 03-10; the odd ones are purchases ('buy' in the warehouse)."""
    row = {"hh": 1 + k % 2, "sku": "ab"[k % 2], "kind": "buy" if k % 2 else "view",
           "at": T0 + dt.timedelta(days=k // 2, hours=6 + 12 * (k % 2))}
    return {**row, **values}


@pytest.fixture
def url(database_url: str) -> str:
    """Canonical users, items and interactions, and households under their own names: household 2's
    second member joins after the night, so the night does not know that membership yet."""
    engine = sa.create_engine(database_url)
    schema.create_warehouse_tables(engine)
    source_tables.create_all(engine)
    with engine.begin() as conn:
        conn.execute(schema.users.insert(), [{"user_id": f"u{k}", "attributes": "", "created_at": None}
                                             for k in range(3)])
        conn.execute(schema.items.insert(), [{"item_id": item, "title": item.upper(), "categories": "",
                                              "description": "", "created_at": None} for item in "ab"])
        conn.execute(schema.interactions.insert(), [
            {"event_id": k, "user_id": f"u{k % 3}", "item_id": "ab"[k % 2], "event_type": "view", "rating": None,
             "ts": T0 + dt.timedelta(days=k - 1, hours=3)} for k in range(1, 11)])
        conn.execute(households.insert(), [
            {"hh": 1, "person": "u0", "since": None, "until": None},
            {"hh": 1, "person": "u1", "since": T0, "until": T0 + dt.timedelta(days=4)},
            {"hh": 2, "person": "u2", "since": T0, "until": None},
            {"hh": 2, "person": "u0", "since": dt.datetime.combine(NIGHT, dt.time()) + dt.timedelta(hours=1),
             "until": None},
        ])
        conn.execute(orders.insert(), [order(k) for k in range(20)])
    engine.dispose()
    return database_url


def run(url: str, root: Path, night: dt.date, name: str, **settings: object) -> tuple[dict, Path]:
    out = root / name
    out.mkdir(parents=True)
    fields = extract_window(url, out, night, snapshot_dir=root / "snapshot",
                            **{**PLAIN_EXTRACT, "lookback_days": 2, "mapping": MAPPING, **settings})
    return fields, out


def test_group_tables_are_extracted_beside_the_others_in_the_canonical_schema(url: str, tmp_path: Path) -> None:
    fields, out = run(url, tmp_path, NIGHT, "night")

    members = pd.read_parquet(out / "group_members.parquet")
    assert list(members.columns) == list(schema.GROUP_MEMBER_COLUMNS)
    assert list(zip(members["group_id"], members["user_id"])) == [("1", "u0"), ("1", "u1"), ("2", "u2")]
    assert members["left_at"].tolist()[1] == pd.Timestamp(T0 + dt.timedelta(days=4))
    events = pd.read_parquet(out / "group_events")
    assert list(events.columns) == list(schema.GROUP_EVENT_COLUMNS) and len(events) == 20
    assert sorted(path.name for path in (out / "group_events").iterdir())[0] == "2026-03-01.parquet"
    assert set(events["event_type"]) == {"view", "purchase"}  # 'buy' renamed by the mapping
    assert events["ts"].is_monotonic_increasing
    assert fields["rows"] == {"interactions": 10, "items": 2, "users": 3, "group_members": 3, "group_events": 20}
    assert fields["group_events"] == {"reads": [{"first_day": "2026-03-08", "end_day": "2026-03-11"},
                                                {"first_day": "2026-03-01", "end_day": "2026-03-08"}],
                                      "days_read": 10, "rows_read": 20}
    assert "group_events/2026-03-10.parquet" in fields[KNOWN_HASHES]


def test_group_events_are_read_incrementally_and_match_a_full_extract(url: str, tmp_path: Path) -> None:
    run(url, tmp_path / "nightly", NIGHT - dt.timedelta(days=1), "first")
    engine = sa.create_engine(url)
    with engine.begin() as conn:  # a late row for a day inside the next night's lookback
        conn.execute(orders.insert(), [order(1, at=T0 + dt.timedelta(days=7, hours=1))])
    engine.dispose()

    second, incremental = run(url, tmp_path / "nightly", NIGHT, "second")
    assert second["group_events"] == {"reads": [{"first_day": "2026-03-08", "end_day": "2026-03-11"}],
                                      "days_read": 3, "rows_read": 7}
    assert second["rows"]["group_events"] == 21
    _, full = run(url, tmp_path / "from-scratch", NIGHT, "full")
    assert sha256_dir(incremental / "group_events") == sha256_dir(full / "group_events")
    pd.testing.assert_frame_equal(pd.read_parquet(incremental / "group_members.parquet"),
                                  pd.read_parquet(full / "group_members.parquet"))


def test_a_fixed_window_holds_only_its_days_of_group_events(url: str, tmp_path: Path) -> None:
    fields, out = run(url, tmp_path, NIGHT, "night", window_days=3)
    assert sorted(path.name for path in (out / "group_events").iterdir()) == [
        "2026-03-08.parquet", "2026-03-09.parquet", "2026-03-10.parquet"]
    assert fields["rows"]["group_events"] == 6


@pytest.mark.parametrize("mapping, message", [
    ({**MAPPING, "group_events": {**MAPPING["group_events"], "table": "team_orders"}},
     "extract.mapping.group_events.table: table 'team_orders' not found in the warehouse"),
    ({**MAPPING, "group_members": {**MAPPING["group_members"],
                                   "columns": {**MAPPING["group_members"]["columns"], "left_at": "ended"}}},
     "extract.mapping.group_members.columns.left_at: column 'ended' not found in table 'households'"),
])
def test_a_mapped_group_table_or_column_that_is_missing_is_a_configuration_error(
        url: str, tmp_path: Path, mapping: dict, message: str) -> None:
    with pytest.raises(NonRetryableError, match=message):
        run(url, tmp_path, NIGHT, "night", mapping=mapping)
    assert not [path for path in (tmp_path / "snapshot").rglob("*") if path.is_file() and path.name != ".lock"]


def test_without_a_group_mapping_the_extract_is_what_it_was(url: str, tmp_path: Path) -> None:
    fields, out = run(url, tmp_path, NIGHT, "night", mapping=None)
    assert fields["rows"] == {"interactions": 10, "items": 2, "users": 3} and "group_events" not in fields
    assert sorted(path.name for path in out.iterdir()) == ["interactions", "items.parquet", "users.parquet"]
    assert not (tmp_path / "snapshot" / "group_events").exists()
