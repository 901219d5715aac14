"""The validation suite on tiny extracts: a clean one passes, each kind of bad data fails by name.

GX takes seconds to warm up, so the failure cases skip the Data Docs build (one run each) and
only two runs render HTML.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from pipelines.core import schema
from pipelines.core.io import NonRetryableError, read_json, sha256_file
from pipelines.validate.validation import (
    HISTORY_FIELDS,
    NIGHT_ASSET,
    build_expectations,
    drift_plan,
    history_row,
    night_stats,
    require_validated,
    update_history,
    validate_extract,
)

LOGICAL_DATE = "2026-03-02"
START = dt.datetime(2026, 3, 1)
END = dt.datetime(2026, 3, 2)
N_EVENTS = 30  # every 2 hours back from END: 12 inside the night's interval, newest END - 2 h
PARAMS = {"min_rows": 20, "min_interval_rows": 5, "max_staleness_hours": 48,
          "rating_min": 0.5, "rating_max": 5.0,
          "volume_nights": 7, "volume_min_nights": 3, "volume_min_ratio": 0.25, "volume_max_ratio": 4.0,
          "max_user_share": 0.5, "user_share_min_rows": 50, "title_min_chars": 1, "title_max_chars": 256,
          "drift": {"min_rows": 50, "popularity_smoothing": 0.5, "max_event_mix_tv": 0.2, "max_popularity_js": 0.25,
                    "max_activity_js": 0.15, "new_share_min_nights": 7, "max_new_user_share": 0.5,
                    "max_new_item_share": 0.5}}

Frames = dict[str, pd.DataFrame]


def clean_frames() -> Frames:
    """A consistent extract: 5 users (all older than their events), 7 items, 30 events of every type over 60 hours."""
    event_types = [schema.EVENT_TYPES[i % len(schema.EVENT_TYPES)] for i in range(N_EVENTS)]
    interactions = pd.DataFrame({
        "event_id": pd.Series(range(N_EVENTS), dtype="int64"),
        "user_id": [f"u{i % 5}" for i in range(N_EVENTS)],
        "item_id": [f"i{i % 7}" for i in range(N_EVENTS)],
        "event_type": event_types,
        "rating": [4.5 if kind == "rating" else None for kind in event_types],
        "ts": [END - dt.timedelta(hours=2 * (N_EVENTS - i)) for i in range(N_EVENTS)],
    })
    interactions["rating"] = interactions["rating"].astype("float64")
    items = pd.DataFrame({
        "item_id": [f"i{i}" for i in range(7)], "title": [f"Item {i}" for i in range(7)],
        "categories": ["a|b"] * 7, "description": [""] * 7,
        "created_at": pd.Series([pd.NaT] * 7, dtype="datetime64[us]"),
    })
    users = pd.DataFrame({
        "user_id": [f"u{i}" for i in range(5)], "attributes": ["age 30"] * 5,
        "created_at": pd.Series([START - dt.timedelta(days=30)] * 5, dtype="datetime64[us]"),
    })
    return {"interactions": interactions, "items": items, "users": users}


def write_extract(directory: Path, frames: Frames, logical_date: str = LOGICAL_DATE) -> Path:
    """Writes the extract stage's contract: three Parquet files and manifest.json."""
    directory.mkdir(parents=True, exist_ok=True)
    for table, frame in frames.items():
        path = schema.extract_table_path(directory, table)
        if path.suffix != ".parquet":  # a directory of day files
            path.mkdir(exist_ok=True)
            path = path / f"{logical_date}.parquet"
        frame.to_parquet(path, index=False)
    manifest = {"logical_date": logical_date,
                "data_interval": {"start": START.isoformat(), "end": END.isoformat()},
                "rows": {table: len(frame) for table, frame in frames.items()}}
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return directory


# --- the failure modes -------------------------------------------------------------------------


def _set(table: str, row: int, column: str, value: Any) -> Callable[[Frames], None]:
    def mutate(frames: Frames) -> None:
        frames[table].loc[frames[table].index[row], column] = value
    return mutate


def _duplicate_event(frames: Frames) -> None:
    copy = frames["interactions"].iloc[[0]].assign(event_id=1000)
    frames["interactions"] = pd.concat([frames["interactions"], copy], ignore_index=True)


def _duplicate_event_id(frames: Frames) -> None:
    frames["interactions"].loc[1, "event_id"] = frames["interactions"].loc[0, "event_id"]


def _duplicate_item(frames: Frames) -> None:
    frames["items"] = pd.concat([frames["items"], frames["items"].iloc[[0]]], ignore_index=True)


def _drop(table: str, column: str) -> Callable[[Frames], None]:
    def mutate(frames: Frames) -> None:
        frames[table] = frames[table].drop(columns=[column])
    return mutate


def _rename(table: str, old: str, new: str) -> Callable[[Frames], None]:
    def mutate(frames: Frames) -> None:
        frames[table] = frames[table].rename(columns={old: new})
    return mutate


def _add_column(frames: Frames) -> None:
    frames["users"]["email"] = "x@example.com"


def _event_id_as_float(frames: Frames) -> None:
    frames["interactions"]["event_id"] = frames["interactions"]["event_id"].astype("float64")


def _future_row(frames: Frames) -> None:
    frames["interactions"].loc[N_EVENTS - 1, "ts"] = END + dt.timedelta(hours=1)


def _tz_aware_ts(frames: Frames) -> None:
    frames["interactions"]["ts"] = frames["interactions"]["ts"].dt.tz_localize("UTC")


def _stale(frames: Frames) -> None:
    frames["interactions"]["ts"] -= dt.timedelta(days=10)


def _one_user_night(frames: Frames) -> None:
    """9 of the night's 12 events (the last 12 rows) from user u1."""
    interactions = frames["interactions"]
    interactions.loc[interactions.index[-12:-3], "user_id"] = "u1"


def _drop_half_of_night(frames: Frames) -> None:
    frames["interactions"] = frames["interactions"].drop(frames["interactions"].index[-12::2])


def _night_all_purchases(frames: Frames) -> None:
    """A tracking change: every event of the night (the last 12 rows) logged as a purchase."""
    frames["interactions"].loc[frames["interactions"].index[-12:], "event_type"] = "purchase"


def _night_on_new_items(frames: Frames) -> None:
    """The night's events all on items that no earlier event mentions (re-keyed ids, say)."""
    new = pd.DataFrame({"item_id": ["n0", "n1", "n2"], "title": ["New 0", "New 1", "New 2"], "categories": "a",
                        "description": "", "created_at": pd.Series([pd.NaT] * 3, dtype="datetime64[us]")})
    frames["items"] = pd.concat([frames["items"], new], ignore_index=True)
    interactions = frames["interactions"]
    interactions.loc[interactions.index[-12:], "item_id"] = [f"n{i % 3}" for i in range(12)]


def _drift(**overrides: Any) -> dict[str, Any]:
    """Drift checks on the tiny nights (12 events each), with some thresholds changed."""
    return {"drift": {**PARAMS["drift"], "min_rows": 5, **overrides}}


def _nothing(frames: Frames) -> None:
    """The data stays clean; the case changes a threshold instead."""


EVENT_KEY_COLUMNS = "user_id,item_id,event_type,ts"
# id: (mutation, params override, {(expectation, table, column) that must fail and nothing else},
#      text the failure's "observed" of the first listed expectation must contain)
CASES: dict[str, tuple[Callable[[Frames], None], dict[str, Any], list[tuple[str, str, str | None]], str]] = {
    "null_user_id": (_set("interactions", 0, "user_id", None), {},
                     [("expect_column_values_to_not_be_null", "interactions", "user_id")], "1 of 30"),
    "null_title": (_set("items", 2, "title", None), {},
                   [("expect_column_values_to_not_be_null", "items", "title")], "1 of 7"),
    "unknown_event_type": (_set("interactions", 3, "event_type", "hover"), {},
                           [("expect_column_values_to_be_in_set", "interactions", "event_type")], "hover"),
    "rating_out_of_range": (_set("interactions", 4, "rating", 7.5), {},
                            [("expect_column_values_to_be_between", "interactions", "rating")], "7.5"),
    "duplicate_event": (_duplicate_event, {},
                        [("expect_compound_columns_to_be_unique", "interactions", EVENT_KEY_COLUMNS)], "2 of 31"),
    "duplicate_event_id": (_duplicate_event_id, {},
                           [("expect_column_values_to_be_unique", "interactions", "event_id")], "2 of 30"),
    "duplicate_item_id": (_duplicate_item, {},
                          [("expect_column_values_to_be_unique", "items", "item_id")], "i0"),
    "orphan_item": (_set("interactions", 5, "item_id", "i999"), {},
                    [("expect_column_values_to_be_null", "interactions", "item_id")], "i999"),
    "orphan_user": (_set("interactions", 6, "user_id", "u999"), {},
                    [("expect_column_values_to_be_null", "interactions", "user_id")], "u999"),
    "missing_column": (_drop("interactions", "rating"), {},
                       [("expect_table_columns_to_match_set", "interactions", None),
                        ("expect_column_values_to_be_of_type", "interactions", "rating"),
                        ("expect_column_values_to_be_between", "interactions", "rating")], "missing ['rating']"),
    "renamed_column": (_rename("items", "title", "name"), {},
                       [("expect_table_columns_to_match_set", "items", None),
                        ("expect_column_values_to_be_of_type", "items", "title"),
                        ("expect_column_values_to_not_be_null", "items", "title"),
                        ("expect_column_values_to_not_match_regex", "items", "title"),
                        ("expect_column_value_lengths_to_be_between", "items", "title")], "unexpected ['name']"),
    "extra_column": (_add_column, {},
                     [("expect_table_columns_to_match_set", "users", None)], "unexpected ['email']"),
    "wrong_type": (_event_id_as_float, {},
                   [("expect_column_values_to_be_of_type", "interactions", "event_id")], "float64"),
    "tz_aware_ts": (_tz_aware_ts, {},
                    [("expect_column_values_to_be_of_type", "interactions", "ts"),
                     ("expect_column_max_to_be_between", "interactions", "ts"),
                     ("expect_column_max_to_be_between", "interactions", "ts"),
                     ("expect_table_row_count_to_be_between", "interactions", "ts")], "Timestamp"),
    "future_timestamp": (_future_row, {},
                         [("expect_column_max_to_be_between", "interactions", "ts")], "2026-03-02 01:00"),
    "stale_data": (_stale, {},
                   [("expect_column_max_to_be_between", "interactions", "ts"),
                    ("expect_table_row_count_to_be_between", "interactions", "ts")], "2026-02-19"),
    "too_few_rows": (_nothing, {"min_rows": 31},
                     [("expect_table_row_count_to_be_between", "interactions", None)], "30"),
    "too_few_interval_rows": (_nothing, {"min_interval_rows": 13},
                              [("expect_table_row_count_to_be_between", "interactions", "ts")], "12"),
    "empty_title": (_set("items", 1, "title", ""), {},
                    [("expect_column_value_lengths_to_be_between", "items", "title")], "1 of 7"),
    "oversized_title": (_set("items", 1, "title", "x" * 300), {},
                        [("expect_column_value_lengths_to_be_between", "items", "title")], "xxxx"),
    "replacement_character": (_set("items", 2, "description", "K\ufffdo"), {},
                              [("expect_column_values_to_not_match_regex", "items", "description")], "K\ufffdo"),
    "control_character": (_set("users", 0, "attributes", "age\x0030"), {},
                          [("expect_column_values_to_not_match_regex", "users", "attributes")], "1 of 5"),
    "event_before_user_created": (_set("users", 0, "created_at", END), {},
                                  [("expect_column_values_to_be_null", "interactions", "ts")], "u0"),
    "bot_share": (_one_user_night, {"user_share_min_rows": 5},
                  [("expect_column_max_to_be_between", "interactions", "user_id")], "user u1: 9 of 12"),
    # 2 earlier intervals: [END-48h, END-24h) holds 12 events, [END-72h, END-48h) the 6 from END-60h on.
    "volume_above_band": (_nothing, {"volume_min_nights": 2, "volume_max_ratio": 1.2},
                          [("expect_column_max_to_be_between", "interactions", None)], "12 rows vs median 9"),
    "volume_below_band": (_drop_half_of_night, {"volume_min_nights": 2, "volume_min_ratio": 0.8},
                          [("expect_column_max_to_be_between", "interactions", None)], "6 rows vs median 9"),
    "event_mix_drift": (_night_all_purchases, _drift(),
                        [("expect_column_max_to_be_between", "interactions", "event_type")], "0.8333"),
    # 2 earlier nights in the extract: the new-share check is told to need only 2.
    "new_items_drift": (_night_on_new_items, _drift(new_share_min_nights=2, max_popularity_js=1.0),
                        [("expect_column_max_to_be_between", "interactions", "item_id")], "1.0"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_failure_mode_fails_by_name(case: str, tmp_path: Path) -> None:
    mutate, overrides, expected, observed_text = CASES[case]
    frames = clean_frames()
    mutate(frames)
    extract = write_extract(tmp_path / "extract", frames)

    report = validate_extract(extract, tmp_path / "out", {**PARAMS, **overrides}, data_docs=False)

    assert report.success is False
    failed = [(f.expectation, f.table, f.column) for f in report.failures]
    assert sorted(failed, key=str) == sorted(expected, key=str)
    assert failed[0] == expected[0], "the root cause should lead the report"
    first = next(f for f in report.failures if (f.expectation, f.table, f.column) == expected[0])
    assert observed_text in first.observed
    assert first.expected  # the threshold in words
    result = read_json(tmp_path / "out" / "result.json")
    assert result["success"] is False
    assert {(f["expectation"], f["table"], f["column"]) for f in result["failures"]} == set(expected)
    summary = report.summary()
    assert "FAILED" in summary and expected[0][0] in summary and observed_text in summary


def test_night_checks_wait_for_a_baseline_and_enough_events() -> None:
    interactions = clean_frames()["interactions"]
    night = night_stats(interactions, START, END, nights=7)
    # Earlier intervals: [END-48h, END-24h) and [END-72h, END-48h); the one before starts a day
    # before the oldest event (END-60h), so it is not counted as an empty night.
    assert night is not None and (night.rows, night.earlier, night.baseline) == (12, (12, 6), 9.0)
    assert (night.top_user_rows, night.top_user_share) == (3, 0.25)

    def night_checks(**overrides: Any) -> list[str]:
        suites = build_expectations({**PARAMS, **overrides}, START, END, night)
        return [e.meta["expected"].split(":")[0] for e in suites.get(NIGHT_ASSET, [])]

    assert night_checks() == []  # 2 earlier nights < 3, 12 events < 50
    assert night_checks(volume_min_nights=2, user_share_min_rows=12) == ["volume", "bot share"]


# --- full runs with Data Docs ------------------------------------------------------------------


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Any]:
    root = tmp_path_factory.mktemp("clean")
    extract = write_extract(root / "extract", clean_frames())
    report = validate_extract(extract, root / "validate", PARAMS)
    return extract, root / "validate", report


@pytest.fixture(scope="module")
def bad_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Any]:
    root = tmp_path_factory.mktemp("bad")
    frames = clean_frames()
    _set("interactions", 5, "item_id", "i999")(frames)
    _set("interactions", 4, "rating", 9.0)(frames)
    extract = write_extract(root / "extract", frames)
    report = validate_extract(extract, root / "validate", PARAMS)
    return extract, root / "validate", report


def test_clean_extract_passes_and_records_what_it_saw(clean_run: tuple[Path, Path, Any]) -> None:
    extract, out, report = clean_run
    assert report.success, report.summary()
    assert report.failures == []
    result = read_json(out / "result.json")
    assert result["success"] is True
    assert result["logical_date"] == LOGICAL_DATE
    assert result["extract_manifest_sha256"] == sha256_file(extract / "manifest.json")
    stats = result["statistics"]
    assert (stats["interactions_rows"], stats["items_rows"], stats["users_rows"]) == (N_EVENTS, 7, 5)
    assert stats["interval_rows"] == 12
    assert stats["newest_ts"] == (END - dt.timedelta(hours=2)).isoformat()
    assert len(result["results"]) == report.expectations_run > 30
    drift = stats["drift"]  # computed and stored, but 12 events are too few to judge drift on
    assert (drift["rows"], drift["previous_rows"], drift["event_mix_tv"]) == (12, 12, 0.1667)
    assert drift["checked"] == [] and "fewer than validate.drift.min_rows=50" in drift["skipped"]["popularity_js"]
    assert all(entry["success"] for entry in result["results"])
    assert (out / "data_docs" / "index.html").is_file()
    assert "PASSED" in report.summary()


def test_data_docs_name_the_failing_expectation(bad_run: tuple[Path, Path, Any]) -> None:
    _, out, report = bad_run
    assert not report.success
    index = (out / "data_docs" / "index.html").read_text()
    assert "Validation FAILED" in index
    assert "expect_column_values_to_be_between" in index and "rating" in index
    assert "i999" in index
    # GX's own page for the interactions run, linked from the index, shows the unexpected value.
    pages = list((out / "data_docs" / "validations" / "interactions").rglob("*.html"))
    assert len(pages) == 1
    assert pages[0].relative_to(out / "data_docs").as_posix() in index
    assert "9.0" in pages[0].read_text()


def test_summary_names_expectation_table_column_observed_and_threshold(bad_run: tuple[Path, Path, Any]) -> None:
    summary = bad_run[2].summary()
    rating_line = next(line for line in summary.splitlines() if "interactions.rating" in line)
    assert "expect_column_values_to_be_between" in rating_line
    assert "9.0" in rating_line and "between 0.5 and 5.0" in rating_line
    item_line = next(line for line in summary.splitlines() if "interactions.item_id" in line)
    assert "i999" in item_line and "items.item_id" in item_line


# --- require_validated -------------------------------------------------------------------------


def _copy_run(run: tuple[Path, Path, Any], tmp_path: Path) -> tuple[Path, Path]:
    extract, out = tmp_path / "extract", tmp_path / "validate"
    shutil.copytree(run[0], extract)
    shutil.copytree(run[1], out)
    return extract, out


def test_require_validated_accepts_a_passing_result_on_the_same_extract(clean_run, tmp_path: Path) -> None:
    extract, out = _copy_run(clean_run, tmp_path)
    require_validated(out, extract)


def test_require_validated_rejects_a_result_about_another_extract(clean_run, tmp_path: Path) -> None:
    extract, out = _copy_run(clean_run, tmp_path)
    manifest = read_json(extract / "manifest.json")
    manifest["rows"]["interactions"] += 1  # a re-extract: new manifest, old verdict
    (extract / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(NonRetryableError, match="another extract"):
        require_validated(out, extract)


def test_require_validated_rejects_a_failed_or_missing_result(bad_run, tmp_path: Path) -> None:
    extract, out = _copy_run(bad_run, tmp_path)
    with pytest.raises(NonRetryableError, match="failed"):
        require_validated(out, extract)
    (out / "result.json").unlink()
    with pytest.raises(NonRetryableError, match="no validation result"):
        require_validated(out, extract)


def test_missing_extract_file_is_not_retryable(tmp_path: Path) -> None:
    extract = write_extract(tmp_path / "extract", clean_frames())
    (extract / "users.parquet").unlink()
    with pytest.raises(NonRetryableError, match="users.parquet"):
        validate_extract(extract, tmp_path / "out", PARAMS, data_docs=False)


# --- drift skips and the history ---------------------------------------------------------------


def test_drift_is_skipped_with_a_reason_without_a_previous_night() -> None:
    interactions = clean_frames()["interactions"]
    # A 3-day interval: the one before it starts before the oldest event's day.
    plan = drift_plan(interactions, END - dt.timedelta(days=3), END, PARAMS)
    assert plan.checked == {} and set(plan.skipped.values()) == {"no previous night in the extract"}
    plan = drift_plan(interactions, START, END, {**PARAMS, **_drift()})
    assert sorted(plan.checked) == ["activity_js", "event_mix_tv", "popularity_js"]
    assert "2 earlier nights" in plan.skipped["new_user_share"]
    assert drift_plan(interactions, START, END, {k: v for k, v in PARAMS.items() if k != "drift"}).checked == {}


def test_history_keeps_one_row_per_date_sorted(clean_run: tuple[Path, Path, Any], tmp_path: Path) -> None:
    report = clean_run[2]
    path = tmp_path / "reports" / "validate" / "history.csv"
    row = history_row(report)
    assert row["logical_date"] == LOGICAL_DATE and row["event_mix_tv"] == 0.1667 and row["new_user_share"] == 0.0
    update_history(path, {**row, "logical_date": "2026-03-05"})
    update_history(path, {**row, "success": False, "volume_ratio": None})
    rows = update_history(path, row)  # a rerun of 2026-03-02 replaces its row
    assert [r["logical_date"] for r in rows] == [LOGICAL_DATE, "2026-03-05"]
    assert rows[0]["success"] == "True" and rows[0]["event_mix_tv"] == "0.1667"
    assert path.read_text().splitlines()[0].split(",") == HISTORY_FIELDS
    assert not [p for p in path.parent.iterdir() if p.name != "history.csv"], "temp files left behind"
    path.write_text("date,x\n2026-03-01,1\n")
    with pytest.raises(NonRetryableError, match="no logical_date column"):
        update_history(path, row)
