"""bench/groups.py and its modes: the ConsRec protocol's counts and rows, the sampled protocol, the
recommendations file, synthetic groups (Kaya et al. 2020), simulated cold users, and (slow) the
synthetic and cold commands end to end on a tiny MovieLens-format directory."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from bench import groups as bench
from bench import groups_cold as cold
from bench import groups_ours as ours
from bench import groups_synthetic as synthetic
from pipelines.groups import baselines as gb
from pipelines.groups.evaluation import groups_satisfaction, member_satisfaction
from tests.bench.test_quality_cli import write_movielens_100k
from tests.conftest import PROJECT_ROOT
from tests.pipelines.datasets.test_consrec import write_layout


# -- the ConsRec mode -----------------------------------------------------------------------------
def test_the_validation_split_holds_out_one_item_no_member_has_per_group_with_two_or_more():
    train = {"a": [1, 2, 3], "b": [4], "c": [5, 5, 6], "d": [7, 8]}
    members = {"a": {1, 2}, "c": set(), "d": {7, 8}}  # in d, every item is in a member's history
    fit, held_out = bench.split_validation(train, members, seed=0)
    assert held_out["a"] == 3 and set(held_out) == {"a", "c"}
    assert fit["b"] == [4] and fit["d"] == [7, 8]
    assert all(held_out[g] not in fit[g] and sorted(fit[g] + [held_out[g]]) == sorted(set(train[g]))
               for g in held_out)


def test_ours_rows_move_onto_the_catalogue_and_an_item_the_profiles_lack_ranks_last():
    ours = {"item_ids": ["b", "a"], "scores": {"average": np.array([[1.0, 2.0], [3.0, -np.inf]])}}
    rows = bench.ours_rows(ours, ["a", "b", "c"])["average"]
    assert rows.tolist() == [[2.0, 1.0, -np.inf], [-np.inf, 3.0, -np.inf]]


def test_ease_weights_from_the_eigendecomposition_equal_the_direct_inverse():
    rows = np.random.default_rng(0).integers(0, 2, size=(30, 12)).astype(float)
    gram = rows.T @ rows
    inverse = np.linalg.inv(gram + 50.0 * np.eye(12))
    direct = -inverse / np.diag(inverse)[None, :]
    np.fill_diagonal(direct, 0.0)
    assert gb.EaseFamily(rows).weights(50.0) == pytest.approx(direct, abs=1e-10)


def test_the_bench_writes_every_model_the_sampled_protocol_and_the_recommendations(tmp_path):
    (tmp_path / "tiny").mkdir()
    dataset = write_layout(tmp_path / "tiny")
    assert bench.main([str(dataset), "--out", str(tmp_path / "out"), "--lambdas", "1,10", "--baselines-only"]) == 0
    document = json.loads((tmp_path / "out" / "groups-tiny.json").read_text())
    assert document["protocol"]["cases"] == 2 and document["protocol"]["leaking_test_pairs_dropped"] == 1
    assert set(document["models"]) == {"MostPop", "GroupEASE", "EASE + average", "EASE + least misery"}
    assert all(0.0 <= row["ndcg@10"] <= row["hr@10"] <= 1.0 for row in document["models"].values())
    assert document["models"]["GroupEASE"]["lambda"] in (1.0, 10.0)

    sampled = document["sampled_protocol"]
    assert "published tables only" in sampled["note"]
    assert set(sampled["models"]) == set(document["models"])
    assert all(0.0 <= row["ndcg@10"] <= row["hr@10"] <= 1.0 for row in sampled["models"].values())
    # 7 items: group 1 has 3 training and test items, so 4 negatives remain for (1, 103); the file
    # lists 200-202 for it, which are not in the catalogue and are refused.
    negatives = sampled["negatives"]
    assert negatives["cases_with_listed_negatives"] == 1 and negatives["listed_negatives_refused"] == 3
    assert negatives["cases_with_fewer_negatives"] == 2
    assert document["recommendations"] == {"model": "GroupEASE", "k": 20, "groups": 2}

    with open(tmp_path / "out" / "group-recs-tiny.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["group_id", "rank", "item_id"]
    by_group: dict[str, list[tuple[int, str]]] = {}
    for row in rows:
        by_group.setdefault(row["group_id"], []).append((int(row["rank"]), row["item_id"]))
    assert set(by_group) == {"1", "2"}  # every group of the test file, the dataset's own ids
    training = {"1": {"100", "101"}, "2": {"102"}}
    catalogue = {"100", "101", "102", "103", "104", "105", "106"}
    for group, recs in by_group.items():
        assert [rank for rank, _ in recs] == list(range(1, len(recs) + 1))
        assert {item for _, item in recs} == catalogue - training[group]  # all that is left, under 20


def test_bad_arguments_are_refused():
    for argv in (["d", "--lambdas", "ten"], ["d", "--lambdas", "0,10"], ["d", "--budget-minutes", "0"],
                 ["d", "--sizes", "1,2"], ["d", "--cold-share", "0"], ["d", "--strengths", "-1"],
                 ["d", "--groups-per-cell", "0"]):
        with pytest.raises(SystemExit):
            bench.parse_args(argv)
    args = bench.parse_args(["--synthetic", "ml", "--budget-minutes", "2", "--sizes", "2,8"])
    assert args.synthetic and not args.cold and args.sizes == [2, 8] and args.budget_minutes == 2.0
    assert bench.parse_args(["d"]).strengths == [0.0, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0]


# -- the sampled protocol -------------------------------------------------------------------------
def test_sampled_ranks_count_every_tie_against_the_positive():
    scores = np.array([[5.0, 5.0, 5.0, 1.0, 9.0],
                       [2.0, 1.0, 1.0, 1.0, 0.0]])
    negatives = [np.array([1, 2, 3]), np.array([1, 2, 3])]
    # Row 0: two negatives tie with the positive (column 0): both rank above it. Row 1: none does.
    assert bench.sampled_ranks(scores, [0, 0], negatives).tolist() == [2, 0]
    metrics = bench.sampled_metrics(scores, [0, 0], negatives, k=1)
    assert metrics == {"ndcg@1": 0.5, "hr@1": 0.5}
    # A constant scorer puts the positive last among its 100 negatives.
    flat = np.zeros((1, 200))
    assert bench.sampled_ranks(flat, [0], [np.arange(1, 101)]).tolist() == [100]


def test_sampled_negatives_avoid_the_groups_items_and_are_seeded():
    column = {str(i): i for i in range(300)}
    forbidden = {"g": {0, 1, 2, 3}}
    listed = {("g", "5"): ["1", "6", "7", "7", "999"]}  # 1 is the group's, 7 twice, 999 unknown
    cases = [("g", "5"), ("g", "8")]
    negatives, counts = bench.sampled_negatives(cases, listed, column, forbidden, 100, seed=3)
    assert [len(n) for n in negatives] == [100, 100]
    assert negatives[0][:2].tolist() == [6, 7]  # the listed ones first
    for (group, item), cols in zip(cases, negatives):
        assert len(set(cols.tolist())) == 100
        assert not set(cols.tolist()) & (forbidden[group] | {column[item]})
    assert counts == {"cases_with_listed_negatives": 1, "listed_negatives_used": 2, "listed_negatives_refused": 3,
                      "negatives_drawn": 198, "cases_with_fewer_negatives": 0}
    again, _ = bench.sampled_negatives(cases, listed, column, forbidden, 100, seed=3)
    assert all((a == b).all() for a, b in zip(negatives, again))


# -- synthetic groups -----------------------------------------------------------------------------
def planted_ratings(users: int = 100, blocks: int = 10, per_block: int = 20, seed: int = 0) -> np.ndarray:
    """Users in ``blocks`` taste clusters, each rating items of its own block, plus noise: pairs in a
    cluster correlate strongly, pairs across clusters hardly (so divergent groups of 8 exist)."""
    rng = np.random.default_rng(seed)
    rows = np.zeros((users, blocks * per_block))
    for user in range(users):
        block = user % blocks
        liked = rng.choice(np.arange(block * per_block, (block + 1) * per_block), size=10, replace=False)
        rows[user, liked] = rng.integers(3, 6, size=10)
        rows[user, rng.choice(rows.shape[1], size=3, replace=False)] = rng.integers(1, 6, size=3)
    return rows


def test_pearson_is_numpys_on_zero_filled_rows_and_a_constant_row_correlates_zero():
    rows = planted_ratings()
    assert synthetic.pearson(rows) == pytest.approx(np.corrcoef(rows))
    with_constant = np.vstack([rows[:3], np.zeros(rows.shape[1])])
    similarity = synthetic.pearson(with_constant)
    assert similarity[3, :3].tolist() == [0.0, 0.0, 0.0] and similarity[3, 3] == 1.0


@pytest.mark.parametrize("kind", synthetic.KINDS)
@pytest.mark.parametrize("size", [2, 4, 8])
def test_groups_have_their_size_distinct_members_and_their_kinds_pearson_rule(kind, size):
    similarity = synthetic.pearson(planted_ratings())
    groups, tried = synthetic.build_groups(similarity, kind, size, count=40, seed=7)
    assert len(groups) == 40 and tried >= 40
    for group in groups:
        assert len(group) == size and len(set(group.tolist())) == size
        for position in range(1, size):
            to_earlier = similarity[group[position], group[:position]]
            if kind == "similar":  # at least one member already in the group at >= 0.3
                assert to_earlier.max() >= synthetic.SIMILAR_MIN_PCC
            elif kind == "divergent":  # every member already in the group below 0.1
                assert to_earlier.max() < synthetic.DIVERGENT_MAX_PCC
    again, _ = synthetic.build_groups(similarity, kind, size, count=40, seed=7)
    assert all((a == b).all() for a, b in zip(groups, again))
    other, _ = synthetic.build_groups(similarity, kind, size, count=40, seed=8)
    assert any((a != b).any() for a, b in zip(groups, other))


def test_the_kinds_differ_in_their_members_correlation():
    similarity = synthetic.pearson(planted_ratings())
    means = {kind: np.mean([synthetic.mean_pairwise(similarity, g)
                            for g in synthetic.build_groups(similarity, kind, 4, 50, seed=0)[0]])
             for kind in synthetic.KINDS}
    assert means["similar"] > means["random"] > means["divergent"]


def test_a_seed_that_cannot_complete_its_group_is_skipped_and_a_hopeless_cell_gives_up():
    similarity = np.full((5, 5), 0.5)
    np.fill_diagonal(similarity, 1.0)  # everyone correlates: no divergent pair exists
    assert synthetic.grow_group(similarity, "divergent", 2, 0, np.random.default_rng(0)) is None
    groups, tried = synthetic.build_groups(similarity, "divergent", 2, count=3, seed=0)
    assert groups == [] and tried == synthetic.SEED_ATTEMPTS * 3
    with pytest.raises(ValueError, match="unknown group kind"):
        synthetic.allowed_next(similarity, [0], "friends")


def sequences_frame() -> pd.DataFrame:
    return pd.DataFrame({"user_id": ["u1", "u2", "u3", "u4"],
                         "train_items": [["a", "b"], ["b", "c"], ["a"], ["c"]],
                         "valid_item": ["c", "d", "b", None],
                         "test_item": ["d", "a", "e", None]})


def test_the_population_and_the_ratings_use_training_items_only():
    items = ["a", "b", "c", "d", "e"]
    people = synthetic.population(sequences_frame(), items)
    assert people.user_ids == ["u1", "u2", "u3"]  # u4 has no held-out items
    assert people.train == [[0, 1], [1, 2], [0]] and people.train_valid == [[0, 1, 2], [1, 2, 3], [0, 1]]
    assert people.valid_target.tolist() == [2, 3, 1] and people.test_target.tolist() == [3, 0, 4]
    assert people.scorer_histories("test")[0] == ["a", "b", "c"]
    ts = pd.to_datetime(["2020-01-01", "2020-01-02", "2020-01-03", "2020-01-01", "2020-01-05", "2020-01-02"])
    events = pd.DataFrame({"event_id": range(1, 7), "user_id": ["u1", "u1", "u1", "u2", "u2", "u3"],
                           "item_id": ["a", "a", "c", "b", "c", "a"], "rating": [2.0, 4.0, 5.0, 3.0, None, 1.0],
                           "ts": ts})
    rows = synthetic.rating_rows(people, events, items)
    # u1 rated a twice (the last, 4, counts) and c (its validation item: not a training rating).
    assert rows.tolist() == [[4.0, 1.0, 0.0, 0.0, 0.0], [0.0, 3.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0, 0.0]]


def test_many_groups_are_scored_as_member_satisfaction_scores_each():
    rng = np.random.default_rng(1)
    scores = rng.normal(size=(30, 40))
    scores[:, 5] = scores[:, 6]  # a tie
    targets = [rng.choice(40, size=int(rng.integers(1, 5)), replace=False).tolist() for _ in range(30)]
    excluded = [rng.choice(40, size=10, replace=False).tolist() for _ in range(30)]
    means, least = groups_satisfaction(scores, targets, excluded, k=10, chunk=7)
    expected = [member_satisfaction(s, t, e, 10) for s, t, e in zip(scores, targets, excluded)]
    assert means.tolist() == pytest.approx([m for m, _ in expected])
    assert least.tolist() == pytest.approx([low for _, low in expected])
    with pytest.raises(ValueError):
        groups_satisfaction(scores[:1], [[]], [[]], k=10)


def test_a_members_target_another_member_has_seen_is_a_miss_for_the_group():
    items = ["a", "b", "c", "d", "e"]
    people = synthetic.population(sequences_frame(), items)
    # u1's test item d is u2's validation item, so in u2's test history, and u2's test item a is in
    # u1's: the group can get neither.
    cell = synthetic.Cell("x", [np.array([0, 1])],
                          {phase: [sorted(set(people.phase(phase)[0][0]) | set(people.phase(phase)[0][1]))]
                           for phase in ("validation", "test")})
    assert cell.unreachable(people, "test") == 1.0 and cell.groups_with_unreachable(people, "test") == 1.0
    scores = np.zeros((3, 5))
    scores[:, 3] = 10.0  # everyone loves d
    scores[:, 4] = 5.0
    values = synthetic.cell_satisfaction(scores, cell, people, "test", "average", relevant_items=20)
    # u2's target a is excluded too (u1 has it), so both members miss although d scores highest,
    # even though a ranking of the one item left (e) would put each second, inside the top 10.
    assert values[synthetic.MEAN].tolist() == [0.0] and values[synthetic.LEAST].tolist() == [0.0]
    assert np.isnan(values[synthetic.LEAST_REACHABLE]).all()  # no member the list can serve
    lone = synthetic.Cell("y", [np.array([2])], {"test": [people.train_valid[2]], "validation": [people.train[2]]})
    u3 = synthetic.cell_satisfaction(scores, lone, people, "test", "average", relevant_items=20)
    # u3's target e ranks second after d: 1 / log2(3) both with and without the cutoff.
    assert u3[synthetic.LEAST].tolist() == u3[synthetic.LEAST_REACHABLE].tolist() == pytest.approx([1 / np.log2(3)])


def test_ours_strategy_and_eases_weight_are_chosen_on_validation_only():
    rng = np.random.default_rng(0)
    items = [str(i) for i in range(30)]
    users = 24
    frame = pd.DataFrame({"user_id": [f"u{u}" for u in range(users)],
                          "train_items": [[str(i) for i in rng.choice(30, 6, replace=False)] for _ in range(users)],
                          "valid_item": [str(i) for i in rng.integers(0, 30, users)],
                          "test_item": [str(i) for i in rng.integers(0, 30, users)]})
    frame["valid_item"] = [v if v not in h else str((int(v) + 1) % 30) for v, h in zip(frame["valid_item"],
                                                                                       frame["train_items"])]
    people = synthetic.population(frame, items)
    similarity = synthetic.pearson(rng.random((users, 30)))
    cells, _ = synthetic.make_cells(people, similarity, ("random",), (2, 4), 20, seed=0)
    valid = rng.normal(size=(users, 30))
    rows, values, chosen = synthetic.ours_models(valid, rng.normal(size=(users, 30)), people, cells,
                                                 ("average", "most_pleasure"), 20, seed=0)
    corrupted = people.__class__(**{**people.__dict__, "test_target": (people.test_target + 7) % 30})
    _, _, chosen_again = synthetic.ours_models(valid, rng.normal(size=(users, 30)), corrupted, cells,
                                               ("average", "most_pleasure"), 20, seed=0)
    assert chosen == chosen_again == max(rows, key=lambda s: rows[s]["validation"]["all"][synthetic.MEAN])
    ease_rows, _ = synthetic.ease_models(people, cells, 30, [1.0, 100.0], seed=0)
    ease_again, _ = synthetic.ease_models(corrupted, cells, 30, [1.0, 100.0], seed=0)
    assert [r["lambda"] for r in ease_rows.values()] == [r["lambda"] for r in ease_again.values()]


def test_the_target_summary_compares_the_named_baseline_on_the_named_groups():
    def cell(mean, least):
        return {synthetic.MEAN: np.array(mean), synthetic.LEAST: np.array(least)}

    ours_values = {"random-2": cell([0.4, 0.6], [0.2, 0.2]), "divergent-8": cell([0.3, 0.3], [0.23, 0.23])}
    base = {"EASE + average": {"random-2": cell([0.4, 0.4], [0.1, 0.1]), "divergent-8": cell([0.3, 0.3], [0.1, 0.1])},
            "EASE + least misery": {"random-2": cell([0.1, 0.1], [0.1, 0.1]),
                                    "divergent-8": cell([0.1, 0.1], [0.2, 0.2])}}
    summary = synthetic.target_summary(ours_values, base, seed=0)
    assert summary["mean_member"]["relative"] == pytest.approx(1.6 / 1.4 - 1, abs=1e-4)
    assert summary["mean_member"]["met"] is True  # +14.3% >= +10%
    divergent = summary["divergent_8_least_satisfied"]
    assert divergent["baseline"] == "EASE + least misery" and divergent["groups"] == "divergent-8"
    assert divergent["relative"] == pytest.approx(0.15) and divergent["met"] is True
    assert divergent["relative_ci95"] == pytest.approx([0.15, 0.15])  # every group gains 15%: every resample too
    base["EASE + least misery"]["divergent-8"] = cell([0.1, 0.1], [0.0, 0.0])  # a baseline at 0: no ratio
    zero = synthetic.target_summary(ours_values, base, seed=0)["divergent_8_least_satisfied"]
    assert zero["relative"] is None and zero["met"] is False and "scores 0" in zero["note"]


# -- cold users -----------------------------------------------------------------------------------
def events_frame(lengths: dict[str, int]) -> pd.DataFrame:
    rows, event_id = [], 0
    for user, n in lengths.items():
        for step in range(n):
            event_id += 1
            # equal timestamps in pairs: ties go by event id, as in the profiles stage
            rows.append((event_id, user, f"i{step}", pd.Timestamp("2020-01-01") + pd.Timedelta(days=step // 2)))
    frame = pd.DataFrame(rows, columns=["event_id", "user_id", "item_id", "ts"])
    return frame.sample(frac=1.0, random_state=0)  # the plan must not depend on row order


def test_cold_users_keep_one_to_five_training_events_and_both_targets():
    from pipelines.profiles.build import split_sequences

    lengths = {f"u{u:02d}": 20 + u for u in range(50)} | {"short": 4, "tiny": 2}
    events = events_frame(lengths)
    drop, plan = cold.cold_plan(events, 0.2, 5, seed=1)
    assert len(plan) == 10  # 20% of the 51 users with three or more events
    assert "tiny" not in plan and set(plan.values()) <= {1, 2, 3, 4, 5}
    before = split_sequences(events, 3).set_index("user_id")
    after = split_sequences(events[~events["event_id"].isin(drop)], 3).set_index("user_id")
    for user, row in after.iterrows():
        if user == "tiny":  # two events: no validation or test item, left alone
            assert row["train_items"] == before.loc[user, "train_items"]
            continue
        assert row["valid_item"] == before.loc[user, "valid_item"] and row["test_item"] == before.loc[user, "test_item"]
        kept = len(row["train_items"])
        if user in plan:  # the last n of the training events, never more
            assert kept == plan[user] and row["train_items"] == before.loc[user, "train_items"][-kept:]
        else:
            assert row["train_items"] == before.loc[user, "train_items"]
    again, plan_again = cold.cold_plan(events, 0.2, 5, seed=1)
    assert (again == drop).all() and plan_again == plan


def test_a_cold_user_with_fewer_events_than_drawn_keeps_them_all():
    events = events_frame({"a": 3, "b": 4})
    drop, plan = cold.cold_plan(events, 1.0, 5, seed=0)
    assert len(drop) == 0 and plan == {"a": 1, "b": 2}


def test_truncating_the_warehouse_deletes_the_planned_events_before_any_stage(tmp_path):
    from bench import quality

    dataset = write_movielens_100k(tmp_path / "ml", n_users=30)
    url, _ = quality.import_dataset(dataset, tmp_path)
    before = ours.warehouse_events(url)
    info = cold.truncate_warehouse(url, 0.2, 5, seed=0)
    after = ours.warehouse_events(url)
    assert info["users"] == 6 and len(before) - len(after) == info["events_deleted"] > 0
    kept = after[after["user_id"].isin(info["plan"])].groupby("user_id").size()
    assert all(kept[user] == n + 2 for user, n in info["plan"].items())
    assert sum(info["kept_training_interactions"].values()) == 6


def test_backoff_blends_only_with_a_positive_strength():
    scores = np.array([[3.0, 1.0, 0.0], [0.0, 1.0, 3.0], [0.0, 2.0, 4.0]])
    labels = np.array([0, 1, 1])
    lengths = np.array([1, 100, 1])
    assert (cold.blended(scores, labels, 2, lengths, np.arange(3), 0.0) == scores).all()
    mixed = cold.blended(scores, labels, 2, lengths, np.array([0, 2]), 5.0)
    assert mixed.shape == (2, 3) and np.argmax(mixed[0]) == 0  # its group is itself alone
    capped = cold.blended(scores, labels, 2, lengths, np.array([1, 2]), 5.0, max_interactions=10)
    from pipelines.groups.aggregation import standardised

    assert capped[0].tolist() == standardised(scores[1:2])[0].tolist()  # 100 interactions > 10: its own scores
    assert capped[1].tolist() == mixed[1].tolist()  # 1 interaction: blended as without a cap
    ndcg, hr = cold.outcomes(scores, np.array([0, 1]), np.array([0, 0, 0]), [[], [2], []], k=1)
    assert ndcg.tolist() == [1.0, 0.0] and hr.tolist() == [1.0, 0.0]


def test_the_cold_summary_states_each_target():
    def row(ndcg):
        return {"ndcg@10": ndcg, "hr@10": ndcg}

    segments = {"cold": {"with backoff": row(0.06), "without": row(0.05), "MostPop": row(0.04),
                         "with_minus_without": {"ndcg@10": {"delta": 0.01, "low": 0.0, "high": 0.02}}},
                "warm": {"with backoff": row(0.1005), "without": row(0.1)}}
    summary = cold.cold_summary(segments)
    assert summary["cold_over_MostPop"]["ratio"] == 1.5 and summary["cold_over_MostPop"]["met"]
    assert summary["cold_above_without"]["met"] and summary["warm_within_1pct"]["met"]
    segments["warm"]["with backoff"] = row(0.098)
    assert not cold.cold_summary(segments)["warm_within_1pct"]["met"]


def test_group_tables_the_warehouse_lacks_are_unmapped(tmp_path):
    import sqlalchemy as sa

    url = f"sqlite:///{tmp_path / 'w.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE interactions (event_id INTEGER)"))
    engine.dispose()
    params = {"extract": {"mapping": {"interactions": {"table": "interactions"},
                                      "group_members": {"table": "group_members"},
                                      "group_events": {"table": "group_events"}}}}
    assert ours.unmap_missing_group_tables(params, url) == ["group_members", "group_events"]
    assert list(params["extract"]["mapping"]) == ["interactions"]
    assert ours.unmap_missing_group_tables(params, url) == []


# -- end to end -----------------------------------------------------------------------------------
@pytest.mark.slow
def test_the_synthetic_and_cold_commands_write_their_results(tmp_path):
    dataset = write_movielens_100k(tmp_path / "ml-synthetic")  # 120 users: >= 1000 events after the cut
    out, scratch = tmp_path / "results", tmp_path / "scratch"
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch), "HF_HUB_OFFLINE": "1"}
    run = subprocess.run([sys.executable, "bench/groups.py", "--synthetic", "--cold", str(dataset),
                          "--budget-minutes", "0.05", "--groups-per-cell", "10", "--sizes", "2,4",
                          "--lambdas", "10,100", "--out", str(out), "--threads", "1"],
                         cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-4000:]
    assert "least-satisfied-member NDCG@10" in run.stdout and "backoff strength" in run.stdout

    document = json.loads((out / "groups-synthetic-ml-synthetic.json").read_text())
    cells = document["protocol"]["cells"]
    assert list(cells) == [f"{kind}-{size}" for kind in synthetic.KINDS for size in (2, 4)]
    assert all(cell["groups"] == 10 for cell in cells.values())
    from pipelines.groups.aggregation import STRATEGIES

    assert list(document["models"]) == ["EASE + average", "EASE + least misery", *[f"ours + {s}" for s in STRATEGIES]]
    for row in document["models"].values():
        for cell in [*cells, "all"]:
            figures = row["test"][cell]
            assert 0.0 <= figures[synthetic.LEAST] <= figures[synthetic.MEAN] <= 1.0
    assert document["ours_strategy"]["chosen"] in STRATEGIES
    assert set(document["summary"]) == {"mean_member", "divergent_8_least_satisfied"}
    assert document["summary"]["divergent_8_least_satisfied"]["met"] is False  # no groups of 8 were built
    assert document["budget_minutes"] == 0.05 and document["training"]["train_seconds"] > 0

    cold_document = json.loads((out / "groups-cold-ml-synthetic.json").read_text())
    protocol = cold_document["protocol"]
    assert protocol["truncation"]["users"] == 24 and protocol["truncated_users_with_planned_history"] == 24
    assert cold_document["segments"]["cold"]["users"] == 24 and cold_document["segments"]["warm"]["users"] == 96
    assert set(cold_document["backoff"]["validation_by_segment"]) == {"cold", "warm"}
    assert cold_document["backoff"]["strength"] in protocol["strengths"]
    for segment in cold_document["segments"].values():
        for label in ("with backoff", "without", "MostPop"):
            low, high = segment[label]["ndcg@10_ci95"]
            assert 0.0 <= low <= segment[label]["ndcg@10"] <= high <= 1.0
    assert "plan" not in protocol["truncation"]  # no per-user rows in the results
    assert not list(scratch.glob("bench-groups-*"))  # the temporary projects are gone
