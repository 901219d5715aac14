"""The validate entry point: exit codes, outputs on success and failure, the logical-date guard."""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path

import pandas as pd
import pytest

from pipelines.core import schema
from pipelines.core.io import read_json, sha256_file
from pipelines.validate.validation import require_validated
from tasks.common import EXIT_NON_RETRYABLE, EXIT_OK
from tasks.validate import main
from tests.conftest import write_params

LOGICAL_DATE = "2026-03-02"
END = dt.datetime(2026, 3, 2)
VALIDATE_PARAMS = {"min_rows": 10, "min_interval_rows": 3, "max_staleness_hours": 48,
                   "rating_min": 0.5, "rating_max": 5.0,
                   "volume_nights": 7, "volume_min_nights": 3, "volume_min_ratio": 0.25, "volume_max_ratio": 4.0,
                   "max_user_share": 0.5, "user_share_min_rows": 50, "title_min_chars": 1, "title_max_chars": 256}


def write_extract(directory: Path, *, logical_date: str = LOGICAL_DATE, bad_rating: bool = False) -> None:
    """A minimal clean extract (12 events, 3 users, 4 items); ``bad_rating`` puts one rating at 9."""
    n = 12
    interactions = pd.DataFrame({
        "event_id": pd.Series(range(n), dtype="int64"),
        "user_id": [f"u{i % 3}" for i in range(n)],
        "item_id": [f"i{i % 4}" for i in range(n)],
        "event_type": ["rating", "view"] * (n // 2),
        "rating": pd.Series([9.0 if bad_rating and i == 0 else 4.0 if i % 2 == 0 else None
                             for i in range(n)], dtype="float64"),
        "ts": [END - dt.timedelta(hours=4 * (n - i)) for i in range(n)],
    })
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(4)], "title": ["t"] * 4,
                          "categories": [""] * 4, "description": [""] * 4,
                          "created_at": pd.Series([pd.NaT] * 4, dtype="datetime64[us]")})
    users = pd.DataFrame({"user_id": [f"u{i}" for i in range(3)], "attributes": [""] * 3,
                          "created_at": pd.Series([pd.NaT] * 3, dtype="datetime64[us]")})
    directory.mkdir(parents=True, exist_ok=True)
    for name, frame in {"interactions": interactions, "items": items, "users": users}.items():
        path = schema.extract_table_path(directory, name)
        if path.suffix != ".parquet":  # a directory of day files
            path.mkdir(exist_ok=True)
            path = path / f"{logical_date}.parquet"
        frame.to_parquet(path, index=False)
    (directory / "manifest.json").write_text(json.dumps({
        "logical_date": logical_date,
        "data_interval": {"start": (END - dt.timedelta(days=1)).isoformat(), "end": END.isoformat()},
        "rows": {"interactions": n, "items": 4, "users": 3}}))


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A params.yaml whose extract/validate paths point into tmp_path; returns its path."""
    return write_params(tmp_path, paths={"extract": str(tmp_path / "extract"), "validate": str(tmp_path / "validate")},
                        validate=VALIDATE_PARAMS)


def run(params_path: Path, logical_date: str = LOGICAL_DATE) -> int:
    return main(["--logical-date", logical_date, "--params", str(params_path)])


def test_good_data_exits_0_with_result_docs_and_manifest(project: Path) -> None:
    write_extract(project.parent / "extract")

    assert run(project) == EXIT_OK

    out = project.parent / "validate"
    assert read_json(out / "result.json")["success"] is True
    assert (out / "data_docs" / "index.html").is_file()
    manifest = read_json(out / "manifest.json")
    assert manifest["success"] is True and "result.json" in manifest["files"]
    assert manifest["inputs"]["extract_manifest_sha256"] == sha256_file(project.parent / "extract" / "manifest.json")
    require_validated(out, project.parent / "extract")
    assert not list(project.parent.glob(".validate*")), "staging directories left behind"


def test_bad_data_exits_3_and_still_publishes_its_result(project: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_extract(project.parent / "extract", bad_rating=True)

    with caplog.at_level(logging.ERROR, logger="retrain"):
        assert run(project) == EXIT_NON_RETRYABLE

    out = project.parent / "validate"
    result = read_json(out / "result.json")
    assert result["success"] is False
    assert [(f["expectation"], f["column"]) for f in result["failures"]] == [
        ("expect_column_values_to_be_between", "rating")]
    assert "expect_column_values_to_be_between" in (out / "data_docs" / "index.html").read_text()
    message = " ".join(record.getMessage() for record in caplog.records)
    assert "interactions.rating" in message and "9.0" in message and "0.5 and 5.0" in message
    assert str(out / "result.json") in message  # the summary points at the final, not the staging path


def test_a_failed_rerun_replaces_an_earlier_passing_result(project: Path) -> None:
    write_extract(project.parent / "extract")
    assert run(project) == EXIT_OK
    write_extract(project.parent / "extract", bad_rating=True)

    assert run(project) == EXIT_NON_RETRYABLE

    assert read_json(project.parent / "validate" / "result.json")["success"] is False


def test_extract_of_another_night_is_refused_before_validating(
        project: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_extract(project.parent / "extract", logical_date="2026-03-01")

    with caplog.at_level(logging.ERROR, logger="retrain"):
        assert run(project) == EXIT_NON_RETRYABLE

    message = " ".join(record.getMessage() for record in caplog.records)
    assert "2026-03-01" in message and LOGICAL_DATE in message
    assert not (project.parent / "validate").exists()
