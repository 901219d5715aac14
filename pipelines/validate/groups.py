"""The cross-table checks of explicit groups, as masked frames the suite checks for nulls.

Each frame has one row per row of its table and one column per check, holding a label of the
row (``group_id/user_id`` for a membership, ``group_id@ts`` for a group event) where the check
fails and null where it holds: the failure then names the count and the first rows, and GX copies
no value set of keys into the suite (as with ``interactions_unknown_keys``).

* ``unknown_user``: a member that is no user of the extract.
* ``duplicate_membership``: a (group_id, user_id) membership whose period overlaps an earlier
  one of the same pair (a null joined_at starts at the beginning of time, a null left_at never ends).
* ``unknown_group``: a group event whose group_id has no row in group_members.
* ``empty_group``: a group event of a group listed in group_members with no member at the
  event's time (every membership starts after it or ended at or before it): a group with zero
  members counts as empty, not as unknown.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

MEMBERS_ASSET = "group_members_integrity"
EVENTS_ASSET = "group_events_integrity"
MEMBER_COLUMNS = ("group_id", "user_id", "joined_at", "left_at")
EVENT_COLUMNS = ("group_id", "ts")


def has_groups(frames: Mapping[str, pd.DataFrame]) -> bool:
    return "group_members" in frames and "group_events" in frames


def _usable(frame: pd.DataFrame, columns: tuple[str, ...]) -> bool:
    """Every column present, timestamps naive datetimes: otherwise the table suites say what is wrong."""
    return set(columns) <= set(frame.columns) and all(
        pd.api.types.is_datetime64_dtype(frame[name]) for name in columns if name in ("joined_at", "left_at", "ts"))


def _nulls(index: pd.Index) -> pd.Series:
    return pd.Series(None, index=index, dtype=object)


def member_labels(members: pd.DataFrame) -> pd.Series:
    return members["group_id"].astype(str) + "/" + members["user_id"].astype(str)


def unknown_users(members: pd.DataFrame, users: pd.DataFrame) -> pd.Series:
    known = members["user_id"].isin(users["user_id"]) if "user_id" in users else pd.Series(False, members.index)
    return member_labels(members).where(~known)


def overlapping_memberships(members: pd.DataFrame) -> pd.Series:
    """Labels of the memberships that start before an earlier period of the same pair has ended."""
    joined = members["joined_at"].fillna(pd.Timestamp.min)
    left = members["left_at"].fillna(pd.Timestamp.max)
    ordered = pd.DataFrame({"group_id": members["group_id"], "user_id": members["user_id"], "joined": joined,
                            "left": left}).sort_values(["group_id", "user_id", "joined"], kind="stable")
    pairs = [ordered["group_id"], ordered["user_id"]]
    # The latest end among the pair's earlier periods (none for the first: never overlapping).
    earlier_end = ordered["left"].groupby(pairs, sort=False).cummax().groupby(pairs, sort=False).shift()
    overlaps = (ordered["joined"] < earlier_end).reindex(members.index, fill_value=False)
    return member_labels(members).where(overlaps)


def event_labels(events: pd.DataFrame) -> pd.Series:
    return events["group_id"].astype(str) + "@" + events["ts"].dt.strftime("%Y-%m-%dT%H:%M:%S")


def unknown_and_empty_groups(events: pd.DataFrame, members: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Per group event: its label where its group is unknown, and where the group has no member then."""
    listed = events["group_id"].isin(members["group_id"])
    pairs = events[["group_id", "ts"]].reset_index(names="_event").merge(
        members[["group_id", "joined_at", "left_at"]], on="group_id", how="inner")
    active = (pairs["joined_at"].isna() | (pairs["joined_at"] <= pairs["ts"])) \
        & (pairs["left_at"].isna() | (pairs["left_at"] > pairs["ts"]))
    with_member = pd.Index(pairs.loc[active, "_event"].unique())
    labels = event_labels(events)
    return labels.where(~listed), labels.where(listed & ~events.index.isin(with_member))


def group_check_frames(frames: Mapping[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """The two masked frames (``MEMBERS_ASSET``, ``EVENTS_ASSET``); all null where a column is unusable."""
    members, events = frames["group_members"], frames["group_events"]
    member_checks = pd.DataFrame({"unknown_user": _nulls(members.index), "duplicate_membership": _nulls(members.index)})
    event_checks = pd.DataFrame({"unknown_group": _nulls(events.index), "empty_group": _nulls(events.index)})
    if _usable(members, MEMBER_COLUMNS):
        member_checks["unknown_user"] = unknown_users(members, frames["users"])
        member_checks["duplicate_membership"] = overlapping_memberships(members)
        if _usable(events, EVENT_COLUMNS):
            event_checks["unknown_group"], event_checks["empty_group"] = unknown_and_empty_groups(events, members)
    return {MEMBERS_ASSET: member_checks, EVENTS_ASSET: event_checks}
