"""The synthetic warehouse: deterministic, consistent, and with structure a model can learn."""

from __future__ import annotations

import time
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
import yaml

from pipelines.core import schema
from pipelines.datasets.synthetic import generate_warehouse, planted_interest_groups

PARAMS = Path(__file__).resolve().parents[3] / "params.yaml"
SMALL = dict(
    n_users=80, n_items=60, n_groups=3, n_categories=5, start_date="2026-01-01", days=20, events_per_user_per_day=0.5
)
HOUSEHOLDS = {**SMALL, "n_households": 12}


def read_tables(url: str) -> dict[str, pd.DataFrame]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        tables = {
            name: pd.read_sql(sa.select(table).order_by(*table.primary_key.columns), conn)
            for name, table in (("users", schema.users), ("items", schema.items), ("interactions", schema.interactions))
        }
    engine.dispose()
    return tables


def read_group_tables(url: str) -> dict[str, pd.DataFrame]:
    """group_members and group_events in a fixed order (they have no primary key)."""
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        tables = {table.name: pd.read_sql(sa.select(table).order_by(*table.columns), conn)
                  for table in (schema.group_members, schema.group_events)}
    engine.dispose()
    return tables


@pytest.fixture(scope="module")
def demo_params() -> dict:
    return yaml.safe_load(PARAMS.read_text())["demo_data"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory, demo_params):
    """The warehouse of the embedded default (params.yaml's demo_data), generated once."""
    url = f"sqlite:///{tmp_path_factory.mktemp('demo')}/w.db"
    began = time.perf_counter()
    counts = generate_warehouse(url, **demo_params)
    elapsed = time.perf_counter() - began
    tables = read_tables(url)
    events = tables["interactions"].merge(
        tables["items"][["item_id", "categories"]], on="item_id", how="left", validate="many_to_one"
    )
    events["category"] = events["categories"].str.split("|").str[0]
    return {"url": url, "counts": counts, "elapsed": elapsed, "events": events, **tables}


def test_default_sizes_counts_and_speed(demo, demo_params):
    groups = read_group_tables(demo["url"])
    assert demo["counts"] == {name: len(frame) for name, frame in {**demo, **groups}.items()
                              if name in ("users", "items", "interactions", *schema.GROUP_TABLES)}
    assert demo["counts"]["users"] == demo_params["n_users"]
    assert demo["counts"]["items"] == demo_params["n_items"]
    # Poisson(rate) per user and day, fewer for users who join during the period.
    full = demo_params["n_users"] * demo_params["days"] * demo_params["events_per_user_per_day"]
    assert 0.6 * full < demo["counts"]["interactions"] < 1.1 * full
    # "A few seconds" on a developer machine; generous for a loaded CI runner.
    assert demo["elapsed"] < 30


def test_same_seed_gives_identical_rows(tmp_path):
    first = f"sqlite:///{tmp_path}/a.db"
    second = f"sqlite:///{tmp_path}/b.db"
    generate_warehouse(first, seed=3, **SMALL)
    generate_warehouse(second, seed=3, **SMALL)
    for name, frame in read_tables(first).items():
        pd.testing.assert_frame_equal(frame, read_tables(second)[name], obj=name)


def test_different_seeds_differ(tmp_path):
    first = f"sqlite:///{tmp_path}/a.db"
    second = f"sqlite:///{tmp_path}/b.db"
    generate_warehouse(first, seed=3, **SMALL)
    generate_warehouse(second, seed=4, **SMALL)
    a, b = read_tables(first), read_tables(second)
    assert list(a["items"]["title"]) != list(b["items"]["title"])
    pairs = lambda t: set(zip(t["interactions"]["user_id"], t["interactions"]["item_id"]))  # noqa: E731
    assert pairs(a) != pairs(b)


def test_every_event_refers_to_existing_user_and_item(demo):
    events = demo["events"]
    assert events["user_id"].isin(demo["users"]["user_id"]).all()
    assert events["item_id"].isin(demo["items"]["item_id"]).all()
    created = demo["items"].set_index("item_id")["created_at"]
    assert (events["ts"] >= events["item_id"].map(created)).all(), "an event before its item existed"
    joined = demo["users"].set_index("user_id")["created_at"]
    assert (events["ts"] >= events["user_id"].map(joined)).all(), "an event before its user joined"


def test_events_are_numbered_in_time_order_inside_the_period(demo, demo_params):
    events = demo["events"]
    assert list(events["event_id"]) == list(range(1, len(events) + 1))
    assert events["ts"].is_monotonic_increasing
    start = datetime.strptime(demo_params["start_date"], "%Y-%m-%d")
    assert events["ts"].min() >= start
    assert events["ts"].max() < start + timedelta(days=demo_params["days"])
    assert set(events["event_type"]) == {"view", "click", "like", "purchase"}
    assert events["event_type"].value_counts().idxmax() == "view"
    assert events["rating"].isna().all()


def test_no_user_sees_an_item_twice(demo):
    assert not demo["events"].duplicated(["user_id", "item_id"]).any()


def test_popularity_has_a_long_tail(demo):
    counts = demo["events"]["item_id"].value_counts()
    top = int(np.ceil(0.1 * len(demo["items"])))
    share = counts.iloc[:top].sum() / counts.sum()
    assert share > 0.3, f"the top 10% of items hold only {share:.0%} of events (uniform: 10%)"


def test_next_item_follows_the_previous_one(demo):
    """Consecutive events share a category far more often than each user's own mix predicts.

    Shuffling each user's sequence keeps their category mix and popularity but destroys order,
    so the gap is the sequential signal alone.
    """
    events = demo["events"]
    rng = np.random.default_rng(0)
    shuffle = lambda column: rng.permutation(column.to_numpy())  # noqa: E731
    shuffled = events.assign(category=events.groupby("user_id")["category"].transform(shuffle))
    in_order, baseline = _same_category_rate(events), _same_category_rate(shuffled)
    assert in_order > 2 * baseline, (in_order, baseline)


def test_transitions_beat_popularity_on_the_last_item(demo):
    """A bigram model (what follows what, learnt from the earlier events) beats MostPop at HR@10."""
    events = demo["events"].copy()
    events["previous"] = events.groupby("user_id")["item_id"].shift()
    last = events.groupby("user_id").tail(1).dropna(subset=["previous"])
    train = events.drop(last.index)
    followers = (
        train.dropna(subset=["previous"]).groupby(["previous", "item_id"]).size().rename("n").reset_index()
        .sort_values(["previous", "n", "item_id"], ascending=[True, False, True])
        .groupby("previous")["item_id"].apply(list)
    )
    popular = list(train["item_id"].value_counts().index)
    seen = train.groupby("user_id")["item_id"].agg(set)
    bigram_hits = popular_hits = 0
    for row in last.itertuples():
        history = seen.get(row.user_id, set())
        by_popularity = [i for i in popular if i not in history][:10]
        by_transition = [i for i in followers.get(row.previous, []) if i not in history]
        by_transition = (by_transition + [i for i in by_popularity if i not in by_transition])[:10]
        bigram_hits += row.item_id in by_transition
        popular_hits += row.item_id in by_popularity
    assert len(last) > 300
    assert bigram_hits > 2 * popular_hits, (bigram_hits, popular_hits, len(last))


def test_category_mix_drifts_slowly(demo):
    events = demo["events"]
    week = (events["ts"] - events["ts"].min()).dt.days // 7
    mix = pd.crosstab(week, events["category"], normalize="index")
    distance = lambda a, b: 0.5 * float(np.abs(mix.loc[a] - mix.loc[b]).sum())  # noqa: E731
    last_full_week = int(week.max()) - 1
    first_to_last, first_to_second = distance(0, last_full_week), distance(0, 1)
    # Only the share of a group's preference outside its home categories drifts (HOME_CATEGORY_SHARE).
    assert first_to_last > 0.06, first_to_last
    assert first_to_last > first_to_second + 0.03, (first_to_second, first_to_last)


def test_new_items_and_users_appear_during_the_period(demo, demo_params):
    start = datetime.strptime(demo_params["start_date"], "%Y-%m-%d")
    new_items = demo["items"].loc[demo["items"]["created_at"] > start, "item_id"]
    new_users = demo["users"].loc[demo["users"]["created_at"] > start, "user_id"]
    assert 0.05 * len(demo["items"]) < len(new_items) < 0.5 * len(demo["items"])
    assert 0.05 * len(demo["users"]) < len(new_users) < 0.5 * len(demo["users"])
    assert demo["events"]["item_id"].isin(new_items).sum() > 100
    assert demo["events"]["user_id"].isin(new_users).sum() > 100


def test_items_and_users_carry_text(demo):
    items, users = demo["items"], demo["users"]
    assert items["title"].str.len().gt(0).all() and items["title"].is_unique
    primary = items["categories"].str.split("|").str[0]
    assert all(category in text for category, text in zip(primary, items["description"]))
    assert items["categories"].str.split("|").str.len().isin([1, 2]).all()
    assert users["user_id"].str.fullmatch(r"u\d{4}").all()
    assert users["attributes"].str.fullmatch(r"age \d+, likes .+ and .+").all()


def test_sizes_are_configurable(tmp_path):
    url = f"sqlite:///{tmp_path}/w.db"
    counts = generate_warehouse(
        url, seed=1, n_users=12_345, n_items=30, n_groups=2, n_categories=20,
        start_date="2025-06-01", days=3, events_per_user_per_day=0.2,
    )
    tables = read_tables(url)
    assert counts["users"] == len(tables["users"]) == 12_345
    assert counts["items"] == len(tables["items"]) == 30
    assert tables["users"]["user_id"].iloc[-1] == "u12345"  # ids widen past 4 digits
    categories = set("|".join(tables["items"]["categories"]).split("|"))
    assert len(categories) <= 20 and len(categories) > 5
    assert tables["interactions"]["ts"].min() >= datetime(2025, 6, 1)
    assert tables["interactions"]["ts"].max() < datetime(2025, 6, 4)


def test_replaces_rows_but_leaves_other_tables_alone(tmp_path):
    url = f"sqlite:///{tmp_path}/w.db"
    engine = sa.create_engine(url)
    schema.create_warehouse_tables(engine)
    with engine.begin() as conn:
        conn.execute(schema.recommendations.insert(), [
            {"run_date": "2026-01-05", "user_id": "u0001", "rank": 1, "item_id": "i0001", "score": 0.5, "model_version": 1}
        ])
    generate_warehouse(url, seed=1, **{**SMALL, "n_users": 200})
    counts = generate_warehouse(url, seed=2, **SMALL)
    tables = read_tables(url)
    assert {name: len(frame) for name, frame in tables.items()} == counts
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(schema.recommendations)).scalar_one() == 1
    engine.dispose()


@pytest.mark.parametrize(
    "bad", [{"n_users": 0}, {"days": 0}, {"n_categories": 0}, {"events_per_user_per_day": -1.0}, {"n_households": -1}]
)
def test_rejects_impossible_sizes(tmp_path, bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        generate_warehouse(f"sqlite:///{tmp_path}/w.db", seed=1, **{**SMALL, **bad})


def _same_category_rate(events: pd.DataFrame) -> float:
    previous = events.groupby("user_id")["category"].shift()
    has_previous = previous.notna()
    return float((events.loc[has_previous, "category"] == previous[has_previous]).mean())


@pytest.mark.postgres
def test_postgresql_gets_the_same_rows_as_sqlite(postgres_url, tmp_path):
    sqlite_url = f"sqlite:///{tmp_path}/w.db"
    generate_warehouse(sqlite_url, seed=5, **SMALL)
    generate_warehouse(postgres_url, seed=5, **SMALL)  # twice: the second replaces the first
    counts = generate_warehouse(postgres_url, seed=5, **SMALL)
    expected = read_tables(sqlite_url)
    for name, frame in read_tables(postgres_url).items():
        assert len(frame) == counts[name]
        pd.testing.assert_frame_equal(frame, expected[name], obj=name, check_dtype=False)


def test_start_date_may_be_a_date(tmp_path):
    """YAML turns an unquoted 2026-01-01 into a date; both spellings give the same warehouse."""
    as_text, as_date = f"sqlite:///{tmp_path}/a.db", f"sqlite:///{tmp_path}/b.db"
    generate_warehouse(as_text, seed=3, **SMALL)
    generate_warehouse(as_date, seed=3, **{**SMALL, "start_date": date(2026, 1, 1)})
    pd.testing.assert_frame_equal(read_tables(as_text)["interactions"], read_tables(as_date)["interactions"])


# --- explicit groups (households) ------------------------------------------------------------------


def test_households_are_deterministic_and_leave_the_other_tables_as_they_were(tmp_path):
    with_households, again, without = (f"sqlite:///{tmp_path}/{name}.db" for name in ("a", "b", "c"))
    counts = generate_warehouse(with_households, seed=3, **HOUSEHOLDS)
    generate_warehouse(again, seed=3, **HOUSEHOLDS)
    generate_warehouse(without, seed=3, **SMALL)
    assert set(counts) == {"users", "items", "interactions", *schema.GROUP_TABLES}
    for name, frame in read_group_tables(with_households).items():
        assert len(frame) == counts[name] > 0
        pd.testing.assert_frame_equal(frame, read_group_tables(again)[name], obj=name)
    for name, frame in read_tables(with_households).items():  # households are drawn after everything else
        pd.testing.assert_frame_equal(frame, read_tables(without)[name], obj=name)


def test_a_warehouse_without_households_has_no_group_tables(tmp_path):
    url = f"sqlite:///{tmp_path}/w.db"
    generate_warehouse(url, seed=1, **HOUSEHOLDS)
    counts = generate_warehouse(url, seed=1, **{**SMALL, "n_households": 0})  # an earlier load's groups go
    engine = sa.create_engine(url)
    assert set(counts) == {"users", "items", "interactions"}
    assert not set(schema.GROUP_TABLES) & set(sa.inspect(engine).get_table_names())
    engine.dispose()


def test_households_are_small_and_mostly_of_one_planted_interest_group(demo, demo_params):
    members = read_group_tables(demo["url"])["group_members"]
    sizes = members.groupby("group_id").size()
    assert len(sizes) == demo_params["n_households"] and sizes.between(2, 4).all()
    assert not members.duplicated(["group_id", "user_id"]).any()
    planted = members["user_id"].map(planted_interest_groups(**demo_params))
    largest_share = planted.groupby(members["group_id"]).agg(lambda main: main.value_counts().iloc[0] / len(main))
    # Each further member shares the first one's group with p = 0.85 + 0.15 / n_groups: ~0.8 of households agree fully.
    assert largest_share.mean() > 0.8 and (largest_share == 1).mean() > 0.6


def test_household_events_happen_while_members_exist_and_items_are_out(demo):
    groups = read_group_tables(demo["url"])
    members, events = groups["group_members"], groups["group_events"]
    joined = demo["users"].set_index("user_id")["created_at"]
    assert (members["joined_at"] >= members["user_id"].map(joined)).all() and members["left_at"].isna().all()
    assert (events["ts"] >= events["group_id"].map(members.groupby("group_id")["joined_at"].max())).all()
    assert (events["ts"] >= events["item_id"].map(demo["items"].set_index("item_id")["created_at"])).all()
    assert not events.duplicated(["group_id", "item_id"]).any()  # a household never picks an item twice
    assert set(events["event_type"]) <= set(schema.EVENT_TYPES)
    assert 3 <= events.groupby("group_id").size().median() <= 12  # a few over the period


def test_household_choices_follow_their_members_tastes(demo):
    """A household's events fall in the categories its members' own events favour, more than in
    those of another household's members (how much more depends on how distinct the interest
    groups are: about 1.35x to 2.6x for the latent models this generator has had)."""
    groups = read_group_tables(demo["url"])
    members, events = groups["group_members"], groups["group_events"]
    taste = pd.crosstab(demo["events"]["user_id"], demo["events"]["category"], normalize="index")
    household_taste = taste.reindex(members["user_id"]).fillna(0.0).groupby(members["group_id"].to_numpy()).mean()
    category = events["item_id"].map(demo["items"].set_index("item_id")["categories"].str.split("|").str[0])
    own = [household_taste.at[group, cat] for group, cat in zip(events["group_id"], category)]
    others = [household_taste.at[group, cat] for group, cat in zip(np.roll(events["group_id"], 17), category)]
    assert np.mean(own) > 1.2 * np.mean(others), (np.mean(own), np.mean(others))


@pytest.mark.postgres
def test_postgresql_gets_the_same_households_as_sqlite(postgres_url, tmp_path):
    sqlite_url = f"sqlite:///{tmp_path}/w.db"
    generate_warehouse(sqlite_url, seed=5, **HOUSEHOLDS)
    counts = generate_warehouse(postgres_url, seed=5, **HOUSEHOLDS)
    expected = read_group_tables(sqlite_url)
    for name, frame in read_group_tables(postgres_url).items():
        assert len(frame) == counts[name]
        pd.testing.assert_frame_equal(frame, expected[name], obj=name, check_dtype=False)


def test_planted_interest_groups_are_distinct_communities(demo, demo_params):
    from pipelines.datasets.synthetic import _category_names, planted_interest_groups

    planted = planted_interest_groups(**demo_params)
    assert planted == planted_interest_groups(**demo_params)  # the same draws as the warehouse's
    assert set(planted) == set(demo["users"]["user_id"])
    assert set(planted.values()) == set(range(demo_params["n_groups"]))
    # Each group's events fall in its home categories (category index % n_groups == group) far more
    # often than chance (1 / n_groups), which is what lets a model tell the groups apart.
    events = demo["events"].assign(group=demo["events"]["user_id"].map(planted))
    home = {name: index % demo_params["n_groups"]
            for index, name in enumerate(_category_names(demo_params["n_categories"]))}
    share = (events["category"].map(home) == events["group"]).groupby(events["group"]).mean()
    assert (share > 2.5 / demo_params["n_groups"]).all(), share.to_dict()
