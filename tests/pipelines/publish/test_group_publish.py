"""Publishing groups: interest groups with stable ids, group lists, backoff, one transaction."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
import torch

from pipelines.groups.item_model import ItemModelChoice
from pipelines.publish import groups as publish_groups
from pipelines.publish import writer
from pipelines.publish.groups import (ServingChoice, explicit_group_lists, find_groups, night_tables,
                                      previous_groups, serving_choice, user_lists_with_backoff)
from pipelines.publish.writer import top_k_recommendations, write_recommendations
from tests.conftest import shipped_params

ITEMS = [f"i{n}" for n in range(12)]
NIGHT, NEXT_NIGHT = "2026-03-01", "2026-03-02"


def settings(**changes):
    return shipped_params().groups.updated(**{"min_group_size": 3, "n_groups": 2, **changes})


def half_scorer(histories):
    """Users whose history starts in the first half like the first half, best first; the others the second."""
    rows = []
    for history in histories:
        first = not history or ITEMS.index(history[0]) < 6
        rows.append([float(12 - i) if (i < 6) == first else 0.0 for i in range(12)])
    return torch.tensor(rows)


def blobs(n: int) -> np.ndarray:
    return np.vstack([np.tile([1.0, 0.0], (n, 1)), np.tile([0.0, 1.0], (n, 1))]) + 0.01 * np.arange(2 * n)[:, None]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def warehouse_url(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/warehouse.db"
    return request.getfixturevalue("postgres_url")


def recs(users: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"user_id": users, "rank": 1, "item_id": "i0", "score": 1.0})


def test_too_few_users_publish_no_interest_group_and_say_why():
    found = find_groups(blobs(1), ["a", "b"], settings(), {}, 0)
    assert (found.ids == -1).all() and not found.centroids and "groups.min_group_size (3)" in found.withheld


def test_ids_follow_the_previous_night_and_new_ones_count_up_from_the_highest_ever():
    users = [f"u{n}" for n in range(8)]
    found = find_groups(blobs(4), users, settings(), {5: set(users[4:]), 2: set(users[:4])}, highest_id=9)
    assert found.ids.tolist() == [2] * 4 + [5] * 4
    assert found.churn == {"users_in_both": 8, "moved": 0, "churn": 0.0, "groups_kept": 2, "groups_new": 0,
                           "groups_gone": 0}
    fresh = find_groups(blobs(4), users, settings(), {}, highest_id=9)
    assert sorted(set(fresh.ids.tolist())) == [10, 11] and fresh.churn is None


def test_group_tables_and_user_lists_land_in_one_transaction_and_a_rerun_replaces_them(warehouse_url, monkeypatch):
    users = [f"u{n}" for n in range(6)]
    tables = night_tables([{"group_kind": "interest", "group_id": "1", "rank": 1, "item_id": "i3", "score": 0.5,
                            "strategy": "gfar"}],
                          [{"group_id": 1, "size": 6, "summary": "6 users.", "top_categories": "[]",
                            "representative_items": "[]"}],
                          [{"group_id": 1, "user_id": u} for u in users], version=4)
    write_recommendations(warehouse_url, NIGHT, 4, recs(users), extra=tables)
    assert previous_groups(warehouse_url, NEXT_NIGHT) == ({1: set(users)}, 1)
    assert previous_groups(warehouse_url, NIGHT) == ({}, 1)  # nothing before the first night; ids never reused

    real_insert = writer.insert_batch

    def fail_on_members(conn, rows, table=writer.schema.recommendations):
        real_insert(conn, rows, table)
        if table.name == "interest_group_members":
            raise ConnectionError("warehouse went away mid-write")

    rerun = night_tables([], [], [{"group_id": 7, "user_id": "u0"}], version=5)
    monkeypatch.setattr(writer, "insert_batch", fail_on_members)
    with pytest.raises(ConnectionError):
        write_recommendations(warehouse_url, NIGHT, 5, recs(users[:2]), extra=rerun)
    assert night_counts(warehouse_url) == {"recommendations": 6, "group_recommendations": 1, "interest_groups": 1,
                                           "interest_group_members": 6}
    monkeypatch.setattr(writer, "insert_batch", real_insert)
    write_recommendations(warehouse_url, NIGHT, 5, recs(users[:2]), extra=rerun)
    assert night_counts(warehouse_url) == {"recommendations": 2, "group_recommendations": 0, "interest_groups": 0,
                                           "interest_group_members": 1}


def night_counts(url: str) -> dict[str, int]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return {t: conn.execute(sa.text(f"SELECT COUNT(*) FROM {t} WHERE run_date = :d"), {"d": NIGHT}).scalar()
                    for t in ("recommendations", "group_recommendations", "interest_groups", "interest_group_members")}
    finally:
        engine.dispose()


def test_an_explicit_group_list_leaves_out_its_own_history_and_unprofiled_members():
    groups = pd.DataFrame([{"group_id": "h1", "members": ["a", "ghost"], "train_items": ["i0"], "valid_item": "i1",
                            "test_item": None},
                           {"group_id": "h2", "members": ["ghost"], "train_items": [], "valid_item": None,
                            "test_item": None}])
    rows = explicit_group_lists(half_scorer, groups, {"a": ["i2"]}, ITEMS, ServingChoice("average", 0.0, "test"),
                                settings(), k=3)
    assert [(r["group_id"], r["item_id"]) for r in rows] == [("h1", "i2"), ("h1", "i3"), ("h1", "i4")]
    assert {r["group_kind"] for r in rows} == {"explicit"} and {r["strategy"] for r in rows} == {"average"}


def test_without_backoff_users_get_their_own_lists_and_with_a_strong_one_their_group_s():
    users, histories = ["cold", "warm"], [["i7"], ["i0", "i1", "i2", "i3", "i4"]]
    found = publish_groups.FoundGroups(np.array([1, 1]), {1: np.array([1.0, 0.0])})
    group_mean = np.array([float(i) for i in range(12)])  # the group likes the last items best
    plain = user_lists_with_backoff(half_scorer, users, histories, found, {1: group_mean}, ITEMS, 0.0, 3)
    pd.testing.assert_frame_equal(plain, top_k_recommendations(half_scorer, users, histories, ITEMS, 3))
    blended = user_lists_with_backoff(half_scorer, users, histories, found, {1: group_mean}, ITEMS, 1000.0, 3)
    assert blended[blended.user_id == "cold"]["item_id"].tolist() == ["i11", "i10", "i9"]
    assert "i7" not in blended[blended.user_id == "cold"]["item_id"].tolist()  # own history still excluded
    capped = user_lists_with_backoff(half_scorer, users, histories, found, {1: group_mean}, ITEMS, 1000.0, 3,
                                     max_interactions=1)
    own = top_k_recommendations(half_scorer, users, histories, ITEMS, 3)
    assert capped[capped.user_id == "cold"]["item_id"].tolist() == ["i11", "i10", "i9"]
    assert capped[capped.user_id == "warm"]["item_id"].tolist() == own[own.user_id == "warm"]["item_id"].tolist()


def test_a_version_without_a_recorded_choice_is_served_with_average_and_no_backoff():
    assert serving_choice(3, {"candidate": {}}) == ServingChoice(
        "average", 0.0, "version 3 has no recorded group choice: average, no backoff")
    recorded = serving_choice(4, {"groups": {"strategy": "gfar", "backoff_strength": 5, "chosen_on": "sampled groups"}})
    assert (recorded.strategy, recorded.backoff_strength, recorded.backoff_max_interactions) == ("gfar", 5.0, None)
    capped = serving_choice(5, {"groups": {"strategy": "average", "backoff_strength": 2, "backoff_max_interactions": 10}})
    assert capped.backoff_max_interactions == 10
    assert not recorded.item_model.active and not capped.item_model.active  # recorded before the item model
    with_items = serving_choice(6, {"groups": {"strategy": "average", "backoff_strength": 0,
                                               "item_model": {"lambda": 50, "weight": 2}}})
    assert (with_items.item_model.lam, with_items.item_model.weight) == (50.0, 2.0)


def test_a_group_model_list_reads_the_group_s_own_history():
    groups = pd.DataFrame([{"group_id": "h1", "members": ["a"], "train_items": ["i8"], "valid_item": None,
                            "test_item": None}])
    choice = ServingChoice("average", 0.0, "test", explicit_strategy="group_model")
    rows = explicit_group_lists(half_scorer, groups, {"a": ["i0"]}, ITEMS, choice, settings(), k=2)
    # the member likes the first half, the group's own history (i8) the second: the list holds each one's
    # favourite, never the group's own i8
    assert {r["strategy"] for r in rows} == {"group_model"}
    assert {r["item_id"] for r in rows} == {"i0", "i6"}


def test_a_group_model_list_adds_the_item_model_at_the_recorded_weights():
    groups = pd.DataFrame([{"group_id": "h1", "members": ["a"], "train_items": ["i8"], "valid_item": None,
                            "test_item": None}])
    users = {"a": ["i0"], **{f"pair{n}": ["i8", "i11"] for n in range(4)}}  # whoever chose i8 chose i11
    off = ServingChoice("average", 0.0, "test", explicit_strategy="group_model")
    on = ServingChoice("average", 0.0, "test", explicit_strategy="group_model",
                       item_model=ItemModelChoice(1.0, 10.0, "test"))
    without = explicit_group_lists(half_scorer, groups, users, ITEMS, off, settings(), k=2)
    with_items = explicit_group_lists(half_scorer, groups, users, ITEMS, on, settings(), k=2)
    assert "i11" not in {r["item_id"] for r in without}  # the sequence model ranks i11 last of its half
    assert with_items[0]["item_id"] == "i11" and "i8" not in {r["item_id"] for r in with_items}
