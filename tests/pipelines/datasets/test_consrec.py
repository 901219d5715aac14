"""The ConsRec/AGREE group layout: invented files in the layout, and the shared CAMRa2011 where present."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipelines.datasets.consrec import ConsRecFormatError, load_consrec
from tests.conftest import PROJECT_ROOT

CAMRA = PROJECT_ROOT.parent / "shared" / "data" / "groups" / "CAMRa2011"


def write_layout(root: Path, **overrides: str) -> Path:
    files = {
        "groupMember.txt": "1 10,11\n2 12,13,14\n",
        "groupRatingTrain.txt": "1 100 80\n1 101 70\n1 101 70\n2 102 90\n",  # (1, 101) listed twice
        "groupRatingTest.txt": "1 103 60\n1 101 75\n2 104\n",  # (1, 101) is already in training
        "userRatingTrain.txt": "10 100 50\n11 105 40\n12 102 30\n",
        "userRatingTest.txt": "10 106 20\n",
        "groupRatingNegative.txt": "(1,103) 200 201 202\n",
        "itemSemantic.txt": "Toy Story, 100\nHeat, Part 2, 101\n",
        **overrides,
    }
    for name, text in files.items():
        if text is not None:
            (root / name).write_text(text)
    return root


def test_reads_every_file_with_ids_as_strings(tmp_path):
    data = load_consrec(write_layout(tmp_path))
    assert data.members == {"1": ["10", "11"], "2": ["12", "13", "14"]}
    assert data.group_train[["group_id", "item_id"]].values.tolist() == [["1", "100"], ["1", "101"], ["2", "102"]]
    assert data.group_test["rating"].isna().tolist() == [False, False, True]  # the rating column is optional
    assert data.user_test.values.tolist() == [["10", "106", 20.0]]
    assert data.group_negatives == {("1", "103"): ["200", "201", "202"]}
    assert data.item_names == {"100": "Toy Story", "101": "Heat, Part 2"}


def test_member_items_are_what_any_member_has_in_their_own_history(tmp_path):
    data = load_consrec(write_layout(tmp_path))
    assert data.member_items() == {"1": {"100", "105"}, "2": {"102"}}
    assert data.in_member_history(data.group_train).tolist() == [True, False, True]


def test_known_flaws_are_counted_not_hidden(tmp_path):
    data = load_consrec(write_layout(tmp_path))
    assert data.duplicates["groupRatingTrain.txt"] == 1
    assert data.leaking_test_pairs()[["group_id", "item_id"]].values.tolist() == [["1", "101"]]
    assert data.group_test_cases()[["group_id", "item_id"]].values.tolist() == [["1", "103"], ["2", "104"]]


def test_optional_files_may_be_absent(tmp_path):
    data = load_consrec(write_layout(tmp_path, **{"groupRatingNegative.txt": None, "itemSemantic.txt": None}))
    assert data.group_negatives == {} and data.item_names == {}


@pytest.mark.parametrize("name, text, expected", [
    ("groupMember.txt", "1 10,11\n2\n", "groupMember.txt line 2: expected 'gid u1,u2,...'"),
    ("groupMember.txt", "1 ,\n", "groupMember.txt line 1: group 1 lists no member"),
    ("groupMember.txt", "1 10\n1 11\n", "groupMember.txt line 2: group 1 listed twice"),
    ("groupRatingTrain.txt", "1 100 80\n1 100 80 9\n", "groupRatingTrain.txt line 2: expected 'id item [rating]'"),
    ("userRatingTest.txt", "10 106 high\n", "userRatingTest.txt line 1: rating 'high' is not a number"),
    ("groupRatingNegative.txt", "1,103 200\n", "groupRatingNegative.txt line 1: expected '(id,item) neg1"),
])
def test_a_bad_line_is_named_by_file_and_line(tmp_path, name, text, expected):
    with pytest.raises(ConsRecFormatError, match=re.escape(expected)):
        load_consrec(write_layout(tmp_path, **{name: text}))


def test_a_missing_required_file_is_named(tmp_path):
    with pytest.raises(ConsRecFormatError, match="missing userRatingTest.txt"):
        load_consrec(write_layout(tmp_path, **{"userRatingTest.txt": None}))


def test_camra2011_as_published():
    if not (CAMRA / "groupMember.txt").is_file():
        pytest.skip(f"CAMRa2011 not found at {CAMRA} (it cannot be shipped)")
    data = load_consrec(CAMRA)
    users = {u for members in data.members.values() for u in members}
    assert (len(data.members), len(users)) == (290, 602)
    assert all(2 <= len(m) <= 4 for m in data.members.values())
    assert data.duplicates["groupRatingTrain.txt"] > 0  # the known duplicated training pairs
    share = len(data.leaking_test_pairs()) / len(data.group_test)
    assert 0.3 < share < 0.5  # about 40% of the group test pairs are in the group's training pairs
    # No test item is in a member's own history; most of the groups' training items are (bench/README.md).
    assert int(data.in_member_history(data.group_test_cases()).sum()) == 0
    assert len(data.group_test_cases()) == 868
    train_seen = data.in_member_history(data.group_train)
    assert (int(train_seen.sum()), len(train_seen)) == (94775, 113914)  # 83.2%
