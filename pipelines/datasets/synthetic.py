"""A synthetic warehouse with real, learnable structure: the embedded default's data source.

The data come from a small latent model, so that a sequential recommender has something to
learn that popularity alone does not capture:

* users belong to interest groups; each group mostly prefers its own "home" categories, the
  rest of its preference is a low-concentration Dirichlet that drifts slowly from night to night,
  and each group has favourite items of its own (a log-normal boost per group and item), so that
  the groups are distinct communities the model can find (``planted_interest_groups``);
* items have one or two categories, a long-tail popularity, and a few fixed "successor" items
  (mostly in the same category, like sequels), which users tend to pick next;
* users and items keep appearing during the period, so each night brings new ones;
* optionally, explicit groups: households of 2-4 users, mostly of one interest group, choosing
  items together from their members' blended preferences (tables ``group_members`` and
  ``group_events``).

Everything is drawn from one ``numpy.random.Generator(seed)`` in a fixed order, so the same
arguments always give identical rows. Households are drawn last: with or without them, users,
items and interactions are the same.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from types import MappingProxyType
from typing import Any

import numpy as np
import sqlalchemy as sa

from pipelines.core import schema

SECONDS_PER_DAY = 86_400
INSERT_CHUNK_ROWS = 50_000

# Behaviour of the latent model. Module constants rather than parameters: params.yaml exposes
# the sizes, and these shapes are what the tests (and the models downstream) rely on.
GROUP_CONCENTRATION = 0.3  # Dirichlet alpha of group category preferences: low = peaky, distinct
PREFERENCE_FLOOR = 0.03  # share of every group's preference spread evenly over all categories
HOME_CATEGORY_SHARE = 0.9  # of a group's preference, on its home categories (c % n_groups == group)
GROUP_FAVOURITE_SIGMA = 1.0  # log-normal spread of a group's own liking of each item
MAIN_GROUP_WEIGHT = 0.95  # the rest of a user's interest is spread over all groups
DRIFT_HORIZON_DAYS = 90  # days until group preferences have fully moved to their second draw
ZIPF_EXPONENT = 1.0  # item popularity weight ~ 1 / rank**s
SUCCESSORS_PER_ITEM = 3
SUCCESSOR_WEIGHTS = np.array([0.6, 0.3, 0.1])  # first successor is the usual "sequel"
SUCCESSOR_SAME_CATEGORY = 0.85
P_FOLLOW_SUCCESSOR = 0.5  # chance that the next event follows the previous item's successors
SECOND_CATEGORY_RATE = 0.4
PRIMARY_CATEGORY_WEIGHT = 0.7  # of an item with two categories
NEW_ITEM_SHARE = 0.15  # items whose created_at falls inside the period
NEW_USER_SHARE = 0.2  # users who join during the period
EVENT_TYPES = ("view", "click", "like", "purchase")
EVENT_TYPE_PROBS = (0.7, 0.15, 0.1, 0.05)
HOUSEHOLD_SIZES = (2, 3, 4)
HOUSEHOLD_SIZE_PROBS = (0.45, 0.35, 0.2)
HOUSEHOLD_SAME_GROUP = 0.85  # chance that a further member shares the first member's main interest group
HOUSEHOLD_EVENTS_PER_DAY = 0.12  # Poisson mean of a household's joint events per day: a few over the period

# Category name -> (title adjectives, title nouns), space-separated. Categories beyond these
# get generic words.
CATEGORY_WORDS: dict[str, tuple[str, str]] = {
    "mystery": ("Midnight Silent Hidden Vanishing Crimson", "Mystery Case Secret Clue Affair"),
    "sci-fi": ("Quantum Stellar Orbital Neon Distant", "Protocol Galaxy Signal Colony Machine"),
    "romance": ("Summer Tender Golden Sweet Endless", "Love Promise Letters Kiss Heart"),
    "comedy": ("Crazy Lucky Awkward Silly Big", "Weekend Wedding Neighbours Roommates Holiday"),
    "drama": ("Quiet Broken Long Last Bitter", "Winter Road Inheritance Years Harvest"),
    "thriller": ("Deadly Dark Final Cold Burning", "Pursuit Conspiracy Target Deadline Escape"),
    "fantasy": ("Enchanted Dragon Shadow Elven Crystal", "Kingdom Quest Crown Sword Realm"),
    "documentary": ("Wild Untold Deep Living Frozen", "Planet Oceans History Story Frontier"),
    "horror": ("Haunted Cursed Bloody Hollow Whispering", "House Woods Night Ritual Asylum"),
    "animation": ("Little Magic Brave Tiny Happy", "Robot Friends Forest Adventure Bunny"),
    "history": ("Ancient Imperial Forgotten Great Iron", "Empire Revolution Dynasty Battle Chronicle"),
    "adventure": ("Lost Savage Northern Uncharted Roaring", "Island Expedition Treasure Journey Voyage"),
    "western": ("Dusty Lonesome Outlaw Red High", "Frontier Saloon Ranch Trail Sheriff"),
    "musical": ("Singing Dancing Electric Velvet Jazz", "Melody Stage Rhythm Chorus Song"),
    "war": ("Brave Burning Steel Last Grey", "Front Regiment Siege Mission Trenches"),
    "crime": ("Dirty Smooth Double Easy Black", "Money Heist Syndicate Job Alibi"),
    "sports": ("Golden Underdog Fast Winning Final", "Season Match Race Champions Goal"),
    "family": ("Wonderful Cozy Sunny Kind Merry", "Home Summer Puppy Holiday Family"),
}
GENERIC_WORDS = ("Bright Strange Open Second New", "Story Tale Chapter Moment Picture")
PLACES = (
    "Harbor", "River", "Valley", "City", "Garden", "Mountain", "Station", "Desert", "Island",
    "Bridge", "Castle", "Village", "Lake", "Tower", "Market", "Forest", "Coast", "Street",
)


@dataclass(frozen=True)
class _World:
    """The latent model: everything the event simulation draws from."""

    category_names: list[str]
    user_ids: list[str]
    item_ids: list[str]
    item_categories: list[list[int]]  # per item, primary category first
    item_category_matrix: np.ndarray  # (items, categories), rows sum to 1
    item_popularity: np.ndarray  # (items,), sums to 1
    item_created: np.ndarray  # (items,), seconds since start_date (negative: before it)
    successors: np.ndarray  # (items, SUCCESSORS_PER_ITEM) item indices
    group_prefs: np.ndarray  # (days, groups, categories): drifting category preferences
    group_favourites: np.ndarray  # (groups, items): each group's own liking of each item, mean about 1
    user_groups: np.ndarray  # (users, groups): each row sums to 1, mostly the main group
    user_created: np.ndarray  # (users,), seconds since start_date
    user_activity: np.ndarray  # (users,), multiplier of the event rate, mean about 1


def generate_warehouse(
    url: str,
    *,
    seed: int,
    n_users: int,
    n_items: int,
    n_groups: int,
    n_categories: int,
    start_date: str | date,
    days: int,
    events_per_user_per_day: float,
    n_households: int | None = None,
) -> dict[str, int]:
    """Generates a synthetic users/items/interactions warehouse into ``url``.

    The three canonical tables (and with ``n_households`` the two group tables) are created if
    needed and their rows replaced in one transaction; other tables (``recommendations``, ...)
    are left alone. Without households the group tables are absent.

    Args:
        url: SQLAlchemy URL of the warehouse.
        seed: seed of the only random generator; the same arguments give identical rows.
        n_users, n_items, n_groups, n_categories: sizes of the latent model.
        start_date: ``YYYY-MM-DD`` (or a date, as YAML may parse it); events start at its
            midnight (naive UTC).
        days: length of the period with events.
        events_per_user_per_day: mean of each active user's daily Poisson event count.
        n_households: explicit groups of 2-4 users with their joint events; 0 or None (callers
            that predate groups) writes no group tables.

    Returns:
        Row counts per table, e.g. ``{"users": 600, "items": 400, "interactions": 12000}``.
    """
    _check_sizes(n_users=n_users, n_items=n_items, n_groups=n_groups, n_categories=n_categories, days=days)
    if events_per_user_per_day < 0:
        raise ValueError(f"events_per_user_per_day must be >= 0, got {events_per_user_per_day}")
    if n_households is not None and n_households < 0:
        raise ValueError(f"n_households must be >= 0, got {n_households}")
    start = (
        datetime.combine(start_date, datetime.min.time())
        if isinstance(start_date, date)
        else datetime.strptime(start_date, "%Y-%m-%d")
    )
    rng = np.random.default_rng(seed)
    world = _draw_world(
        rng, n_users=n_users, n_items=n_items, n_groups=n_groups, n_categories=n_categories, days=days
    )
    users = _user_columns(rng, world, start)
    items = _item_columns(rng, world, start)
    interactions = _simulate_interactions(rng, world, start, days=days, rate=events_per_user_per_day)
    groups = _household_tables(rng, world, start, days=days, n_households=n_households) if n_households \
        else {"group_members": None, "group_events": None}  # no group tables at all
    return replace_canonical_tables(url, users=users, items=items, interactions=interactions, **groups)


def planted_interest_groups(*, seed: int, n_users: int, n_items: int, n_groups: int, n_categories: int,
                            days: int, **_: Any) -> dict[str, int]:
    """The interest group each user mainly belongs to (``MAIN_GROUP_WEIGHT`` of their interest),
    as ``generate_warehouse`` with the same arguments plants it: the truth discovered groups are
    scored against. Extra keyword arguments (the rest of ``demo_data``) are ignored.
    """
    _check_sizes(n_users=n_users, n_items=n_items, n_groups=n_groups, n_categories=n_categories, days=days)
    world = _draw_world(np.random.default_rng(seed), n_users=n_users, n_items=n_items, n_groups=n_groups,
                        n_categories=n_categories, days=days)  # the generator's first draws, in its order
    return dict(zip(world.user_ids, np.argmax(world.user_groups, axis=1).tolist()))


Columns = Mapping[str, Sequence[Any]]  # column name -> values, one per row
NO_ROWS: Columns = MappingProxyType({})  # an empty table


def replace_canonical_tables(url: str, *, users: Columns, items: Columns, interactions: Columns,
                             group_members: Columns | None = NO_ROWS, group_events: Columns | None = NO_ROWS
                             ) -> dict[str, int]:
    """Replaces all rows of the canonical tables, the group tables included, in one transaction.

    The tables are created first if missing. A failure anywhere rolls back all of them, so a
    reader never sees interactions without their users or items. A source without groups (a
    MovieLens import) leaves the group tables empty, so the shipped mapping reads it as it is;
    ``None`` for both drops them instead (an earlier load's members would name users no longer
    there). Other tables are untouched.

    Args:
        url: SQLAlchemy URL of the warehouse.
        users, items, interactions: each a mapping of column name to the column's values
            (plain Python values; numpy arrays and pandas Series are converted).
        group_members, group_events: the same for the group tables (no rows by default); both
            None: no group tables.

    Returns:
        Row counts per table written.
    """
    if (group_members is None) != (group_events is None):
        raise ValueError("group_members and group_events are written together or not at all")
    tables = {schema.users: users, schema.items: items, schema.interactions: interactions}
    if group_members is not None and group_events is not None:
        tables.update({schema.group_members: group_members, schema.group_events: group_events})
    counts = {table.name: _row_count(table, columns) for table, columns in tables.items()}
    engine = sa.create_engine(url)
    try:
        schema.create_warehouse_tables(engine, groups=group_members is not None)
        with engine.begin() as conn:
            if group_members is None:
                for table in reversed(schema.group_metadata.sorted_tables):
                    table.drop(conn, checkfirst=True)
            # Secondary indexes are rebuilt once after the load: maintaining them row by row
            # made a 1M-row import several times slower. DDL is transactional in SQLite and
            # PostgreSQL, so a failure also restores them.
            for table in tables:
                for index in table.indexes:
                    index.drop(conn, checkfirst=True)
            # Children first, so a database that enforces foreign keys could accept it too.
            for table in reversed(list(tables)):
                conn.execute(table.delete())
            for table, columns in tables.items():
                _insert_columns(conn, table, columns)
            for table in tables:
                for index in table.indexes:
                    index.create(conn)
    finally:
        engine.dispose()
    return counts


def _row_count(table: sa.Table, columns: Columns) -> int:
    unknown = set(columns) - set(table.c.keys())
    if unknown:
        raise ValueError(f"{table.name}: unknown columns {sorted(unknown)}")
    lengths = {name: len(values) for name, values in columns.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"{table.name}: columns differ in length: {lengths}")
    return next(iter(lengths.values()), 0)


def _insert_columns(conn: sa.Connection, table: sa.Table, columns: Columns) -> None:
    """Inserts the rows in chunks, by the fastest route the dialect offers.

    SQLite: the statement is compiled once and the driver's own executemany gets tuples, with
    each column converted once by its type's bind processor; building SQLAlchemy parameters
    row by row cost more than SQLite itself (a 1M-row import took twice as long).
    Elsewhere (PostgreSQL): SQLAlchemy's executemany, whose "insertmanyvalues" batches many
    rows into one INSERT, which beats the driver's row-at-a-time executemany.
    """
    names = list(columns)
    if not names or _row_count(table, columns) == 0:
        return
    values = {name: _plain_list(columns[name]) for name in names}
    if conn.dialect.name == "sqlite":
        compiled = table.insert().compile(dialect=conn.dialect, column_keys=names)
        for name in names:
            process = table.c[name].type.dialect_impl(conn.dialect).bind_processor(conn.dialect)
            if process is not None:
                values[name] = [process(v) for v in values[name]]
        rows: list[Any] = list(zip(*(values[key] for key in compiled.positiontup)))
        for begin in range(0, len(rows), INSERT_CHUNK_ROWS):
            conn.exec_driver_sql(compiled.string, rows[begin : begin + INSERT_CHUNK_ROWS])
    else:
        rows = [dict(zip(names, row)) for row in zip(*values.values())]
        for begin in range(0, len(rows), INSERT_CHUNK_ROWS):
            conn.execute(table.insert(), rows[begin : begin + INSERT_CHUNK_ROWS])


def _plain_list(values: Sequence[Any]) -> list[Any]:
    """Python values: sqlite3 and psycopg2 reject numpy scalars such as ``numpy.int64``."""
    return values.tolist() if hasattr(values, "tolist") else list(values)


def seconds_to_datetimes(origin: datetime, seconds: Iterable[int]) -> list[datetime]:
    """Plain ``datetime`` objects (not numpy/pandas types) that every DB driver accepts."""
    return [origin + timedelta(seconds=int(s)) for s in seconds]


def _check_sizes(**sizes: int) -> None:
    for name, value in sizes.items():
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")


def _make_ids(prefix: str, n: int) -> list[str]:
    """``u0001``-style ids, zero-padded so that they also sort in creation order."""
    width = max(4, len(str(n)))
    return [f"{prefix}{k + 1:0{width}d}" for k in range(n)]


def _category_names(n_categories: int) -> list[str]:
    named = list(CATEGORY_WORDS)
    return named[:n_categories] + [f"genre-{k + 1}" for k in range(len(named), n_categories)]


def _draw_world(
    rng: np.random.Generator, *, n_users: int, n_items: int, n_groups: int, n_categories: int, days: int
) -> _World:
    item_categories, matrix = _draw_item_categories(rng, n_items, n_categories)
    # Zipf over a random order of items: a few items take most events, most take few.
    ranks = rng.permutation(n_items) + 1
    popularity = 1.0 / ranks.astype(float) ** ZIPF_EXPONENT
    popularity /= popularity.sum()
    item_created = _draw_created(rng, n_items, NEW_ITEM_SHARE, days, history_days=365)
    successors = _draw_successors(rng, item_categories)
    return _World(
        category_names=_category_names(n_categories),
        user_ids=_make_ids("u", n_users),
        item_ids=_make_ids("i", n_items),
        item_categories=item_categories,
        item_category_matrix=matrix,
        item_popularity=popularity,
        item_created=item_created,
        successors=successors,
        group_prefs=_draw_group_prefs(rng, n_groups, n_categories, days),
        user_groups=_draw_user_groups(rng, n_users, n_groups),
        user_created=_draw_created(rng, n_users, NEW_USER_SHARE, days, history_days=730),
        # Gamma(2, 0.5): mean 1, so a few heavy users and many light ones.
        user_activity=rng.gamma(shape=2.0, scale=0.5, size=n_users),
        group_favourites=np.exp(GROUP_FAVOURITE_SIGMA * rng.standard_normal((n_groups, n_items))
                                - GROUP_FAVOURITE_SIGMA ** 2 / 2),
    )


def _draw_item_categories(
    rng: np.random.Generator, n_items: int, n_categories: int
) -> tuple[list[list[int]], np.ndarray]:
    # Category sizes differ (a Dirichlet), as real catalogues have big and niche genres.
    sizes = rng.dirichlet(np.full(n_categories, 5.0))
    primary = rng.choice(n_categories, size=n_items, p=sizes)
    has_second = (rng.random(n_items) < SECOND_CATEGORY_RATE) & (n_categories > 1)
    offset = rng.integers(1, max(n_categories, 2), size=n_items)  # never the primary itself
    second = (primary + offset) % n_categories
    categories: list[list[int]] = []
    matrix = np.zeros((n_items, n_categories))
    for i in range(n_items):
        if has_second[i]:
            categories.append([int(primary[i]), int(second[i])])
            matrix[i, primary[i]] = PRIMARY_CATEGORY_WEIGHT
            matrix[i, second[i]] = 1.0 - PRIMARY_CATEGORY_WEIGHT
        else:
            categories.append([int(primary[i])])
            matrix[i, primary[i]] = 1.0
    return categories, matrix


def _draw_created(rng: np.random.Generator, n: int, new_share: float, days: int, history_days: int) -> np.ndarray:
    """Seconds since the start: most before it (up to ``history_days``), some inside the period."""
    is_new = rng.random(n) < new_share
    before = -rng.integers(1, history_days * SECONDS_PER_DAY, size=n)
    # New ones appear after the first day, so the first night already has a known catalogue.
    during = rng.integers(SECONDS_PER_DAY, max(days, 2) * SECONDS_PER_DAY, size=n)
    return np.where(is_new, during, before).astype(np.int64)


def _draw_successors(rng: np.random.Generator, item_categories: list[list[int]]) -> np.ndarray:
    """Each item's fixed next items: mostly others of its primary category, chosen uniformly.

    Uniform (not popularity-weighted) on purpose: the sequential signal should point at items
    that popularity alone would not rank first.
    """
    n_items = len(item_categories)
    primary = np.array([cats[0] for cats in item_categories])
    by_category = {c: np.flatnonzero(primary == c) for c in np.unique(primary)}
    successors = np.zeros((n_items, SUCCESSORS_PER_ITEM), dtype=np.int64)
    for i in range(n_items):
        same = by_category[primary[i]]
        for k in range(SUCCESSORS_PER_ITEM):
            pool = same if rng.random() < SUCCESSOR_SAME_CATEGORY and len(same) > 1 else None
            while True:
                j = int(pool[rng.integers(len(pool))]) if pool is not None else int(rng.integers(n_items))
                if j != i or n_items == 1:
                    break
            successors[i, k] = j
    return successors


def _draw_group_prefs(rng: np.random.Generator, n_groups: int, n_categories: int, days: int) -> np.ndarray:
    """(days, groups, categories): a fixed share on each group's home categories; the rest moves
    from one Dirichlet draw towards another."""
    alpha = np.full(n_categories, GROUP_CONCENTRATION)
    first = rng.dirichlet(alpha, size=n_groups)
    second = rng.dirichlet(alpha, size=n_groups)
    progress = np.minimum(np.arange(days) / DRIFT_HORIZON_DAYS, 1.0)[:, None, None]
    drifting = (1.0 - progress) * first[None] + progress * second[None]
    home = np.zeros((n_groups, n_categories))
    for category in range(n_categories):  # groups beyond the number of categories get no home
        home[category % n_groups, category] = 1.0
    home[home.sum(1) == 0, :] = 1.0  # a group without a category of its own: no home preference
    home /= home.sum(1, keepdims=True)
    prefs = HOME_CATEGORY_SHARE * home[None] + (1.0 - HOME_CATEGORY_SHARE) * drifting
    return (1.0 - PREFERENCE_FLOOR) * prefs + PREFERENCE_FLOOR / n_categories


def _draw_user_groups(rng: np.random.Generator, n_users: int, n_groups: int) -> np.ndarray:
    main = rng.integers(n_groups, size=n_users)
    mixing = rng.dirichlet(np.ones(n_groups), size=n_users)
    weights = (1.0 - MAIN_GROUP_WEIGHT) * mixing
    weights[np.arange(n_users), main] += MAIN_GROUP_WEIGHT
    return weights


def _user_columns(rng: np.random.Generator, world: _World, start: datetime) -> dict[str, list[Any]]:
    ages = rng.integers(18, 71, size=len(world.user_ids))
    # What a user says they like is what their groups prefer at the start, as a sign-up form would.
    initial_prefs = world.user_groups @ world.group_prefs[0]
    top_two = np.argsort(-initial_prefs, axis=1, kind="stable")[:, :2]
    attributes = [
        f"age {age}, likes {' and '.join(world.category_names[c] for c in top)}" for age, top in zip(ages, top_two)
    ]
    return {
        "user_id": world.user_ids,
        "attributes": attributes,
        "created_at": seconds_to_datetimes(start, world.user_created),
    }


def _item_columns(rng: np.random.Generator, world: _World, start: datetime) -> dict[str, list[Any]]:
    taken: set[str] = set()
    titles, categories, descriptions = [], [], []
    for cats in world.item_categories:
        names = [world.category_names[c] for c in cats]
        adjectives, nouns = (words.split() for words in CATEGORY_WORDS.get(names[0], GENERIC_WORDS))
        adjective = adjectives[rng.integers(len(adjectives))]
        place = PLACES[rng.integers(len(PLACES))]
        noun = nouns[rng.integers(len(nouns))]
        genres = " and ".join(names)
        article = "An" if genres[0] in "aeiou" else "A"
        titles.append(_unique_title(f"{adjective} {place} {noun}", taken))
        categories.append("|".join(names))
        story = f"the {adjective} {noun} of the {place}".lower()
        descriptions.append(f"{article} {genres} story: {story}.")
    return {
        "item_id": world.item_ids,
        "title": titles,
        "categories": categories,
        "description": descriptions,
        "created_at": seconds_to_datetimes(start, world.item_created),
    }


def _unique_title(base: str, taken: set[str]) -> str:
    """Numbers repeated titles like sequels ("... 2"), so a title names one item."""
    title, number = base, 1
    while title in taken:
        number += 1
        title = f"{base} {number}"
    taken.add(title)
    return title


def _event_times(rng: np.random.Generator, world: _World, days: int, rate: float) -> list[np.ndarray]:
    """Per user, sorted event times (seconds since start): Poisson per day once they have joined."""
    n_users = len(world.user_created)
    counts = rng.poisson(rate * world.user_activity[:, None], size=(n_users, days))
    day_starts = np.arange(days, dtype=np.int64) * SECONDS_PER_DAY
    times = []
    for u in range(n_users):
        joined = world.user_created[u]
        counts[u, day_starts + SECONDS_PER_DAY <= joined] = 0  # days that ended before joining
        day_of_event = np.repeat(np.arange(days), counts[u])
        low = np.maximum(day_starts[day_of_event], joined)
        high = day_starts[day_of_event] + SECONDS_PER_DAY
        times.append(np.sort(low + (rng.random(len(low)) * (high - low)).astype(np.int64)))
    return times


def _simulate_interactions(
    rng: np.random.Generator, world: _World, start: datetime, *, days: int, rate: float
) -> dict[str, list[Any]]:
    """Walks each user's events in time order, each choice depending on the previous item."""
    day_group_item = _day_group_item_weights(world)
    n_items = len(world.item_popularity)
    user_idx, item_idx, times, seq = [], [], [], []
    for u, user_times in enumerate(_event_times(rng, world, days, rate)):
        seen = np.zeros(n_items, dtype=bool)
        previous, day, weights = -1, -1, None
        for t in user_times:
            if t // SECONDS_PER_DAY != day:
                day = int(t // SECONDS_PER_DAY)
                weights = world.user_groups[u] @ day_group_item[day]
            available = (world.item_created <= t) & ~seen
            item = _follow_successor(rng, world, previous, available) if previous >= 0 else -1
            if item < 0:
                item = _sample_weighted(rng, weights * available)
            if item < 0:
                continue  # the user has seen every available item
            seen[item] = True
            previous = item
            user_idx.append(u)
            item_idx.append(item)
            times.append(int(t))
            seq.append(len(seq))
    arrays = (np.array(values, dtype=np.int64) for values in (user_idx, item_idx, times, seq))
    return _interaction_columns(rng, world, start, *arrays)


def _day_group_item_weights(world: _World) -> np.ndarray:
    """(days, groups, items): the unnormalised weight of each item per day and interest group
    (popularity x category affinity x the group's favourites), what every choice is drawn from."""
    affinity = np.einsum("ic,dgc->dgi", world.item_category_matrix, world.group_prefs) * world.group_favourites
    return affinity * world.item_popularity[None, None, :]


def _follow_successor(rng: np.random.Generator, world: _World, previous: int, available: np.ndarray) -> int:
    if rng.random() >= P_FOLLOW_SUCCESSOR:
        return -1
    candidates = world.successors[previous]
    ok = available[candidates]
    return _sample_weighted(rng, SUCCESSOR_WEIGHTS * ok, candidates)


def _sample_weighted(rng: np.random.Generator, weights: np.ndarray, values: np.ndarray | None = None) -> int:
    """One index (or value) drawn proportionally to ``weights``; -1 when they are all zero."""
    cumulative = np.cumsum(weights)
    total = cumulative[-1] if len(cumulative) else 0.0
    if total <= 0:
        return -1
    index = int(np.searchsorted(cumulative, rng.random() * total, side="right"))
    index = min(index, len(weights) - 1)  # guards the float edge where the draw equals total
    return int(values[index]) if values is not None else index


def _interaction_columns(
    rng: np.random.Generator,
    world: _World,
    start: datetime,
    user_idx: np.ndarray,
    item_idx: np.ndarray,
    times: np.ndarray,
    seq: np.ndarray,
) -> dict[str, list[Any]]:
    """Events numbered 1..N in time order; ties go by user, then by the user's own event order."""
    order = np.lexsort((seq, user_idx, times))
    event_types = rng.choice(len(EVENT_TYPES), size=len(order), p=EVENT_TYPE_PROBS)
    return {
        "event_id": list(range(1, len(order) + 1)),
        "user_id": [world.user_ids[u] for u in user_idx[order]],
        "item_id": [world.item_ids[i] for i in item_idx[order]],
        "event_type": [EVENT_TYPES[k] for k in event_types],
        "rating": [None] * len(order),
        "ts": seconds_to_datetimes(start, times[order]),
    }


def _household_tables(rng: np.random.Generator, world: _World, start: datetime, *, days: int,
                      n_households: int) -> dict[str, dict[str, list[Any]]]:
    """Households and their joint events, as the group_members and group_events tables.

    A household forms once its last member has joined (so every member is a known user by then)
    and nobody leaves it; its events start then.
    """
    households = [_draw_household(rng, world) for _ in range(n_households)]
    group_ids = _make_ids("g", n_households)
    formed = [int(world.user_created[people].max()) for people in households]
    sizes = [len(people) for people in households]
    members = {
        "group_id": [group_ids[h] for h, size in enumerate(sizes) for _ in range(size)],
        "user_id": [world.user_ids[u] for people in households for u in people],
        "joined_at": seconds_to_datetimes(start, [formed[h] for h, size in enumerate(sizes) for _ in range(size)]),
        "left_at": [None] * sum(sizes),
    }
    return {"group_members": members,
            "group_events": _household_events(rng, world, start, households, formed, group_ids, days)}


def _draw_household(rng: np.random.Generator, world: _World) -> np.ndarray:
    """2-4 distinct users: a first one at random, the others mostly of the same main interest group."""
    main = np.argmax(world.user_groups, axis=1)
    n_users = len(main)
    size = min(int(rng.choice(HOUSEHOLD_SIZES, p=HOUSEHOLD_SIZE_PROBS)), n_users)
    members = [int(rng.integers(n_users))]
    same_group = np.flatnonzero(main == main[members[0]])
    while len(members) < size:
        pool = same_group if rng.random() < HOUSEHOLD_SAME_GROUP else np.arange(n_users)
        candidates = np.setdiff1d(pool, members)
        if len(candidates) == 0:  # no one of the group left: anyone else
            candidates = np.setdiff1d(np.arange(n_users), members)
        members.append(int(candidates[rng.integers(len(candidates))]))
    return np.array(members, dtype=np.int64)


def _household_events(rng: np.random.Generator, world: _World, start: datetime, households: list[np.ndarray],
                      formed: list[int], group_ids: list[str], days: int) -> dict[str, list[Any]]:
    """A few joint choices per household: Poisson per day once formed, each item drawn from the
    members' blended interests (the interaction simulation's weights of the day), never twice."""
    day_group_item = _day_group_item_weights(world)
    rows: list[tuple[int, int, int]] = []  # (seconds since start, household, item)
    for h, members in enumerate(households):
        blend = world.user_groups[members].mean(axis=0)
        seen = np.zeros(len(world.item_ids), dtype=bool)
        counts = rng.poisson(HOUSEHOLD_EVENTS_PER_DAY, size=days)
        for day in range(max(formed[h], 0) // SECONDS_PER_DAY, days):
            low, high = max(day * SECONDS_PER_DAY, formed[h]), (day + 1) * SECONDS_PER_DAY
            for t in np.sort(low + (rng.random(counts[day]) * (high - low)).astype(np.int64)):
                available = (world.item_created <= t) & ~seen
                item = _sample_weighted(rng, (blend @ day_group_item[day]) * available)
                if item >= 0:
                    seen[item] = True
                    rows.append((int(t), h, item))
    rows.sort()
    kinds = rng.choice(len(EVENT_TYPES), size=len(rows), p=EVENT_TYPE_PROBS)
    return {
        "group_id": [group_ids[h] for _, h, _ in rows],
        "item_id": [world.item_ids[i] for _, _, i in rows],
        "event_type": [EVENT_TYPES[k] for k in kinds],
        "ts": seconds_to_datetimes(start, [t for t, _, _ in rows]),
    }
