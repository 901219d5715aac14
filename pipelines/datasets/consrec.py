"""Group data sets in the ConsRec/AGREE text layout, as published with the group-recommendation papers.

A directory holds:

| file | line |
|---|---|
| ``groupMember.txt`` | ``gid u1,u2,...`` |
| ``groupRatingTrain.txt``, ``groupRatingTest.txt`` | ``gid item [rating]`` (every listed pair is a positive) |
| ``userRatingTrain.txt``, ``userRatingTest.txt`` | ``uid item [rating]`` |
| ``groupRatingNegative.txt``, ``userRatingNegative.txt`` (optional) | ``(id,item) neg1 neg2 ...``: sampled negatives |
| ``itemSemantic.txt`` (optional) | ``name, item``: an item's title |

IDs stay strings, as the dataset spells them. Public files have known flaws, which the loader
reports rather than hides: training pairs listed twice (kept once) and test pairs whose item is
already in the same group's training pairs (``leaking_test_pairs``; the protocol drops them).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

REQUIRED_FILES = ("groupMember.txt", "groupRatingTrain.txt", "groupRatingTest.txt",
                  "userRatingTrain.txt", "userRatingTest.txt")
PAIR_COLUMNS = {"group": ["group_id", "item_id", "rating"], "user": ["user_id", "item_id", "rating"]}


class ConsRecFormatError(ValueError):
    """A file of the layout is missing or a line does not parse; the message names file and line."""


@dataclass
class GroupDataset:
    """One ConsRec-layout dataset, deduplicated; ``duplicates`` counts the pairs listed again."""

    members: dict[str, list[str]]
    group_train: pd.DataFrame
    group_test: pd.DataFrame
    user_train: pd.DataFrame
    user_test: pd.DataFrame
    item_names: dict[str, str] = field(default_factory=dict)
    group_negatives: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    user_negatives: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    duplicates: dict[str, int] = field(default_factory=dict)

    def leaking_test_pairs(self) -> pd.DataFrame:
        """Group test pairs whose item the same group already has in its training pairs."""
        seen = self.group_train[["group_id", "item_id"]].drop_duplicates()
        marked = self.group_test.merge(seen, on=["group_id", "item_id"], how="left", indicator=True)
        return self.group_test[(marked["_merge"] == "both").to_numpy()]

    def member_items(self) -> dict[str, set[str]]:
        """Per group, every item any of its members has in their own training pairs."""
        by_user = self.user_train.groupby("user_id")["item_id"].agg(set).to_dict()
        return {group: set().union(*(by_user.get(u, set()) for u in users)) for group, users in self.members.items()}

    def in_member_history(self, pairs: pd.DataFrame) -> pd.Series:
        """For each (group_id, item_id) row, whether a member of the group has the item in their history."""
        seen = self.member_items()
        return pd.Series([item in seen.get(group, set()) for group, item in zip(pairs["group_id"], pairs["item_id"])],
                         index=pairs.index, dtype=bool)

    def group_test_cases(self) -> pd.DataFrame:
        """One case per (group, test item), leaking pairs dropped: what the full-ranking protocol scores."""
        leaking = self.leaking_test_pairs()
        return self.group_test.drop(index=leaking.index).reset_index(drop=True)


def load_consrec(directory: str | Path) -> GroupDataset:
    """Reads a ConsRec-layout directory.

    Raises:
        ConsRecFormatError: a required file is missing, a line does not parse (file and line named),
            or a group lists no member.
    """
    directory = Path(directory)
    missing = [name for name in REQUIRED_FILES if not (directory / name).is_file()]
    if missing:
        raise ConsRecFormatError(f"{directory} is not a ConsRec-layout group dataset: missing {', '.join(missing)}")
    duplicates: dict[str, int] = {}

    def pairs(name: str, kind: str) -> pd.DataFrame:
        frame = _pairs(directory / name, PAIR_COLUMNS[kind])
        deduplicated = frame.drop_duplicates(subset=PAIR_COLUMNS[kind][:2]).reset_index(drop=True)
        duplicates[name] = len(frame) - len(deduplicated)
        return deduplicated

    return GroupDataset(
        members=_members(directory / "groupMember.txt"),
        group_train=pairs("groupRatingTrain.txt", "group"), group_test=pairs("groupRatingTest.txt", "group"),
        user_train=pairs("userRatingTrain.txt", "user"), user_test=pairs("userRatingTest.txt", "user"),
        item_names=_item_names(directory / "itemSemantic.txt"),
        group_negatives=_negatives(directory / "groupRatingNegative.txt"),
        user_negatives=_negatives(directory / "userRatingNegative.txt"),
        duplicates=duplicates,
    )


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    with open(path, encoding="utf-8", errors="strict") as handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                yield number, line.strip()


def _members(path: Path) -> dict[str, list[str]]:
    members = {}
    for number, line in _lines(path):
        parts = line.split()
        if len(parts) != 2:
            raise ConsRecFormatError(f"{path.name} line {number}: expected 'gid u1,u2,...', got {line!r}")
        users = [u for u in parts[1].split(",") if u]
        if not users:
            raise ConsRecFormatError(f"{path.name} line {number}: group {parts[0]} lists no member")
        if parts[0] in members:
            raise ConsRecFormatError(f"{path.name} line {number}: group {parts[0]} listed twice")
        members[parts[0]] = users
    return members


def _pairs(path: Path, columns: list[str]) -> pd.DataFrame:
    rows = []
    for number, line in _lines(path):
        parts = line.split()
        if len(parts) not in (2, 3):
            raise ConsRecFormatError(f"{path.name} line {number}: expected 'id item [rating]', got {line!r}")
        try:
            rating = float(parts[2]) if len(parts) == 3 else float("nan")
        except ValueError:
            raise ConsRecFormatError(f"{path.name} line {number}: rating {parts[2]!r} is not a number") from None
        rows.append((parts[0], parts[1], rating))
    return pd.DataFrame(rows, columns=columns).astype({columns[0]: str, columns[1]: str, "rating": float})


def _negatives(path: Path) -> dict[tuple[str, str], list[str]]:
    if not path.is_file():
        return {}
    negatives = {}
    for number, line in _lines(path):
        head, _, rest = line.partition(")")
        key = head.removeprefix("(").split(",")
        if not head.startswith("(") or len(key) != 2:
            raise ConsRecFormatError(f"{path.name} line {number}: expected '(id,item) neg1 neg2 ...', got {line[:60]!r}")
        negatives[(key[0].strip(), key[1].strip())] = rest.split()
    return negatives


def _item_names(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    names = {}
    for number, line in _lines(path):
        name, separator, item = line.rpartition(",")
        if not separator or not item.strip() or not name.strip():
            raise ConsRecFormatError(f"{path.name} line {number}: expected 'name, item', got {line!r}")
        names[item.strip()] = name.strip()
    return names
