"""Top-K lists and their write-back: history excluded, a rerun replaces the night in one
transaction, a failure part-way leaves the previous rows, bad input is refused up front."""

from __future__ import annotations

import math
import threading

import pandas as pd
import pytest
import sqlalchemy as sa
import torch

from pipelines.publish import writer as publish
from pipelines.ranking.scoring import most_popular_scorer
from pipelines.publish.writer import top_k_recommendations, write_recommendations

NIGHT, OTHER_NIGHT = "2026-03-01", "2026-03-02"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def warehouse_url(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/warehouse.db"
    return request.getfixturevalue("postgres_url")


def stored(url: str, run_date: str) -> pd.DataFrame:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return pd.read_sql(sa.text("SELECT user_id, rank, item_id, score, model_version FROM recommendations "
                                       "WHERE run_date = :d ORDER BY user_id, rank"), conn, params={"d": run_date})
    finally:
        engine.dispose()


def lists(n_users: int, k: int = 3, offset: float = 0.0) -> pd.DataFrame:
    return pd.DataFrame({
        "user_id": [f"u{u:03d}" for u in range(n_users) for _ in range(k)],
        "rank": [r for _ in range(n_users) for r in range(1, k + 1)],
        "item_id": [f"i{(u + r) % 50}" for u in range(n_users) for r in range(k)],
        "score": [offset + 1.0 / (r + 1) for _ in range(n_users) for r in range(k)],
    })


def test_history_is_excluded_and_short_lists_stay_short():
    scorer = most_popular_scorer([3.0, 2.0, 1.0])
    recs = top_k_recommendations(scorer, ["u1", "u2", "u3"], [["a"], [], ["a", "b", "c"]], ["a", "b", "c"], k=2)
    assert recs[recs.user_id == "u1"]["item_id"].tolist() == ["b", "c"]
    assert recs[recs.user_id == "u2"]["item_id"].tolist() == ["a", "b"]
    assert "u3" not in set(recs["user_id"])  # has seen everything
    assert recs[recs.user_id == "u1"]["rank"].tolist() == [1, 2]


def test_top_k_matches_a_per_user_computation_across_chunks():
    torch.manual_seed(0)
    catalogue = [f"i{j}" for j in range(30)]
    table = torch.randn(7, 30)
    histories = [[catalogue[(3 * u + j) % 30] for j in range(u * 2)] + ["unknown"] for u in range(7)]
    calls = iter(range(0, 7, 3))

    def scorer(batch):  # the rows of the users of this chunk, in order
        start = next(calls)
        return table[start:start + len(batch)]

    recs = top_k_recommendations(scorer, [f"u{u}" for u in range(7)], histories, catalogue, k=4, chunk=3)
    for u, history in enumerate(histories):
        row = table[u].clone()
        row[[catalogue.index(i) for i in history if i in catalogue]] = -math.inf
        expected = [catalogue[c] for c in torch.topk(row, 4).indices.tolist()]
        assert recs[recs.user_id == f"u{u}"]["item_id"].tolist() == expected


def test_nan_scores_are_refused():
    scorer = most_popular_scorer([1.0, float("nan"), 0.5])
    with pytest.raises(ValueError, match="NaN"):
        top_k_recommendations(scorer, ["u1"], [[]], ["a", "b", "c"], k=2)


def test_a_rerun_replaces_only_its_night(warehouse_url):
    assert write_recommendations(warehouse_url, NIGHT, 1, lists(4)) == 12
    write_recommendations(warehouse_url, OTHER_NIGHT, 1, lists(4))
    assert write_recommendations(warehouse_url, NIGHT, 2, lists(3, offset=1.0)) == 9
    night = stored(warehouse_url, NIGHT)
    assert len(night) == 9 and set(night["model_version"]) == {2}
    assert night["score"].tolist() == pytest.approx(lists(3, offset=1.0)["score"].tolist())
    assert len(stored(warehouse_url, OTHER_NIGHT)) == 12


def test_text_with_commas_and_quotes_round_trips(warehouse_url):
    recs = pd.DataFrame({"user_id": ['u "1", x'], "rank": [1], "item_id": ["a,b\nc"], "score": [0.1 + 0.2]})
    write_recommendations(warehouse_url, NIGHT, 1, recs)
    row = stored(warehouse_url, NIGHT).iloc[0]
    assert (row["user_id"], row["item_id"], row["score"]) == ('u "1", x', "a,b\nc", 0.1 + 0.2)


def test_a_write_failing_midway_leaves_the_previous_night(warehouse_url, monkeypatch):
    write_recommendations(warehouse_url, NIGHT, 1, lists(20))
    write_recommendations(warehouse_url, OTHER_NIGHT, 1, lists(5))
    before = stored(warehouse_url, NIGHT)
    real_insert, batches = publish.insert_batch, []

    def insert_then_fail(conn, rows, *table):
        real_insert(conn, rows, *table)  # the rows really are in the transaction
        batches.append(len(rows))
        if len(batches) == 2:
            raise OSError("connection lost after the second batch")

    monkeypatch.setattr(publish, "insert_batch", insert_then_fail)
    with pytest.raises(OSError, match="second batch"):
        write_recommendations(warehouse_url, NIGHT, 2, lists(30, offset=1.0), batch_rows=25)
    assert batches == [25, 25]
    pd.testing.assert_frame_equal(stored(warehouse_url, NIGHT), before)
    assert len(stored(warehouse_url, OTHER_NIGHT)) == 15


@pytest.mark.postgres
def test_readers_see_the_previous_night_until_the_rerun_commits(postgres_url, monkeypatch):
    write_recommendations(postgres_url, NIGHT, 1, lists(20))
    real_insert = publish.insert_batch
    halfway, resume = threading.Event(), threading.Event()

    def insert_and_pause(conn, rows, *table):
        real_insert(conn, rows, *table)
        if not halfway.is_set():
            halfway.set()
            assert resume.wait(30)

    monkeypatch.setattr(publish, "insert_batch", insert_and_pause)
    writer = threading.Thread(target=write_recommendations, args=(postgres_url, NIGHT, 2, lists(30)),
                              kwargs={"batch_rows": 25})
    writer.start()
    try:
        assert halfway.wait(30)
        during = stored(postgres_url, NIGHT)  # the old rows are deleted and new ones inserted, uncommitted
    finally:
        resume.set()
        writer.join(30)
    assert len(during) == 60 and set(during["model_version"]) == {1}
    after = stored(postgres_url, NIGHT)
    assert len(after) == 90 and set(after["model_version"]) == {2}


@pytest.mark.parametrize("change, message", [
    (lambda r: r.drop(columns="score"), r"lacks column\(s\) \['score'\]"),
    (lambda r: pd.concat([r, r.tail(1)]), r"1 duplicate \(user_id, rank\) rows, e.g. user 'u003' rank 3"),
    (lambda r: r.assign(item_id=r["item_id"].where(r["rank"] != 2)), r"empty values in column\(s\) \['item_id'\]"),
])
def test_bad_lists_are_refused_before_anything_is_deleted(tmp_path, change, message):
    url = f"sqlite:///{tmp_path}/warehouse.db"
    write_recommendations(url, NIGHT, 1, lists(4))
    with pytest.raises(ValueError, match=message):
        write_recommendations(url, NIGHT, 2, change(lists(4)))
    assert len(stored(url, NIGHT)) == 12


def test_a_bad_run_date_is_refused(tmp_path):
    with pytest.raises(ValueError, match="run_date must be 'YYYY-MM-DD', got '2026-3-1'"):
        write_recommendations(f"sqlite:///{tmp_path}/w.db", "2026-3-1", 1, lists(1))
