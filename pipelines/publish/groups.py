"""What publish serves for groups, beside the per-user lists and in the same transaction.

* **Interest groups** of the serving model: clusters of its user vectors (whole histories), ids
  matched to the previous published night's groups (``pipelines.groups.discovery.stable_ids``), each
  with a readable profile and its members. No published group describes fewer than
  ``groups.min_group_size`` users: smaller clusters are merged into their nearest group, and with
  fewer users than that in all, no interest group is published (the summary says which).
* **Group lists**: top-K per interest group and per explicit group, aggregated from member scores with
  the strategy chosen on validation and recorded with the serving version. An interest group's list
  is aggregated over at most ``LIST_MEMBERS`` members nearest its centre and leaves out the items
  most of them have already chosen; an explicit group's list leaves out the group's own history.
* **Explicit groups served by ``group_model``** add the group item model (EASE over every group's
  and user's whole history, ``pipelines.groups.item_model``) at the recorded L2 and blend weights.
* **Cold users back off**: the list of each user with at most the recorded
  ``backoff_max_interactions`` comes from ``w * z(own) + (1 - w) * z(group)`` with
  ``w = n / (n + c)`` (``pipelines.groups.backoff``), c the recorded backoff strength.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
import torch

from pipelines.groups.aggregation import GROUP_MODEL, group_model_scores, group_scores, standardised
from pipelines.groups.backoff import backoff_weights, blend_with_group
from pipelines.groups.describe import describe_group
from pipelines.groups.discovery import cluster_users, membership_churn, merge_small_groups, stable_ids, unit_rows
from pipelines.groups.item_model import OFF, ItemModelChoice, fitted_item_part
from pipelines.publish.writer import top_k_recommendations

if TYPE_CHECKING:
    from pipelines.config import GroupsParams
    from pipelines.ranking.scoring import Scorer

log = logging.getLogger("retrain.publish")
LIST_MEMBERS = 2000  # members an interest group's list is aggregated over (nearest its centre)
SEEN_BY_MOST = 0.5  # an interest group's list skips items more than this share of those members chose
USER_CHUNK = 2048

group_metadata = sa.MetaData()
group_recommendations = sa.Table(
    "group_recommendations", group_metadata,
    sa.Column("run_date", sa.String(10), primary_key=True),
    sa.Column("group_kind", sa.String(16), primary_key=True),  # interest | explicit
    sa.Column("group_id", sa.String(64), primary_key=True),
    sa.Column("rank", sa.Integer, primary_key=True),
    sa.Column("item_id", sa.String(64), nullable=False),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("strategy", sa.String(32), nullable=False),
    sa.Column("model_version", sa.Integer, nullable=False),
)
interest_groups = sa.Table(
    "interest_groups", group_metadata,
    sa.Column("run_date", sa.String(10), primary_key=True),
    sa.Column("group_id", sa.Integer, primary_key=True),
    sa.Column("size", sa.Integer, nullable=False),
    sa.Column("summary", sa.Text, nullable=False),
    sa.Column("top_categories", sa.Text, nullable=False),  # JSON list of {category, lift}
    sa.Column("representative_items", sa.Text, nullable=False),  # JSON list of {item_id, title, lift}
    sa.Column("model_version", sa.Integer, nullable=False),
)
interest_group_members = sa.Table(
    "interest_group_members", group_metadata,
    sa.Column("run_date", sa.String(10), primary_key=True),
    sa.Column("group_id", sa.Integer, primary_key=True),
    sa.Column("user_id", sa.String(64), primary_key=True),
)


@dataclass(frozen=True)
class ServingChoice:
    strategy: str  # interest groups (members only)
    backoff_strength: float
    source: str
    explicit_strategy: str = ""  # explicit groups (may be group_model); the members-only one when empty
    backoff_max_interactions: int | None = None  # None: recorded before the cap existed, every user blends
    item_model: ItemModelChoice = OFF  # group_model's item-item part (off when recorded before it existed)

    @property
    def for_explicit_groups(self) -> str:
        return self.explicit_strategy or self.strategy


def serving_choice(version: int, metrics: Mapping[str, Any]) -> ServingChoice:
    """The strategy and backoff recorded with the serving version (evaluate's choice that night)."""
    recorded = metrics.get("groups")
    if not isinstance(recorded, Mapping):
        return ServingChoice("average", 0.0, f"version {version} has no recorded group choice: average, no backoff")
    cap = recorded.get("backoff_max_interactions")
    item_model = recorded.get("item_model") or {}
    return ServingChoice(recorded["strategy"], float(recorded["backoff_strength"]),
                         f"chosen on {recorded.get('chosen_on', 'validation')} with version {version}",
                         recorded.get("explicit_strategy") or "", None if cap is None else int(cap),
                         ItemModelChoice(float(item_model.get("lambda", 0.0)), float(item_model.get("weight", 0.0)),
                                         f"recorded with version {version}"))


def previous_groups(url: str | sa.URL, run_date: str) -> tuple[dict[int, set[str]], int]:
    """The members of each group of the latest published night before ``run_date``, and the largest
    group id ever published (new ids count up from it); nothing before the first night."""
    engine = sa.create_engine(url)
    try:
        if not sa.inspect(engine).has_table(interest_group_members.name):
            return {}, 0
        table = interest_group_members
        with engine.connect() as conn:
            last = conn.execute(sa.select(sa.func.max(table.c.run_date)).where(table.c.run_date < run_date)).scalar()
            highest = conn.execute(sa.select(sa.func.max(table.c.group_id))).scalar() or 0
            rows = [] if last is None else conn.execute(
                sa.select(table.c.group_id, table.c.user_id).where(table.c.run_date == last)).all()
    finally:
        engine.dispose()
    members: dict[int, set[str]] = {}
    for group_id, user_id in rows:
        members.setdefault(int(group_id), set()).add(user_id)
    return members, int(highest)


@dataclass
class FoundGroups:
    """Tonight's interest groups: ``ids[row]`` is a user's published group id (-1: none published)."""

    ids: np.ndarray
    centroids: dict[int, np.ndarray] = field(default_factory=dict)
    merged: int = 0
    withheld: str | None = None
    churn: dict[str, Any] | None = None


def find_groups(vectors: np.ndarray, user_ids: Sequence[str], settings: GroupsParams,
                previous: Mapping[int, set[str]], highest_id: int) -> FoundGroups:
    if len(user_ids) < max(2, settings.min_group_size):
        return FoundGroups(np.full(len(user_ids), -1), withheld=(
            f"{len(user_ids)} users are fewer than groups.min_group_size ({settings.min_group_size}): "
            "no interest group is published"))
    clustering = cluster_users(vectors, settings.n_groups, max_groups=settings.max_groups, seed=settings.seed)
    labels, merged = merge_small_groups(clustering.labels, vectors, settings.min_group_size)
    users = np.asarray(user_ids, dtype=object)
    members = {int(g): set(users[labels == g]) for g in np.unique(labels)}
    ids = stable_ids(members, previous, highest_id + 1)
    published = np.array([ids[int(g)] for g in labels], dtype=np.int64)
    points = unit_rows(np.asarray(vectors, dtype=np.float64))
    centroids = {ids[g]: unit_rows(points[labels == g].mean(0, keepdims=True))[0] for g in members}
    before = {u: g for g, us in previous.items() for u in us}
    churn = membership_churn(before, dict(zip(user_ids, published.tolist()))) if before else None
    return FoundGroups(published, centroids, merged, None, churn)


def standardised_scores(scorer: Scorer, histories: Sequence[list[str]]) -> np.ndarray:
    with torch.no_grad():
        return standardised(scorer(list(histories)).float().cpu().numpy().astype(np.float64))


def interest_group_lists(scorer: Scorer, found: FoundGroups, vectors: np.ndarray, histories: Sequence[list[str]],
                         item_ids: Sequence[str], choice: ServingChoice, settings: GroupsParams, k: int
                         ) -> tuple[list[dict], dict[int, np.ndarray]]:
    """Each interest group's top-k rows and its mean standardised member scores (for the backoff)."""
    column = {item: i for i, item in enumerate(item_ids)}
    points = unit_rows(np.asarray(vectors, dtype=np.float64))
    rows, averages = [], {}
    for group_id, centre in found.centroids.items():
        members = np.flatnonzero(found.ids == group_id)
        members = members[np.argsort(-(points[members] @ centre), kind="stable")[:LIST_MEMBERS]]
        scores = standardised_scores(scorer, [histories[m] for m in members])
        averages[group_id] = scores.mean(axis=0)
        seen = np.zeros(len(item_ids))
        for m in members:
            seen[[column[i] for i in set(histories[m]) if i in column]] += 1
        ranked = group_scores(scores, choice.strategy, k=k, relevant_items=settings.relevant_items,
                              exclude=seen > SEEN_BY_MOST * len(members))
        rows += list_rows("interest", str(group_id), ranked, item_ids, k, choice.strategy)
    return rows, averages


def explicit_group_lists(scorer: Scorer, groups: pd.DataFrame | None, user_histories: Mapping[str, list[str]],
                         item_ids: Sequence[str], choice: ServingChoice, settings: GroupsParams, k: int) -> list[dict]:
    """Each explicit group's top-k rows from its profiled members (and, with ``group_model``, the
    model and the group item model on the group's own history), its own history left out."""
    if groups is None or not len(groups):
        return []
    column = {item: i for i, item in enumerate(item_ids)}
    strategy = choice.for_explicit_groups
    histories = [[column[i] for i in [*train, *(x for x in (valid, test) if isinstance(x, str))] if i in column]
                 for train, valid, test in zip(groups["train_items"], groups["valid_item"], groups["test_item"])]
    item_part = None
    if strategy == GROUP_MODEL:
        user_columns = [[column[i] for i in h if i in column] for h in user_histories.values()]
        item_part = fitted_item_part([*histories, *user_columns], histories, len(item_ids), choice.item_model,
                                     settings.item_model_max_items)
    rows = []
    for index, (_, group) in enumerate(groups.iterrows()):
        members = [u for u in group["members"] if u in user_histories]
        if not members:
            continue
        held_out = [x for x in (group["valid_item"], group["test_item"]) if isinstance(x, str)]
        history = list(group["train_items"]) + held_out
        scores = standardised_scores(scorer, [user_histories[u] for u in members])
        exclude = np.array(histories[index], dtype=np.int64)
        ranked = (group_model_scores(standardised_scores(scorer, [history])[0], scores, exclude=exclude,
                                     item_part=None if item_part is None else item_part[index])
                  if strategy == GROUP_MODEL else
                  group_scores(scores, strategy, k=k, relevant_items=settings.relevant_items, exclude=exclude))
        rows += list_rows("explicit", str(group["group_id"]), ranked, item_ids, k, strategy)
    return rows


def list_rows(kind: str, group_id: str, ranked: np.ndarray, item_ids: Sequence[str], k: int, strategy: str
              ) -> list[dict]:
    order = np.argsort(-ranked, kind="stable")[:k]
    return [{"group_kind": kind, "group_id": group_id, "rank": rank, "item_id": item_ids[column],
             "score": float(ranked[column]), "strategy": strategy}
            for rank, column in enumerate(order, start=1) if np.isfinite(ranked[column])]


def user_lists_with_backoff(scorer: Scorer, user_ids: Sequence[str], histories: Sequence[list[str]],
                            found: FoundGroups, averages: Mapping[int, np.ndarray], item_ids: Sequence[str],
                            strength: float, k: int, max_interactions: int | None = None) -> pd.DataFrame:
    """Per-user top-k, each user's scores blended with their interest group's (``strength`` 0 or no
    group: the user's own scores, unchanged; so for users with more than ``max_interactions``)."""
    if strength == 0 or not averages:
        return top_k_recommendations(scorer, list(user_ids), list(histories), list(item_ids), k)
    parts = []
    for start in range(0, len(user_ids), USER_CHUNK):
        rows = np.arange(start, min(start + USER_CHUNK, len(user_ids)))
        weights = backoff_weights(np.array([len(histories[r]) for r in rows]), strength, max_interactions)
        group_rows = np.stack([averages[found.ids[r]] for r in rows])

        def blended(chunk_histories: list[list[str]], weights=weights, group_rows=group_rows) -> torch.Tensor:
            with torch.no_grad():
                own = scorer(chunk_histories).float().cpu().numpy()
            return torch.from_numpy(blend_with_group(own, group_rows, weights).astype(np.float32))

        parts.append(top_k_recommendations(blended, [user_ids[r] for r in rows], [histories[r] for r in rows],
                                           list(item_ids), k, chunk=len(rows)))
    return pd.concat(parts, ignore_index=True)


def profile_rows(found: FoundGroups, user_ids: Sequence[str], histories: Sequence[list[str]],
                 items: pd.DataFrame, settings: GroupsParams) -> tuple[list[dict], list[dict]]:
    """The interest_groups rows (profiles) and interest_group_members rows; ``items`` are the
    profiles' (item_id, and title and categories where the profiles carry them)."""
    titles = dict(zip(items["item_id"], items["title"] if "title" in items else items["item_id"]))
    categories = dict(zip(items["item_id"], items["categories"] if "categories" in items else [""] * len(items)))
    profiles, members = [], []
    for group_id in sorted(found.centroids):
        rows = np.flatnonzero(found.ids == group_id)
        profile = describe_group([histories[r] for r in rows], histories, titles, categories,
                                 top_items=settings.profile_items, top_categories=settings.profile_categories)
        profiles.append({"group_id": group_id, "size": profile["size"], "summary": profile["summary"],
                         "top_categories": json.dumps(profile["top_categories"]),
                         "representative_items": json.dumps(profile["representative_items"])})
        members += [{"group_id": group_id, "user_id": user_ids[r]} for r in rows]
    return profiles, members


def night_tables(group_rows: list[dict], profiles: list[dict], members: list[dict], version: int
                 ) -> list[tuple[sa.Table, pd.DataFrame]]:
    """The group tables' rows for ``write_recommendations(extra=...)`` (run_date is added there)."""
    def frame(table: sa.Table, rows: list[dict]) -> pd.DataFrame:
        columns = [c.name for c in table.columns if c.name != "run_date"]
        data = pd.DataFrame(rows, columns=[c for c in columns if c != "model_version"])
        return data.assign(model_version=version) if "model_version" in columns else data

    return [(group_recommendations, frame(group_recommendations, group_rows)),
            (interest_groups, frame(interest_groups, profiles)),
            (interest_group_members, frame(interest_group_members, members))]
