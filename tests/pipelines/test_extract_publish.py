"""Extract reads the night's window and only what was known before its end."""

import datetime as dt

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
import yaml

from pipelines import extract as extract_module
from pipelines import schema
from pipelines.extract import data_interval, extract_window, redact_url
from tasks import extract as extract_task
from tests.conftest import PROJECT_ROOT


@pytest.fixture
def warehouse(tmp_path):
    url = f"sqlite:///{tmp_path}/w.db"
    engine = sa.create_engine(url)
    schema.create_warehouse_tables(engine)
    t = dt.datetime(2026, 3, 1)
    with engine.begin() as conn:
        conn.execute(schema.users.insert(), [{"user_id": "u1", "attributes": "", "created_at": None}])
        conn.execute(schema.items.insert(), [
            {"item_id": "a", "title": "A", "categories": "x", "description": "", "created_at": None},
            {"item_id": "late", "title": "L", "categories": "x", "description": "", "created_at": t},
        ])
        conn.execute(schema.interactions.insert(), [
            {"event_id": 1, "user_id": "u1", "item_id": "a", "event_type": "view", "rating": None,
             "ts": t - dt.timedelta(days=3)},
            {"event_id": 2, "user_id": "u1", "item_id": "a", "event_type": "like", "rating": None,
             "ts": t - dt.timedelta(hours=1)},
            {"event_id": 3, "user_id": "u1", "item_id": "late", "event_type": "view", "rating": None, "ts": t},
        ])
    engine.dispose()
    return url


def test_data_interval_is_the_day_before_the_logical_date():
    assert data_interval(dt.date(2026, 3, 2), 1) == (dt.datetime(2026, 3, 1), dt.datetime(2026, 3, 2))
    with pytest.raises(ValueError, match="interval_days"):
        data_interval(dt.date(2026, 3, 2), 0)


def test_extract_reads_only_what_is_known_before_the_interval_end(warehouse, tmp_path):
    out = tmp_path / "extract"
    out.mkdir()
    fields = extract_window(warehouse, out, dt.date(2026, 3, 1), interval_days=1, window_days=0)
    events = pq.read_table(out / "interactions.parquet").to_pandas()
    assert list(events["event_id"]) == [1, 2]
    assert list(pq.read_table(out / "items.parquet").to_pandas()["item_id"]) == ["a"]
    assert fields["rows"] == {"interactions": 2, "items": 1, "users": 1}
    windowed = extract_window(warehouse, out, dt.date(2026, 3, 1), interval_days=1, window_days=2)
    assert windowed["rows"]["interactions"] == 1


def test_redacted_url_hides_the_password():
    assert "s3cret" not in redact_url("postgresql://user:s3cret@db:5432/wh")



def test_a_stage_failing_after_some_writes_leaves_the_last_extract(warehouse, tmp_path, monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_WAREHOUSE", raising=False)
    monkeypatch.delenv("RETRAIN_WAREHOUSE_URL", raising=False)
    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    out = tmp_path / "data" / "extract"
    params["paths"].update(extract=str(out), warehouse_url=warehouse)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    argv = ["--params", str(tmp_path / "params.yaml"), "--logical-date", "2026-03-02"]
    assert extract_task.main(argv) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real_copy, written = extract_module.copy_query_to_parquet, []

    def copy_then_fail(conn, query, path, *args, **kwargs):
        if written:
            raise OSError("disk full")
        written.append(real_copy(conn, query, path, *args, **kwargs))
        return written[-1]

    monkeypatch.setattr(extract_module, "copy_query_to_parquet", copy_then_fail)
    assert extract_task.main(argv) == 1
    assert written == [3]  # the failure came after interactions.parquet was written
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in out.parent.iterdir()) == ["extract"]
