"""Extract reads the night's window and only what was known before its end."""

import datetime as dt
import errno

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
import yaml

from pipelines.extract import extraction as extract_module
from pipelines.core import schema
from pipelines.extract.extraction import data_interval, extract_window, redact_url
from pipelines.core.io import sha256_dir
from tasks import extract as extract_task
from tests.conftest import PLAIN_EXTRACT, PROJECT_ROOT


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
    fields = extract_window(warehouse, out, dt.date(2026, 3, 1), snapshot_dir=tmp_path / "snapshot",
                            **PLAIN_EXTRACT)
    events = pq.read_table(out / "interactions").to_pandas()
    assert list(events["event_id"]) == [1, 2]
    assert list(pq.read_table(out / "items.parquet").to_pandas()["item_id"]) == ["a"]
    assert fields["rows"] == {"interactions": 2, "items": 1, "users": 1}
    windowed = extract_window(warehouse, tmp_path / "windowed", dt.date(2026, 3, 1), snapshot_dir=tmp_path / "snapshot",
                              **{**PLAIN_EXTRACT, "window_days": 2})
    assert windowed["rows"]["interactions"] == 1


def test_redacted_url_hides_the_password():
    assert "s3cret" not in redact_url("postgresql://user:s3cret@db:5432/wh")



@pytest.mark.parametrize("error, exit_code", [
    (ConnectionResetError(errno.ECONNRESET, "connection reset by the warehouse"), 1),  # transient: retried
    (OSError(errno.ENOSPC, "No space left on device"), 3),  # a full disk: no retry mends it
])
def test_a_stage_failing_after_some_writes_leaves_the_last_extract_and_the_snapshot(warehouse, tmp_path,
                                                                                      monkeypatch, error, exit_code):
    monkeypatch.delenv("AIRFLOW_CONN_WAREHOUSE", raising=False)
    monkeypatch.delenv("RETRAIN_WAREHOUSE_URL", raising=False)
    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    out, snapshot = tmp_path / "data" / "extract", tmp_path / "state" / "snapshot"
    params["paths"].update(extract=str(out), snapshot=str(snapshot), warehouse_url=warehouse)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    argv = ["--params", str(tmp_path / "params.yaml"), "--logical-date", "2026-03-02"]
    assert extract_task.main(argv) == 0
    before = {"extract": sha256_dir(out), "snapshot": sha256_dir(snapshot)}
    real_read, staged = extract_module._read_dimension, []

    def read_then_fail(source, table, *args, **kwargs):
        if table == "users":  # events and items are staged by now
            staged.extend(p.relative_to(snapshot) for p in snapshot.glob(".staging-*/*"))
            raise error
        return real_read(source, table, *args, **kwargs)

    monkeypatch.setattr(extract_module, "_read_dimension", read_then_fail)
    # The next night reads a new day, so the snapshot would change had the stage finished.
    assert extract_task.main([*argv[:-1], "2026-03-03"]) == exit_code
    assert staged, "the failure should come after day files were staged"
    assert {"extract": sha256_dir(out), "snapshot": sha256_dir(snapshot)} == before
    assert sorted(p.name for p in out.parent.iterdir()) == ["extract"]
    assert not list(snapshot.glob(".staging-*"))
