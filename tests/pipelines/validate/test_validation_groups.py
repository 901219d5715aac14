"""Validation of the optional group tables: a clean extract passes, each kind of bad group data fails
naming the rows and their count, and an extract without groups runs no group check."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from pipelines.core.io import NonRetryableError, read_json
from pipelines.validate.groups import group_check_frames
from pipelines.validate.validation import validate_extract
from tests.pipelines.validate.test_validation import END, PARAMS, START, Frames, clean_frames, write_extract

GROUP_ASSETS = {"group_members", "group_events", "group_members_integrity", "group_events_integrity"}


def times(*values: dt.datetime | None) -> pd.Series:
    return pd.Series(values, dtype="datetime64[us]")


def frames_with_groups() -> Frames:
    """The clean extract plus two households of its users, and a few events each while they are members."""
    frames = clean_frames()
    frames["group_members"] = pd.DataFrame({
        "group_id": ["g1", "g1", "g2", "g2"], "user_id": ["u0", "u1", "u2", "u3"],
        "joined_at": times(None, START - dt.timedelta(days=5), START - dt.timedelta(days=5), None),
        "left_at": times(None, None, END - dt.timedelta(hours=1), None),
    })
    frames["group_events"] = pd.DataFrame({
        "group_id": ["g1", "g2", "g1", "g2"], "item_id": ["i1", "i2", "i3", "i4"],
        "event_type": ["view", "purchase", "like", "click"],
        "ts": times(*(START + dt.timedelta(hours=h) for h in (1, 2, 3, 4))),
    })
    return frames


def validate(tmp_path: Path, frames: Frames) -> tuple[bool, list[str], set[str]]:
    """The verdict, the failure lines and the GX assets that ran."""
    extract = write_extract(tmp_path / "extract", frames)
    report = validate_extract(extract, tmp_path / "validate", PARAMS, data_docs=False)
    assets = {entry["asset"] for entry in read_json(tmp_path / "validate" / "result.json")["results"]}
    return report.success, [failure.line() for failure in report.failures], assets


def test_a_clean_extract_with_groups_passes_and_runs_the_group_checks(tmp_path: Path) -> None:
    success, failures, assets = validate(tmp_path, frames_with_groups())
    assert success, failures
    assert GROUP_ASSETS <= assets


def test_an_extract_without_groups_runs_no_group_check(tmp_path: Path) -> None:
    success, failures, assets = validate(tmp_path, clean_frames())
    assert success, failures
    assert not GROUP_ASSETS & assets


def _add_member(group_id: str, user_id: str, joined: dt.datetime | None = None,
                left: dt.datetime | None = None) -> Callable[[Frames], None]:
    def mutate(frames: Frames) -> None:
        row = pd.DataFrame({"group_id": [group_id], "user_id": [user_id], "joined_at": times(joined),
                            "left_at": times(left)})
        frames["group_members"] = pd.concat([frames["group_members"], row], ignore_index=True)
    return mutate


def _add_event(group_id: str, hour: int, event_type: str = "view") -> Callable[[Frames], None]:
    def mutate(frames: Frames) -> None:
        row = pd.DataFrame({"group_id": [group_id], "item_id": ["i0"], "event_type": [event_type],
                            "ts": times(START + dt.timedelta(hours=hour))})
        frames["group_events"] = pd.concat([frames["group_events"], row], ignore_index=True)
    return mutate


# case: (corruption, (where, expectation, text the failure line contains))
CASES: dict[str, tuple[Callable[[Frames], None], tuple[str, str, str]]] = {
    "member_unknown_user": (_add_member("g1", "u99"), (
        "group_members.user_id", "expect_column_values_to_be_null",
        "observed 1 of 5 rows unexpected, e.g. ['g1/u99']")),
    "duplicate_membership": (  # u1 in g1 again while the first membership is still open
        _add_member("g1", "u1", START - dt.timedelta(days=1)), (
            "group_members.group_id,user_id", "expect_column_values_to_be_null",
            "1 of 5 rows unexpected, e.g. ['g1/u1']")),
    "unknown_group": (_add_event("g7", 5), (
        "group_events.group_id", "expect_column_values_to_be_null",
        "1 of 5 rows unexpected, e.g. ['g7@2026-03-01T05:00:00']; expected every group event's group_id listed")),
    "empty_group": (  # g3's only member left before its event
        lambda frames: (_add_member("g3", "u4", None, START)(frames), _add_event("g3", 6)(frames)), (
            "group_events.group_id", "expect_column_values_to_be_null",
            "1 of 5 rows unexpected, e.g. ['g3@2026-03-01T06:00:00']; expected no empty group")),
    "unknown_event_type": (_add_event("g1", 7, "hover"), (
        "group_events.event_type", "expect_column_values_to_be_in_set", "1 of 5 rows unexpected, e.g. ['hover']")),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_group_data_fails_naming_the_rows(case: str, tmp_path: Path) -> None:
    corrupt, (where, expectation, text) = CASES[case]
    frames = frames_with_groups()
    corrupt(frames)
    success, failures, _ = validate(tmp_path, frames)
    assert not success
    matching = [line for line in failures if line.startswith(f"{where}: {expectation}:")]
    assert len(failures) == 1 and text in matching[0], failures


def test_a_membership_that_ends_before_the_next_begins_is_no_duplicate() -> None:
    frames = frames_with_groups()
    _add_member("g2", "u2", END - dt.timedelta(hours=1))(frames)  # u2 left g2 then, and comes back
    _add_member("g2", "u2", END + dt.timedelta(days=1))(frames)  # overlaps the return: a duplicate
    checks = group_check_frames(frames)["group_members_integrity"]
    assert checks["duplicate_membership"].dropna().tolist() == ["g2/u2"]
    assert checks.index[checks["duplicate_membership"].notna()].tolist() == [5]


def test_a_group_table_without_the_other_is_a_broken_extract(tmp_path: Path) -> None:
    frames = frames_with_groups()
    del frames["group_events"]
    extract = write_extract(tmp_path / "extract", frames)
    with pytest.raises(NonRetryableError, match=r"extract output missing: .*group_events \(the group tables come"):
        validate_extract(extract, tmp_path / "validate", PARAMS, data_docs=False)
