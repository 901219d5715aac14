"""The night's deadline alert: what the triggerer's callback logs and records."""

import asyncio
import json
import logging

from tasks.alerts import night_overdue

CONTEXT = {"dag_run": {"dag_id": "nightly_retrain", "dag_run_id": "manual__2026-03-01T00:00:00+00:00",
                       "logical_date": "2026-03-01T00:00:00Z", "state": "running"},
           "deadline": {"id": "d1", "deadline_time": "2026-03-01T08:00:05+00:00"}}


def test_an_overdue_night_is_logged_and_appended_to_the_sink(tmp_path, monkeypatch, caplog):
    monkeypatch.delenv("RETRAIN_PROJECT_DIR", raising=False)
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "notifications.jsonl").write_text('{"task_id": "extract"}\n')  # an earlier failure stays
    with caplog.at_level(logging.ERROR, logger="retrain.alerts"):
        asyncio.run(night_overdue(CONTEXT, project_dir=str(tmp_path), minutes=480))
    lines = (tmp_path / "state" / "notifications.jsonl").read_text().splitlines()
    assert json.loads(lines[0]) == {"task_id": "extract"}
    alert = json.loads(lines[1])
    assert alert["alert"] == "deadline" and alert["logical_date"] == "2026-03-01"
    assert alert["run_id"] == "manual__2026-03-01T00:00:00+00:00"
    assert alert["summary"] == ("night 2026-03-01 is still running at its deadline 2026-03-01T08:00:05+00:00 "
                                "(480 min after it was queued)")
    assert alert["summary"] in caplog.text


def test_the_worker_s_project_directory_wins_and_no_sink_logs_only(tmp_path, monkeypatch):
    monkeypatch.setenv("RETRAIN_PROJECT_DIR", str(tmp_path / "worker"))
    asyncio.run(night_overdue(CONTEXT, project_dir=str(tmp_path / "parsed")))
    assert (tmp_path / "worker" / "state" / "notifications.jsonl").exists()
    assert not (tmp_path / "parsed").exists()
    asyncio.run(night_overdue(CONTEXT, sink=None, project_dir=str(tmp_path / "none")))
    assert not (tmp_path / "none").exists()
