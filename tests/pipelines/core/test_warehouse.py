"""Warehouse connection (Airflow connection, env, params), schema mapping, injection checks, retries."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
import yaml

from pipelines.extract import pgarrow

from pipelines.core import schema

from pipelines.core import warehouse
from pipelines.extract.extraction import extract_window
from pipelines.core.io import NonRetryableError, sha256_dir
from tests.conftest import PLAIN_EXTRACT, PROJECT_ROOT

NIGHT = dt.date(2026, 3, 2)  # data interval [2026-03-01, 2026-03-02)
PASSWORD = "p@ss:w/rd#Zq8x3"  # characters that need percent-encoding in a URI


# --------------------------------------------------------------------------- connection

def test_airflow_uri_maps_onto_the_sqlalchemy_dialect():
    uri = f"postgres://etl:{quote(PASSWORD, safe='')}@db.example:6432/analytics?sslmode=require"
    url, source = warehouse.resolve_url({"AIRFLOW_CONN_WAREHOUSE": uri}, "sqlite:///unused.db")
    assert source == "AIRFLOW_CONN_WAREHOUSE"
    assert (url.drivername, url.username, url.password, url.host, url.port, url.database) == \
        ("postgresql+psycopg2", "etl", PASSWORD, "db.example", 6432, "analytics")
    assert dict(url.query) == {"sslmode": "require"}


def test_airflow_json_form_and_extra():
    value = json.dumps({"conn_type": "postgres", "host": "db", "login": "etl", "password": PASSWORD,
                        "port": "5432", "schema": "wh", "extra": {"connect_timeout": 5}})
    url = warehouse.airflow_connection_url(value)
    assert (url.drivername, url.password, url.port, url.database, dict(url.query)) == \
        ("postgresql+psycopg2", PASSWORD, 5432, "wh", {"connect_timeout": "5"})


@pytest.mark.parametrize("uri, database", [
    ("sqlite:////abs/dir/Warehouse.db", "/abs/dir/Warehouse.db"),
    ("sqlite:///relative/demo.db", "relative/demo.db"),
    ("sqlite://%2Fabs%2Fdir%2FWarehouse.db", "/abs/dir/Warehouse.db"),  # Airflow's path-in-host form
])
def test_sqlite_connection_forms(uri, database):
    url = warehouse.airflow_connection_url(uri)
    assert (url.drivername, url.database) == ("sqlite", database)


def test_our_reading_agrees_with_airflows_own(tmp_path):
    sdk = pytest.importorskip("airflow.sdk")
    conn = sdk.Connection(conn_id="warehouse", conn_type="postgres", host="db.example", login="etl",
                          password=PASSWORD, port=5432, schema="wh", extra=json.dumps({"sslmode": "verify-full"}))
    for value in (conn.get_uri(), conn.as_json()):
        url = warehouse.airflow_connection_url(value)
        assert (url.username, url.password, url.host, url.port, url.database, dict(url.query)) == \
            ("etl", PASSWORD, "db.example", 5432, "wh", {"sslmode": "verify-full"})
    path = str(tmp_path / "Wh.db")
    sqlite = sdk.Connection(conn_id="warehouse", conn_type="sqlite", host=path)
    assert warehouse.airflow_connection_url(sqlite.get_uri()).database == path


def test_connection_order_airflow_then_env_then_params():
    env = {"RETRAIN_WAREHOUSE_URL": "sqlite:///env.db"}
    assert warehouse.resolve_url(env, "sqlite:///params.db") == (sa.make_url("sqlite:///env.db"), "RETRAIN_WAREHOUSE_URL")
    assert warehouse.resolve_url({}, "sqlite:///params.db") == (sa.make_url("sqlite:///params.db"), "paths.warehouse_url")
    env["AIRFLOW_CONN_WAREHOUSE"] = "sqlite:///airflow.db"
    assert warehouse.resolve_url(env, "sqlite:///params.db")[0].database == "airflow.db"
    with pytest.raises(NonRetryableError, match="no warehouse configured"):
        warehouse.resolve_url({}, None)


@pytest.mark.parametrize("value, message", [
    (f"ftp://etl:{quote(PASSWORD, safe='')}@host/x", "unsupported connection type 'ftp'"),
    (f"etl:{quote(PASSWORD, safe='')}@host", "not a connection URI"),
    (f"postgres://etl:{quote(PASSWORD, safe='')}@host:port/x", "malformed port"),
    (f"postgres://etl:{PASSWORD}@host/x", "malformed port"),  # an unencoded '/' in the password
    ("postgres:///wh", "needs a host"),
    ('{"conn_type": "postgres", "password": "' + PASSWORD + '"', "not valid JSON"),
    ('{"conn_type": "postgres", "host": "h", "password": "' + PASSWORD + '", "extra": {"a": [1]}}',
     "extra 'a' must be a string or number"),
])
def test_bad_airflow_connections_are_refused_without_showing_the_password(value, message):
    with pytest.raises(NonRetryableError, match=message) as info:
        warehouse.resolve_url({"AIRFLOW_CONN_WAREHOUSE": value}, None)
    assert PASSWORD not in str(info.value) and quote(PASSWORD, safe="") not in str(info.value)


def test_unknown_sqlalchemy_dialect_is_refused():
    with pytest.raises(NonRetryableError, match="no SQLAlchemy dialect installed for 'nosuchdb'") as info:
        warehouse.resolve_url({"RETRAIN_WAREHOUSE_URL": f"nosuchdb://etl:{quote(PASSWORD, safe='')}@h/x"}, None)
    assert PASSWORD not in str(info.value)


def test_redact_hides_password_and_secret_query_values():
    shown = warehouse.redact(f"snowflake://etl:{quote(PASSWORD, safe='')}@acct/db?private_key=KEY123&role=r")
    assert quote(PASSWORD, safe="") not in shown and "KEY123" not in shown
    assert "role=r" in shown and "***" in shown


def test_dvc_lock_cannot_record_a_connection_url():
    """dvc.lock holds the params each stage lists: none may list `paths` (where URLs live)."""
    stages = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())["stages"]
    listed = {key for stage in stages.values() for entry in stage.get("params", [])
              for key in ([entry] if isinstance(entry, str) else [k for keys in entry.values() for k in keys])}
    assert "extract" in listed and not {key for key in listed if key.split(".")[0] == "paths"}
    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    assert "://" not in json.dumps({key: params[key.split(".")[0]] for key in listed if key.split(".")[0] in params})


# --------------------------------------------------------------------------- mapping, no database

INJECTIONS = ["items; DROP TABLE x", 'ev"ents', "events--", "events/*c*/", "1events", "my events",
              "public.events", "", "events\n"]


@pytest.mark.parametrize("value", INJECTIONS)
def test_non_identifiers_are_refused_naming_key_and_value(value):
    with pytest.raises(NonRetryableError) as info:
        warehouse.parse_mapping({"items": {"table": value}})
    assert "extract.mapping.items.table" in str(info.value) and repr(value) in str(info.value)
    with pytest.raises(NonRetryableError, match=r"extract\.mapping\.users\.columns\.user_id"):
        warehouse.parse_mapping({"users": {"columns": {"user_id": value}}})


@pytest.mark.parametrize("mapping, message", [
    ({"events": {}}, r"unknown table key\(s\) \['events'\]"),
    ({"items": {"tabel": "x"}}, r"extract\.mapping\.items: unknown key\(s\) \['tabel'\]"),
    ({"users": {"columns": {"uid": "x"}}}, r"extract\.mapping\.users\.columns: unknown canonical column\(s\) \['uid'\]"),
    ({"interactions": {"columns": {"ts": None}}}, r"extract\.mapping\.interactions\.columns\.ts is required"),
    ({"interactions": {"event_types": {"pv": "pageview"}}}, r"event_types\.pv: 'pageview' is not a canonical"),
    ({"interactions": {"rating_scale": [5, 1]}}, r"rating_scale must be \[low, high\]"),
    ({"items": {"schema": "a;b"}}, r"extract\.mapping\.items\.schema: 'a;b'"),
])
def test_bad_mappings_are_refused_naming_the_key(mapping, message):
    with pytest.raises(NonRetryableError, match=message):
        warehouse.parse_mapping(mapping)


def test_default_mapping_is_the_canonical_schema():
    default = warehouse.parse_mapping(None)
    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())["extract"]["mapping"]
    required = {key: value for key, value in params.items() if key not in schema.GROUP_TABLES}
    assert warehouse.parse_mapping(required) == default
    assert {key: (m.table, tuple(m.columns)) for key, m in default.tables.items()} == {
        "interactions": ("interactions", schema.INTERACTION_COLUMNS),
        "items": ("items", schema.ITEM_COLUMNS), "users": ("users", schema.USER_COLUMNS)}
    assert all(k == v for m in default.tables.values() for k, v in m.columns.items())


# --------------------------------------------------------------------------- live databases

@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/wh.db"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def statements(monkeypatch):
    """Every SQL statement any engine sends, with its parameters, and every query ADBC runs."""
    seen: list[tuple[str, object]] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        seen.append((statement, parameters))

    def record_literal(conn, query):
        seen.append((real_literal_sql(conn, query), "ADBC"))
        return seen[-1][0]

    real_literal_sql = pgarrow.literal_sql
    monkeypatch.setattr(pgarrow, "literal_sql", record_literal)
    sa.event.listen(sa.Engine, "before_cursor_execute", record)
    yield seen
    sa.event.remove(sa.Engine, "before_cursor_execute", record)


MAPPING = {
    "interactions": {"table": "events", "columns": {"event_id": "eid", "user_id": "uid", "item_id": "sku",
                                                    "event_type": "kind", "rating": "stars", "ts": "happened_at"},
                     "event_types": {"pv": "view", "buy": "purchase"}, "rating_scale": [1, 10]},
    # "order" is a reserved word and "Title" mixed case: both only work if SQLAlchemy quotes them.
    "items": {"table": "catalog", "columns": {"item_id": "sku", "title": "Title", "categories": "order",
                                              "description": None, "created_at": None}},
    "users": {"table": "people", "columns": {"user_id": "uid", "attributes": None, "created_at": "joined"}},
}


def seed_custom_warehouse(url: str) -> None:
    meta = sa.MetaData()
    events = sa.Table("events", meta, sa.Column("eid", sa.Integer, primary_key=True, autoincrement=False),
                      sa.Column("uid", sa.Integer), sa.Column("sku", sa.String(16)), sa.Column("kind", sa.String(8)),
                      sa.Column("stars", sa.Float), sa.Column("happened_at", sa.DateTime))
    catalog = sa.Table("catalog", meta, sa.Column("sku", sa.String(16), primary_key=True),
                       sa.Column("Title", sa.Text), sa.Column("order", sa.Text))
    people = sa.Table("people", meta, sa.Column("uid", sa.Integer, primary_key=True, autoincrement=False),
                      sa.Column("joined", sa.DateTime))
    engine = sa.create_engine(url)
    meta.create_all(engine)
    t = dt.datetime(2026, 3, 1, 12)
    with engine.begin() as conn:
        conn.execute(events.insert(), [
            {"eid": 1, "uid": 7, "sku": "a", "kind": "pv", "stars": None, "happened_at": t - dt.timedelta(days=2)},
            {"eid": 2, "uid": 7, "sku": "b", "kind": "buy", "stars": 10.0, "happened_at": t},
            {"eid": 3, "uid": 8, "sku": "a", "kind": "rating", "stars": 1.0, "happened_at": t},
            {"eid": 4, "uid": 8, "sku": "b", "kind": "pv", "stars": None, "happened_at": t + dt.timedelta(days=1)},
        ])
        conn.execute(catalog.insert(), [{"sku": "a", "Title": "A", "order": "x|y"}, {"sku": "b", "Title": "B", "order": ""}])
        conn.execute(people.insert(), [{"uid": 7, "joined": t - dt.timedelta(days=9)},
                                       {"uid": 9, "joined": t + dt.timedelta(days=1)}])
    engine.dispose()


def table_names(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_mapped_warehouse_extracts_onto_the_canonical_schema(db_url, tmp_path, statements):
    seed_custom_warehouse(db_url)
    statements.clear()
    fields = extract_window(db_url, tmp_path, NIGHT, snapshot_dir=tmp_path / "snapshot",
                            **{**PLAIN_EXTRACT, "mapping": MAPPING})
    assert fields["rows"] == {"interactions": 3, "items": 2, "users": 1}
    events = pq.read_table(tmp_path / "interactions")
    assert events.schema.names == list(schema.INTERACTION_COLUMNS)
    frame = events.to_pandas()
    assert list(frame["event_id"]) == [1, 2, 3]
    assert list(frame["user_id"]) == ["7", "7", "8"]
    assert list(frame["event_type"]) == ["view", "purchase", "rating"]
    assert frame["rating"].tolist()[1:] == [5.0, 0.5] and frame["rating"].isna().tolist()[0]
    items = pq.read_table(tmp_path / "items.parquet").to_pandas()
    assert items.drop(columns="created_at").to_dict("list") == {
        "item_id": ["a", "b"], "title": ["A", "B"], "categories": ["x|y", ""], "description": ["", ""]}
    assert items["created_at"].isna().all()
    assert pq.read_table(tmp_path / "users.parquet").to_pandas()["attributes"].tolist() == [""]
    # A first night reads its interval with the lookback, then all history before them.
    data_queries = [(s, p) for s, p in statements if "happened_at" in s and "ORDER BY" in s]
    assert len(data_queries) == 2
    copies = [s for s, how in data_queries if how == "ADBC"]
    assert len(copies) == (2 if db_url.startswith("postgresql") else 0)
    for statement in copies:  # binary COPY takes no parameters: the dialect renders the bounds as literals
        assert re.search(r"happened_at < '2026-03-0[12] 00:00:00'", statement), statement
    bound = [(s, p) for s, p in data_queries if p != "ADBC"]
    for statement, _ in bound:
        assert "2026-03-0" not in statement  # the day bounds travel as bound parameters
    values = [str(value) for _, parameters in bound
              for value in (parameters.values() if isinstance(parameters, dict) else parameters)]
    assert not bound or any(value.startswith("2026-03-02 00:00:00") for value in values)
    assert any('"order"' in s and '"Title"' in s for s, _ in statements)


@pytest.mark.parametrize("key, change, named", [
    ("items", {"table": "katalog"}, ["extract.mapping.items.table", "'katalog'"]),
    ("interactions", {"columns": {**MAPPING["interactions"]["columns"], "ts": "created"}},
     ["extract.mapping.interactions.columns.ts", "'created'", "'events'"]),
])
def test_missing_table_or_column_fails_before_any_data_query(db_url, tmp_path, statements, key, change, named):
    seed_custom_warehouse(db_url)
    statements.clear()
    mapping = {**MAPPING, key: {**MAPPING[key], **change}}
    with pytest.raises(NonRetryableError) as info:
        extract_window(db_url, tmp_path, NIGHT, snapshot_dir=tmp_path / "snapshot",
                       **{**PLAIN_EXTRACT, "mapping": mapping})
    assert all(part in str(info.value) for part in named), str(info.value)
    assert statements, "reflection should have read the catalogue"
    data = [s for s, _ in statements if any(f" FROM {name}" in s.replace('"', "") for name in ("events", "catalog", "people"))]
    assert data == []
    assert list(tmp_path.glob("*.parquet")) == []


@pytest.mark.parametrize("key, mapping", [
    ("extract.mapping.items.table", {"items": {"table": "catalog; DROP TABLE events"}}),
    ("extract.mapping.interactions.columns.event_type",
     {"interactions": {"table": "events", "columns": {"event_type": "kind); DROP TABLE people; --"}}}),
])
def test_injection_is_refused_before_touching_the_database(db_url, tmp_path, statements, key, mapping):
    seed_custom_warehouse(db_url)
    before = table_names(db_url)
    statements.clear()
    with pytest.raises(NonRetryableError, match=key) as info:
        extract_window(db_url, tmp_path, NIGHT, snapshot_dir=tmp_path / "snapshot",
                       **{**PLAIN_EXTRACT, "mapping": {**MAPPING, **mapping}})
    assert "DROP TABLE" in str(info.value)  # the offending value is named
    assert statements == []
    assert table_names(db_url) == before >= {"events", "catalog", "people"}


# --------------------------------------------------------------------------- retries

def test_connect_retries_with_backoff_then_names_the_redacted_url(caplog):
    url = sa.make_url(f"postgresql+psycopg2://etl:{quote(PASSWORD, safe='')}@127.0.0.1:1/wh")
    engine = sa.create_engine(url)
    delays: list[float] = []
    with caplog.at_level(logging.WARNING, logger="pipelines.core.warehouse"):
        with pytest.raises(warehouse.WarehouseUnavailableError) as info:
            warehouse.connect(engine, attempts=4, backoff_s=1.5, max_backoff_s=4.0, sleep=delays.append)
    assert delays == [1.5, 3.0, 4.0]
    message = str(info.value)
    assert "after 4 attempt(s)" in message and "etl:***@127.0.0.1:1/wh" in message
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert len(caplog.records) == 3
    for text in [message, caplog.text]:
        assert PASSWORD not in text and quote(PASSWORD, safe="") not in text


def test_a_transient_failure_is_retried_and_the_extract_succeeds(tmp_path):
    url = f"sqlite:///{tmp_path}/wh.db"
    engine = sa.create_engine(url)
    schema.create_warehouse_tables(engine)
    engine.dispose()
    failures = iter([True, True])

    def flaky(dialect, conn_rec, cargs, cparams):
        if next(failures, False):
            raise sqlite3.OperationalError("database is locked")

    sa.event.listen(sa.Engine, "do_connect", flaky)
    delays: list[float] = []
    try:
        fields = extract_window(url, tmp_path, NIGHT, snapshot_dir=tmp_path / "snapshot",
                                **{**PLAIN_EXTRACT, "connect_attempts": 3, "backoff_s": 0.5}, sleep=delays.append)
    finally:
        sa.event.remove(sa.Engine, "do_connect", flaky)
    assert delays == [0.5, 1.0]
    assert fields["rows"] == {"interactions": 0, "items": 0, "users": 0}


# --------------------------------------------------------------------------- the stage, end to end

def seed_canonical(url: str) -> None:
    engine = sa.create_engine(url)
    schema.create_warehouse_tables(engine)
    t = dt.datetime(2026, 3, 1, 6)
    with engine.begin() as conn:
        conn.execute(schema.users.insert(), [{"user_id": "u1", "attributes": "", "created_at": None}])
        conn.execute(schema.items.insert(), [{"item_id": "a", "title": "A", "categories": "x", "description": "",
                                              "created_at": None}])
        conn.execute(schema.interactions.insert(), [{"event_id": 1, "user_id": "u1", "item_id": "a",
                                                     "event_type": "view", "rating": None, "ts": t}])
    engine.dispose()


def run_stage(tmp_path: Path, env_extra: dict[str, str]) -> subprocess.CompletedProcess:
    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    params["paths"]["extract"] = str(tmp_path / "data" / "extract")
    params["paths"]["snapshot"] = str(tmp_path / "state" / "snapshot")
    params["paths"]["warehouse_url"] = f"sqlite:///{tmp_path}/not-this-one.db"
    params["extract"].update(connect_attempts=2, connect_backoff_s=0.01)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    env = {k: v for k, v in os.environ.items() if k not in ("AIRFLOW_CONN_WAREHOUSE", "RETRAIN_WAREHOUSE_URL")}
    env.update(env_extra, RETRAIN_LOG_LEVEL="DEBUG")
    return subprocess.run([sys.executable, "-m", "tasks.extract", "--params", str(tmp_path / "params.yaml"),
                           "--logical-date", NIGHT.isoformat()], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def files_containing(root: Path, needles: list[str]) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file()
            and any(n.encode() in p.read_bytes() for n in needles)]


def test_the_stage_never_writes_or_logs_the_password(postgres_url, tmp_path):
    seed_canonical(postgres_url)
    plain = sa.make_url(postgres_url)
    needles = [PASSWORD, quote(PASSWORD, safe=""), quote(PASSWORD)]
    uri = f"postgres://{plain.username}:{quote(PASSWORD, safe='')}@{plain.host}:{plain.port}/{plain.database}"
    as_json = json.dumps({"conn_type": "postgres", "host": plain.host, "port": plain.port, "login": plain.username,
                          "password": PASSWORD, "schema": plain.database})
    for env in ({"AIRFLOW_CONN_WAREHOUSE": uri}, {"AIRFLOW_CONN_WAREHOUSE": as_json},
                {"RETRAIN_WAREHOUSE_URL": plain.set(password=PASSWORD).render_as_string(hide_password=False)}):
        done = run_stage(tmp_path, env)
        assert done.returncode == 0, done.stderr[-2000:]
        manifest = json.loads((tmp_path / "data" / "extract" / "manifest.json").read_text())
        assert manifest["rows"] == {"interactions": 1, "items": 1, "users": 1, "group_members": 0, "group_events": 0}
        assert manifest["warehouse"].endswith(f"{plain.username}:***@{plain.host}:{plain.port}/{plain.database}")
        assert "extracted interactions" in done.stderr
        assert not any(n in done.stdout + done.stderr for n in needles)
        assert files_containing(tmp_path, needles) == []


def test_a_warehouse_that_stays_down_fails_the_stage_and_keeps_the_last_extract(postgres_url, tmp_path):
    seed_canonical(postgres_url)
    plain = sa.make_url(postgres_url)
    assert run_stage(tmp_path, {"RETRAIN_WAREHOUSE_URL": postgres_url}).returncode == 0
    before = {"extract": sha256_dir(tmp_path / "data" / "extract"), "snapshot": sha256_dir(tmp_path / "state")}
    down = f"postgres://{plain.username}:{quote(PASSWORD, safe='')}@127.0.0.1:1/{plain.database}"
    done = run_stage(tmp_path, {"AIRFLOW_CONN_WAREHOUSE": down})
    assert done.returncode == 1  # retryable: Airflow tries the task again later
    assert "unreachable after 2 attempt(s)" in done.stderr and ":***@127.0.0.1:1/" in done.stderr
    assert "retrying in" in done.stderr
    assert not any(n in done.stderr for n in (PASSWORD, quote(PASSWORD, safe="")))
    assert {"extract": sha256_dir(tmp_path / "data" / "extract"), "snapshot": sha256_dir(tmp_path / "state")} == before
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["extract"]
