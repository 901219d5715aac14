"""The next-interval protocol: who is judged, what is relevant, pessimistic ties, the metrics."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from bench.next_interval import (choose_popularity_window, interval_cases, judge, pessimistic_ranks,
                                 popularity_scorer, score_cases, user_metrics)
from bench.nights import night_dates, night_slices

ITEMS = ["a", "b", "c", "d", "e"]


def events(rows):
    return pd.DataFrame(rows, columns=["user_id", "item_id", "seconds"]).assign(order=lambda f: range(len(f)))


def test_cases_are_users_with_history_and_their_new_items_in_the_interval():
    frame = events([("u1", "a", 1), ("u1", "b", 12), ("u1", "a", 13), ("u2", "c", 11), ("u3", "d", 2),
                    ("u3", "e", 25), ("u4", "a", 3), ("u4", "a", 14)])
    cases = interval_cases(frame, 10, 20)
    # u2 has no history; u3 nothing inside; u4 only re-watched what it had: none of them is judged.
    assert cases.user_ids == ["u1"] and cases.histories == [["a"]] and cases.relevant == [{"b"}]


def test_ties_count_against_the_relevant_items():
    scores = np.array([1.0, 1.0, 1.0, 0.5, 2.0])
    excluded = np.array([False, False, False, False, True])  # e is history: not ranked at all
    relevant = np.array([False, True, False, True, False])
    assert pessimistic_ranks(scores, excluded, relevant).tolist() == [3, 4]


def test_metrics_of_one_user():
    got = user_metrics(np.array([1, 4]), n_relevant=3, k=3)
    ideal = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert got["ndcg@3"] == pytest.approx(1 / ideal)
    assert got["recall@3"] == pytest.approx(1 / 3) and got["hr@3"] == 1.0


def test_judge_overall_and_slices():
    frame = events([("u1", "a", 1), ("u1", "b", 12), ("u1", "e", 13), ("u2", "c", 2), ("u2", "d", 15)])
    cases = interval_cases(frame, 10, 20)
    scorer = lambda histories: torch.tensor([[0.0, 5.0, 4.0, 3.0, 1.0]]).expand(len(histories), -1)  # noqa: E731
    scores = score_cases(scorer, cases, ITEMS)
    result = judge(scores, cases, ITEMS, 1, {"only_e": (None, {"e"}), "u2": ({"u2"}, None)})
    assert result["all"]["users"] == 2
    assert result["all"]["hr@1"] == pytest.approx(0.5)  # u1's b is first; u2's d is behind b (c is history)
    assert result["only_e"] == {"ndcg@1": 0.0, "recall@1": 0.0, "hr@1": 0.0, "users": 1}
    assert result["u2"]["users"] == 1 and result["u2"]["hr@1"] == 0.0


def test_popularity_window_is_chosen_before_the_judged_interval():
    # Before the validation interval [10, 20): "a" is popular long ago, "b" recently; inside it users take "b".
    frame = events([("u1", "a", 1), ("u2", "a", 1), ("u3", "a", 1), ("u4", "b", 9), ("u5", "e", 2),
                    ("u5", "b", 15), ("u6", "e", 2), ("u6", "b", 16), ("u9", "e", 25)])
    days, curve = choose_popularity_window(frame, ITEMS, night_s=20, interval_s=10, windows_days=(0, 3 / 86400), k=1)
    assert days == 3 / 86400 and curve[0] == 0.0
    scores = popularity_scorer(frame, ITEMS, 10, 20)([["x"]])
    assert scores[0].tolist() == [0.0, 2.0, 0.0, 0.0, 0.0]  # the interval's own counts


def test_nights_end_one_interval_before_the_newest_event():
    import datetime as dt

    newest = int(dt.datetime(1998, 4, 22, 23, 10, tzinfo=dt.timezone.utc).timestamp())
    assert night_dates(newest, 3, 7) == [dt.date(1998, 4, 2), dt.date(1998, 4, 9), dt.date(1998, 4, 16)]


def test_slices_name_new_users_and_new_items():
    frame = events([("old", "a", 1), ("new", "b", 15), ("old", "c", 25), ("new", "d", 26)])
    cases = interval_cases(frame, 20, 30)
    slices = night_slices(frame, cases, night_s=20, interval_s=10)
    assert slices["new_users"][0] == {"new"}
    assert slices["new_items"][1] == {"c", "d"} and slices["recent_items"][1] == {"b"}
