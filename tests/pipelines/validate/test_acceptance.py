"""Operator acceptances: parsing ``validate.accept`` and the stage's flags, and matching failures."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from pipelines.core.io import NonRetryableError
from pipelines.validate.acceptance import Acceptance, apply_acceptances, flag_acceptances, parse_acceptances
from pipelines.validate.quarantine import quarantine_dir
from pipelines.validate.stage import run_validate
from tests.conftest import shipped_params
from pipelines.validate.validation import Failure, ValidationReport

NIGHT = "2026-03-02"
RATING = Failure("expect_column_values_to_be_between", "interactions", "rating", "9.0", "between 0.5 and 5.0")
USERS = Failure("expect_column_values_to_not_be_null", "interactions", "user_id", "1 null", "none")


def test_flags_become_entries_for_the_night_with_their_actor() -> None:
    entries = flag_acceptances(["expect_column_values_to_be_between:rating", "expect_table_row_count"],
                               "resent batch", "bob", NIGHT)

    assert [(e["expectation"], e["column"], e["logical_date"], e["actor"]) for e in entries] == [
        ("expect_column_values_to_be_between", "rating", NIGHT, "bob"),
        ("expect_table_row_count", None, NIGHT, "bob")]
    assert flag_acceptances(["x"], "why", None, NIGHT)[0]["actor"] == "cli"
    assert flag_acceptances(None, None, None, NIGHT) == []


def test_flags_without_a_reason_are_refused() -> None:
    with pytest.raises(NonRetryableError, match="--accept needs --reason"):
        flag_acceptances(["expect_column_values_to_be_between:rating"], "  ", "bob", NIGHT)


def test_params_entries_take_yaml_dates_and_the_default_actor() -> None:
    [accepted] = parse_acceptances([{"expectation": " e ", "column": "rating", "logical_date": dt.date(2026, 3, 2),
                                     "reason": " why "}])

    assert accepted == Acceptance("e", "rating", NIGHT, "why", "params.yaml")


def test_only_tonights_matching_acceptances_take_failures_off_the_report() -> None:
    report = ValidationReport(success=False, failures=[RATING, USERS], logical_date=NIGHT)
    rating = Acceptance(RATING.expectation, "rating", NIGHT, "why", "alice")
    other_night = Acceptance(USERS.expectation, "user_id", "2026-03-01", "why", "alice")
    unmatched = Acceptance("expect_table_row_count", None, NIGHT, "why", "alice")

    accepted, unused = apply_acceptances(report, [rating, other_night, unmatched], NIGHT)

    assert accepted == [(RATING, rating)] and unused == [unmatched]
    assert report.failures == [USERS] and report.success is False


def test_a_relative_quarantine_sits_under_the_params_directory(tmp_path: Path) -> None:
    assert quarantine_dir("state/quarantine", tmp_path) == tmp_path / "state/quarantine"
    assert quarantine_dir(str(tmp_path / "abs"), Path("/elsewhere")) == tmp_path / "abs"


def test_the_stage_refuses_flags_without_a_reason_before_any_work(tmp_path: Path) -> None:
    params = shipped_params()
    paths = params.paths.updated(extract=str(tmp_path / "extract"), validate=str(tmp_path / "validate"))

    with pytest.raises(NonRetryableError, match="--accept needs --reason"):
        run_validate(NIGHT, params.validation, paths, params_dir=tmp_path, accept=["expect_column_values_to_be_between"])

    assert not (tmp_path / "validate").exists()
