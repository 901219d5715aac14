"""The canonical warehouse schema every source is mapped onto.

IDs are strings everywhere (a MovieLens id ``1`` becomes ``"1"``) so any warehouse's keys fit.
Timestamps are naive UTC. ``interactions.event_id`` keeps the source's row order, which breaks
timestamp ties in the leave-last-out split.

Explicit groups (households, teams, travel parties) are optional: ``group_members`` and
``group_events`` live in their own metadata, so a warehouse can be created without them.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import (
    Column,
    DateTime,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

users = Table(
    "users",
    metadata,
    Column("user_id", String(64), primary_key=True),
    Column("attributes", Text, nullable=False, default=""),  # free text, e.g. "age 24, student"
    Column("created_at", DateTime, nullable=True),
)

items = Table(
    "items",
    metadata,
    Column("item_id", String(64), primary_key=True),
    Column("title", Text, nullable=False),
    Column("categories", Text, nullable=False, default=""),  # '|'-separated
    Column("description", Text, nullable=False, default=""),
    Column("created_at", DateTime, nullable=True),
)

interactions = Table(
    "interactions",
    metadata,
    Column("event_id", Integer, primary_key=True, autoincrement=False),
    Column("user_id", String(64), nullable=False, index=True),
    Column("item_id", String(64), nullable=False, index=True),
    Column("event_type", String(32), nullable=False),
    Column("rating", Float, nullable=True),
    Column("ts", DateTime, nullable=False, index=True),
)

recommendations = Table(
    "recommendations",
    metadata,
    Column("run_date", String(10), primary_key=True),  # the night's logical date, YYYY-MM-DD
    Column("user_id", String(64), primary_key=True),
    Column("rank", Integer, primary_key=True),
    Column("item_id", String(64), nullable=False),
    Column("score", Float, nullable=False),
    Column("model_version", Integer, nullable=False),
)

# Optional: explicit groups. A membership holds from joined_at (null: always) until left_at
# (null: still a member); a user may join the same group again after leaving it.
group_metadata = MetaData()

group_members = Table(
    "group_members",
    group_metadata,
    Column("group_id", String(64), nullable=False, index=True),
    Column("user_id", String(64), nullable=False),
    Column("joined_at", DateTime, nullable=True),
    Column("left_at", DateTime, nullable=True),
)

group_events = Table(  # what a group chose together; no event_id: ties go by item_id, event_type
    "group_events",
    group_metadata,
    Column("group_id", String(64), nullable=False, index=True),
    Column("item_id", String(64), nullable=False),
    Column("event_type", String(32), nullable=False),
    Column("ts", DateTime, nullable=False, index=True),
)

EVENT_TYPES = ("view", "click", "like", "purchase", "rating")
RATING_RANGE = (0.5, 5.0)

# Column order and Arrow types of the extracted Parquet files (the contract between stages).
INTERACTION_COLUMNS = ("event_id", "user_id", "item_id", "event_type", "rating", "ts")
ITEM_COLUMNS = ("item_id", "title", "categories", "description", "created_at")
USER_COLUMNS = ("user_id", "attributes", "created_at")
GROUP_MEMBER_COLUMNS = ("group_id", "user_id", "joined_at", "left_at")
GROUP_EVENT_COLUMNS = ("group_id", "item_id", "event_type", "ts")
GROUP_TABLES = ("group_members", "group_events")  # optional, mapped together or not at all
EVENT_TABLES = ("interactions", "group_events")  # extracted by day, into a directory of day files


def create_warehouse_tables(engine, *, groups: bool = True) -> None:
    """Creates the warehouse tables (idempotent), the optional group tables unless ``groups`` is False."""
    metadata.create_all(engine)
    if groups:
        group_metadata.create_all(engine)


def extract_table_path(extract_dir: Path, table: str) -> Path:
    """Where the extract stage leaves a canonical table: events (``EVENT_TABLES``) as a directory of
    day files (``<YYYY-MM-DD>.parquet``, read whole with ``pandas.read_parquet``), the others as one file."""
    return Path(extract_dir) / (table if table in EVENT_TABLES else f"{table}.parquet")
