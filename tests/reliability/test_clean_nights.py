"""No false alarms: 30 consecutive clean synthetic nights, drifting as the generator makes them
(group tastes move, users and items keep appearing), all pass validation with the default
thresholds of params.yaml, and each leaves one row in the history.

Only the extract window and the suite run (no profiles, no training), so the test stays fast;
the tiny warehouse is large enough that every drift check runs on every night.
"""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import yaml

from pipelines.extract.extraction import KNOWN_HASHES, extract_window
from pipelines.core.io import write_json
from pipelines.datasets.synthetic import generate_warehouse
from pipelines.validate.validation import DRIFT_CHECKS, history_row, update_history, validate_extract
from tests.conftest import PROJECT_ROOT

# 40 days from 2026-01-01, about 200 events a night (the demo warehouse's size per night).
WAREHOUSE = {"n_users": 300, "n_items": 150, "days": 40, "events_per_user_per_day": 0.8}
FIRST_NIGHT = dt.date(2026, 1, 12)  # 10 full days of history before its interval
NIGHTS = [FIRST_NIGHT + dt.timedelta(days=k) for k in range(30)]  # the last ends with day 40


def test_thirty_clean_nights_pass_with_default_thresholds(tmp_path: Path) -> None:
    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    extract, settings = params["extract"], params["validate"]
    url = f"sqlite:///{tmp_path}/warehouse.db"
    generate_warehouse(url, **{**params["demo_data"], **WAREHOUSE})
    history = tmp_path / "reports" / "validate" / "history.csv"

    for night in NIGHTS:
        extract_dir = tmp_path / "extract" / night.isoformat()
        extract_dir.mkdir(parents=True)
        fields = extract_window(url, extract_dir, night, snapshot_dir=tmp_path / "snapshot",
                                interval_days=int(extract["interval_days"]), window_days=int(extract["window_days"]),
                                lookback_days=int(extract["lookback_days"]), mapping=extract["mapping"],
                                read_workers=1, connect_attempts=1, backoff_s=1.0, max_backoff_s=30.0)
        fields.pop(KNOWN_HASHES)
        write_json(extract_dir / "manifest.json", fields)
        report = validate_extract(extract_dir, tmp_path / "validate" / night.isoformat(), settings, data_docs=False)
        update_history(history, history_row(report))

        assert report.success, report.summary()
        drift = report.statistics["drift"]
        assert sorted(drift["checked"]) == sorted(DRIFT_CHECKS), (night, drift["skipped"])

    with open(history, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["logical_date"] for row in rows] == [night.isoformat() for night in NIGHTS]
    assert all(row["success"] == "True" for row in rows)
    assert all(row[name] != "" for row in rows for name in DRIFT_CHECKS)
    # The generator's drift is real: the nights are not copies of one another.
    assert len({row["popularity_js"] for row in rows}) > 1
    # The clean figures the README quotes (run with -s to see them).
    print("largest clean distances:", {name: round(max(float(row[name]) for row in rows), 3) for name in DRIFT_CHECKS})
