import numpy as np
import pandas as pd
import pytest
import torch

from pipelines.ranking.recency import (DAY_S, SERVING, TEST, VALIDATION, ItemTimeline, RecencyPrior, case_days,
                                       case_prior, choose_prior, scorer_as_of, standardised, with_prior)
from pipelines.ranking import scoring
from pipelines.ranking.scoring import EvalSet, rank_eval_set

ITEMS = ["a", "b", "c", "d"]


def timeline(events: list[tuple[str, int]]) -> ItemTimeline:
    """(item, day) pairs."""
    column = {item: i for i, item in enumerate(ITEMS)}
    return ItemTimeline(np.array([column[i] for i, _ in events]), np.array([d for _, d in events]), len(ITEMS))


def test_counts_are_the_whole_days_before_the_case_within_the_window():
    events = timeline([("a", 1), ("a", 8), ("b", 9), ("b", 9), ("c", 10)])
    counts = events.counts_before(np.array([10, 10, 2]), 2)
    # days 8 and 9 before day 10; the case's own day (c on 10) is never counted
    assert counts[0].tolist() == [1, 2, 0, 0]
    assert counts[1].tolist() == counts[0].tolist()
    assert counts[2].tolist() == [1, 0, 0, 0]
    assert events.counts_before(np.array([10]), 0)[0].tolist() == [2, 2, 0, 0]  # 0: every day before


def test_the_timeline_holds_the_phase_s_profiled_events_with_their_times_and_only_catalogue_items():
    sequences = pd.DataFrame({
        "user_id": ["u1", "u2"], "train_items": [["a", "x"], ["b"]], "train_ts": [[0, DAY_S], [2 * DAY_S]],
        "valid_item": ["c", None], "test_item": ["d", None],
        "valid_ts": pd.array([3 * DAY_S, None], dtype="Int64"), "test_ts": pd.array([4 * DAY_S + 5, None], dtype="Int64"),
    })
    events = ItemTimeline.from_sequences(sequences, ITEMS)
    assert sorted(zip(events.columns.tolist(), events.days.tolist())) == [(0, 0), (1, 2), (2, 3), (3, 4)]
    # no phase counts what it holds out: validation sees training events, the test also validation items
    assert sorted(ItemTimeline.from_sequences(sequences, ITEMS, VALIDATION).columns.tolist()) == [0, 1]
    assert sorted(ItemTimeline.from_sequences(sequences, ITEMS, TEST).columns.tolist()) == [0, 1, 2]
    assert ItemTimeline.from_sequences(sequences, ITEMS, SERVING).columns.tolist() == events.columns.tolist()
    assert case_days(scoring.validation_set(sequences)).tolist() == [3]
    assert case_days(scoring.test_set(sequences)).tolist() == [4]


def test_profiles_without_times_give_an_empty_timeline_and_cases_that_count_nothing():
    sequences = pd.DataFrame({"user_id": ["u1"], "train_items": [["a"]], "valid_item": ["b"], "test_item": ["c"]})
    assert len(ItemTimeline.from_sequences(sequences, ITEMS).days) == 0
    assert case_days(scoring.test_set(sequences)).tolist() == [-1]


def test_off_leaves_the_scores_as_they_are_and_on_adds_the_standardised_log_counts():
    scores = torch.tensor([[3.0, 1.0, 2.0, 0.0]])
    counts = np.array([[0.0, 10.0, 0.0, 0.0]])
    assert with_prior(scores, counts, RecencyPrior()) is scores
    blended = with_prior(scores, counts, RecencyPrior(weight=2.0, window_days=7))
    popularity = standardised(torch.log1p(torch.tensor(counts, dtype=torch.float32)))
    assert torch.allclose(blended, standardised(scores) + 2.0 * popularity)
    assert int(blended.argmax()) == 1  # the heavy prior lifts the recently popular item to the top


def test_an_item_never_seen_gets_the_average_prior_and_an_item_out_of_the_window_the_lowest():
    events = timeline([("a", 9), ("a", 9), ("b", 2)])  # c, d: never chosen before day 10
    counts = events.counts_before(np.array([10]), 3)  # b is out of the 3-day window
    unseen = events.unseen_before(np.array([10]))
    assert unseen[0].tolist() == [False, False, True, True]
    assert events.unseen_before(np.array([2]))[0].tolist() == [True] * 4  # b's own day: not before it
    prior = with_prior(torch.zeros(1, 4), counts, RecencyPrior(1.0, 3), unseen)[0]
    assert prior[0] > prior[2] == prior[3] == 0 > prior[1]


def test_a_constant_row_standardises_to_zero():
    assert torch.equal(standardised(torch.ones(2, 3)), torch.zeros(2, 3))


def flat_scorer(histories: list[list[str]]) -> torch.Tensor:
    """A model that knows nothing: every item ties, except a small preference for later columns."""
    return torch.arange(len(ITEMS), dtype=torch.float32).expand(len(histories), -1) * 1e-3


def cases_choosing(target: str, day: int, n: int) -> EvalSet:
    return EvalSet([f"u{i}" for i in range(n)], [[] for _ in range(n)], [target] * n, [day * DAY_S + 60] * n)


def test_validation_turns_the_prior_on_where_last_week_s_favourite_is_chosen_next():
    # "a" was popular long ago, "b" in the week before the choices, which all pick "b"; c and d were
    # chosen once long ago (an item never chosen would get the average prior, not the lowest)
    events = timeline([("a", 1)] * 20 + [("b", 25)] * 5 + [("c", 1), ("d", 1)])
    chosen, curve = choose_prior(flat_scorer, cases_choosing("b", 30, 8), events, ITEMS, [0.25, 1.0, 2.0], [0, 7],
                                 k=1)
    assert chosen == RecencyPrior(1.0, 7)  # the lightest weight and the shortest window that rank b first
    assert curve["off"] == 0.0 and curve["weight 0.25, 7 days"] == 0.0 and curve["weight 1, 7 days"] == 1.0
    assert curve["weight 2, all days"] == 0.0  # over all history a is the favourite


def test_validation_keeps_the_prior_off_where_the_model_already_ranks_the_choice_first():
    def knows(histories):
        return torch.tensor([[0.0, 0.0, 0.0, 10.0]]).expand(len(histories), -1)

    events = timeline([("a", 25)] * 50)
    chosen, curve = choose_prior(knows, cases_choosing("d", 30, 4), events, ITEMS, [0.25, 4.0], [7], k=1)
    assert chosen == RecencyPrior()
    assert curve["off"] == 1.0 and curve["weight 4, 7 days"] == 0.0


def test_a_target_s_own_event_never_counts_for_it():
    # the only events of "c" are the choices themselves, on the cases' own day
    events = timeline([("c", 30)] * 5 + [("a", 29)])
    ranks = rank_eval_set(flat_scorer, cases_choosing("c", 30, 5), ITEMS, 2,
                          adjust=case_prior(events, RecencyPrior(4.0, 7), cases_choosing("c", 30, 5)).adjust)
    assert (ranks.ranks >= 1).all() and (ranks.top_items[:, 0] == 0).all()  # "a" first: c gained nothing


def test_a_night_s_scorer_counts_before_the_night_for_every_history():
    events = timeline([("d", 9), ("a", 2), ("a", 3)])
    prior = RecencyPrior(1.0, 3)
    scorer = scorer_as_of(flat_scorer, events, prior, as_of_day=10)
    unseen = events.unseen_before(np.array([10]))
    assert unseen[0].tolist() == [False, True, True, False]  # b and c: no event before the night
    expected = with_prior(flat_scorer([[]]), events.counts_before(np.array([10]), 3), prior, unseen)
    assert torch.allclose(scorer([[], ["a"]]), expected.expand(2, -1))
    assert scorer_as_of(flat_scorer, events, RecencyPrior(), 10) is flat_scorer


@pytest.mark.parametrize("record, expected", [
    (None, RecencyPrior()), ({"weight": 2, "window_days": 30}, RecencyPrior(2.0, 30)), ("junk", RecencyPrior())])
def test_the_recorded_prior_reads_back_and_a_version_without_one_serves_none(record, expected):
    assert RecencyPrior.from_record(record) == expected
    assert RecencyPrior.from_record(expected.as_record()) == expected
