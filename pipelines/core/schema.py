"""The canonical warehouse schema every source is mapped onto.

IDs are strings everywhere (a MovieLens id ``1`` becomes ``"1"``) so any warehouse's keys fit.
Timestamps are naive UTC. ``interactions.event_id`` keeps the source's row order, which breaks
timestamp ties in the leave-last-out split.
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

EVENT_TYPES = ("view", "click", "like", "purchase", "rating")
RATING_RANGE = (0.5, 5.0)

# Column order and Arrow types of the extracted Parquet files (the contract between stages).
INTERACTION_COLUMNS = ("event_id", "user_id", "item_id", "event_type", "rating", "ts")
ITEM_COLUMNS = ("item_id", "title", "categories", "description", "created_at")
USER_COLUMNS = ("user_id", "attributes", "created_at")


def create_warehouse_tables(engine) -> None:
    """Creates the warehouse tables (idempotent)."""
    metadata.create_all(engine)


def extract_table_path(extract_dir: Path, table: str) -> Path:
    """Where the extract stage leaves a canonical table: events as a directory of day files
    (``<YYYY-MM-DD>.parquet``, read whole with ``pandas.read_parquet``), the others as one file."""
    return Path(extract_dir) / ("interactions" if table == "interactions" else f"{table}.parquet")
