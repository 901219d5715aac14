"""Explicit groups in the profiles: current members, and leave-last-out over each group's events."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pandas as pd
import pytest

from pipelines.profiles.build import GROUP_COLUMNS, Profiles, build_groups, build_profiles, load_profiles
from pipelines.profiles.stage import run_profiles
from pipelines.validate.validation import validate_extract
from tests.conftest import project_params, shipped_params
from tests.pipelines.validate.test_validation import LOGICAL_DATE, PARAMS, clean_frames, write_extract

T = dt.datetime(2026, 3, 1)
END = dt.datetime(2026, 3, 2)


def members(*rows: tuple[str, str, dt.datetime | None]) -> pd.DataFrame:
    """(group_id, user_id, left_at) rows; everyone joined at the beginning of time."""
    return pd.DataFrame({"group_id": [r[0] for r in rows], "user_id": [r[1] for r in rows],
                         "joined_at": pd.Series([None] * len(rows), dtype="datetime64[us]"),
                         "left_at": pd.Series([r[2] for r in rows], dtype="datetime64[us]")})


def events(*rows: tuple[str, str, int]) -> pd.DataFrame:
    """(group_id, item_id, hour) rows, all views."""
    return pd.DataFrame({"group_id": [r[0] for r in rows], "item_id": [r[1] for r in rows],
                         "event_type": ["view"] * len(rows),
                         "ts": pd.Series([T + dt.timedelta(hours=r[2]) for r in rows], dtype="datetime64[us]")})


def test_groups_are_split_leave_last_out_in_time_order_with_their_current_members() -> None:
    groups = build_groups(
        members(("g1", "u2", None), ("g1", "u1", END + dt.timedelta(days=1)), ("g1", "u3", END),
                ("g2", "u1", None), ("g3", "u4", None)),
        events(("g1", "d", 4), ("g1", "a", 1), ("g1", "c", 3), ("g1", "b", 2), ("g2", "x", 1), ("g2", "y", 2)),
        END, min_interactions=3)
    assert list(groups.columns) == list(GROUP_COLUMNS)
    rows = {row.group_id: row for row in groups.itertuples()}
    assert list(rows) == ["g1", "g2", "g3"]
    # u3 left at the interval's end: no longer a member; u1 leaves after it: still one.
    assert list(rows["g1"].members) == ["u1", "u2"]
    assert (list(rows["g1"].train_items), rows["g1"].valid_item, rows["g1"].test_item) == (["a", "b"], "c", "d")
    # Under the minimum a group keeps everything for training, as a user does; no events: nothing.
    assert list(rows["g2"].train_items) == ["x", "y"] and pd.isna(rows["g2"].test_item)
    assert list(rows["g3"].train_items) == [] and pd.isna(rows["g3"].valid_item)


def test_timestamp_ties_go_by_item_id() -> None:
    groups = build_groups(members(("g1", "u1", None)), events(("g1", "z", 1), ("g1", "x", 1), ("g1", "y", 1)),
                          END, min_interactions=3)
    row = groups.iloc[0]
    assert (list(row.train_items), row.valid_item, row.test_item) == (["x"], "y", "z")


def test_the_minimum_is_that_of_users() -> None:
    with pytest.raises(ValueError, match="min_user_interactions"):
        build_groups(members(("g1", "u1", None)), events(), END, min_interactions=2)


def test_profiles_without_groups_keep_their_old_constructor_and_an_empty_groups_frame() -> None:
    frame = pd.DataFrame({"user_id": []})
    profiles = Profiles(sequences=frame, items=frame, users=frame)
    assert list(profiles.groups.columns) == list(GROUP_COLUMNS) and profiles.groups.empty


def test_load_profiles_reads_groups_where_written_else_an_empty_frame(tmp_path: Path) -> None:
    interactions = pd.DataFrame({"event_id": [1, 2, 3], "user_id": ["u1"] * 3, "item_id": ["a", "b", "c"],
                                 "event_type": ["view"] * 3, "rating": [None] * 3,
                                 "ts": [T + dt.timedelta(hours=h) for h in range(3)]})
    items = pd.DataFrame({"item_id": ["a", "b", "c"], "title": ["A", "B", "C"], "categories": [""] * 3,
                          "description": [""] * 3, "created_at": [None] * 3})
    users = pd.DataFrame({"user_id": ["u1"], "attributes": [""], "created_at": [None]})
    built = build_profiles(interactions, items, users, shipped_params().profiles)
    for name in ("sequences", "items", "users"):
        getattr(built, name).to_parquet(tmp_path / f"{name}.parquet", index=False)
    assert load_profiles(tmp_path).groups.empty

    build_groups(members(("g1", "u1", None)), events(("g1", "a", 1), ("g1", "b", 2), ("g1", "c", 3)), END, 3) \
        .to_parquet(tmp_path / "groups.parquet", index=False)
    groups = load_profiles(tmp_path).groups
    assert groups.to_dict("records") == [{"group_id": "g1", "members": ["u1"], "train_items": ["a"],
                                          "valid_item": "b", "test_item": "c"}]


def test_the_stage_writes_groups_parquet_only_when_the_extract_has_groups(tmp_path: Path) -> None:
    params = project_params(tmp_path)
    settings, paths = shipped_params().profiles, shipped_params().paths.updated(**params["paths"])
    frames = clean_frames()
    write_extract(Path(paths.extract), frames)
    validate_extract(Path(paths.extract), Path(paths.validation), PARAMS, data_docs=False)
    run_profiles(LOGICAL_DATE, settings, paths)
    assert not (Path(paths.profiles) / "groups.parquet").exists()

    frames["group_members"] = members(("g1", "u0", None), ("g1", "u1", None))
    frames["group_events"] = events(("g1", "i1", 1), ("g1", "i2", 2), ("g1", "i3", 3))
    write_extract(Path(paths.extract), frames)
    validate_extract(Path(paths.extract), Path(paths.validation), PARAMS, data_docs=False)
    run_profiles(LOGICAL_DATE, settings, paths)
    groups = load_profiles(paths.profiles).groups
    assert groups[["group_id", "valid_item", "test_item"]].to_dict("records") == [
        {"group_id": "g1", "valid_item": "i2", "test_item": "i3"}]
    manifest = json.loads((Path(paths.profiles) / "manifest.json").read_text())
    assert manifest["rows"]["groups"] == 1 and manifest["rows"]["evaluable_groups"] == 1
