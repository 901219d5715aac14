""""No interactions dated in the future": judged from the extract manifest's extracted_at and future_rows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pipelines.core.io import NonRetryableError, read_json
from pipelines.validate.validation import FUTURE_ASSET, validate_extract
from tests.pipelines.validate.test_validation import PARAMS, clean_frames, write_extract

EXTRACTED_AT = "2026-03-02T03:15:00"
FUTURE = ("expect_column_max_to_be_between", "interactions", "ts")


def extract_with(tmp_path: Path, **fields: Any) -> Path:
    """A clean extract whose manifest also carries ``fields`` (as the extract stage writes them)."""
    extract = write_extract(tmp_path / "extract", clean_frames())
    manifest = read_json(extract / "manifest.json")
    (extract / "manifest.json").write_text(json.dumps({**manifest, **fields}))
    return extract


def future_entries(out: Path) -> list[dict[str, Any]]:
    return [entry for entry in read_json(out / "result.json")["results"] if entry["asset"] == FUTURE_ASSET]


def test_rows_dated_after_the_extraction_fail_the_night_with_count_and_time(tmp_path: Path) -> None:
    extract = extract_with(tmp_path, extracted_at=EXTRACTED_AT, future_rows=3)

    report = validate_extract(extract, tmp_path / "out", PARAMS, data_docs=False)

    assert report.success is False
    assert [(f.expectation, f.table, f.column) for f in report.failures] == [FUTURE]
    line = next(line for line in report.summary().splitlines() if line.startswith("  - interactions.ts"))
    assert "observed 3 (3 warehouse rows dated after extracted_at 2026-03-02T03:15:00)" in line
    assert "no interactions dated in the future" in line
    assert read_json(tmp_path / "out" / "result.json")["statistics"]["future"] == {
        "extracted_at": EXTRACTED_AT, "future_rows": 3, "checked": True, "skipped": None}


def test_no_future_rows_passes_and_the_check_ran(tmp_path: Path) -> None:
    extract = extract_with(tmp_path, extracted_at="2026-03-02T03:15:00+00:00", future_rows=0)

    report = validate_extract(extract, tmp_path / "out", PARAMS, data_docs=False)

    assert report.success, report.summary()
    [entry] = future_entries(tmp_path / "out")
    assert entry["success"] and entry["column"] == "ts" and entry["observed"].startswith("0 (")
    assert report.statistics["future"]["extracted_at"] == EXTRACTED_AT  # tz-aware text read as naive UTC
    assert "skipped" not in report.summary()


@pytest.mark.parametrize("fields, missing", [({}, "extracted_at or future_rows"),
                                             ({"extracted_at": EXTRACTED_AT}, "future_rows")])
def test_an_older_manifest_skips_the_check_and_says_so(tmp_path: Path, fields: dict[str, Any], missing: str) -> None:
    extract = extract_with(tmp_path, **fields)

    report = validate_extract(extract, tmp_path / "out", PARAMS, data_docs=False)

    assert report.success, report.summary()
    assert future_entries(tmp_path / "out") == []
    future = report.statistics["future"]
    assert future["checked"] is False and f"has no {missing}" in future["skipped"]
    assert f"skipped: no interactions dated in the future: the extract manifest has no {missing}" in report.summary()


@pytest.mark.parametrize("fields, words", [({"extracted_at": EXTRACTED_AT, "future_rows": "3"}, "future_rows"),
                                           ({"extracted_at": EXTRACTED_AT, "future_rows": -1}, "future_rows"),
                                           ({"extracted_at": "last night", "future_rows": 0}, "extracted_at")])
def test_an_unreadable_field_is_a_broken_manifest(tmp_path: Path, fields: dict[str, Any], words: str) -> None:
    extract = extract_with(tmp_path, **fields)
    with pytest.raises(NonRetryableError, match=rf"manifest\.json: {words} must be"):
        validate_extract(extract, tmp_path / "out", PARAMS, data_docs=False)
