"""Batch scoring with the champion and the write-back of top-K lists to the warehouse.

A night's lists replace that night's rows in one transaction: readers see the previous lists
until the commit, and a write that fails part-way leaves them exactly as they were.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import itertools
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import sqlalchemy as sa
import torch

from pipelines.core import schema
from pipelines.ranking.scoring import Scorer

RECOMMENDATION_COLUMNS = ("user_id", "rank", "item_id", "score")
TABLE_COLUMNS = ("run_date", "user_id", "rank", "item_id", "score", "model_version")
SCORE_CHUNK = 2048  # users per scoring call: 2048 x 3,416 float32 scores are 28 MB
WRITE_BATCH = 50_000  # rows per INSERT executemany / COPY


def top_k_recommendations(scorer: Scorer, user_ids: list[str], histories: list[list[str]],
                          catalogue_ids: list[str], k: int, chunk: int = SCORE_CHUNK,
                          adjust: Callable[[torch.Tensor, int], torch.Tensor] | None = None) -> pd.DataFrame:
    """Each user's top ``k`` unseen items: columns user_id, rank (1-based), item_id, score.

    Users are scored ``chunk`` at a time; their history is excluded. A user with fewer than
    ``k`` unseen items gets a shorter list. ``adjust(scores, first_user)`` changes a chunk's scores
    first (``pipelines.ranking.scoring.rank_eval_set`` takes the same).

    Raises:
        ValueError: ``user_ids`` and ``histories`` differ in length, ``k`` < 1, or the scorer
            returned NaN scores (a broken model must not be published).
    """
    if len(user_ids) != len(histories):
        raise ValueError(f"top_k_recommendations: {len(user_ids)} user_ids but {len(histories)} histories")
    if k < 1:
        raise ValueError(f"top_k_recommendations: k must be >= 1, got {k}")
    column = {item: i for i, item in enumerate(catalogue_ids)}
    width = min(k, len(catalogue_ids))
    values, index = [], []
    for start in range(0, len(user_ids), chunk):
        part = histories[start:start + chunk]
        with torch.no_grad():
            scores = scorer(part).float().clone()  # clone: a scorer may hand out a shared tensor
            if adjust is not None:
                scores = adjust(scores, start)
        exclude_seen(scores, [[column[i] for i in h if i in column] for h in part])
        top = torch.topk(scores, width, dim=1)
        values.append(top.values)
        index.append(top.indices)
    if not values:
        return pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in
                             zip(RECOMMENDATION_COLUMNS, (object, "int64", object, "float64"))})
    flat_scores = torch.cat(values).reshape(-1).double().numpy()
    if np.isnan(flat_scores).any():
        raise ValueError("top_k_recommendations: the scorer returned NaN scores; nothing is published from it")
    recs = pd.DataFrame({
        "user_id": np.repeat(np.asarray(user_ids, dtype=object), width),
        "rank": np.tile(np.arange(1, width + 1, dtype=np.int64), len(user_ids)),
        "item_id": np.asarray(catalogue_ids, dtype=object)[torch.cat(index).reshape(-1).numpy()],
        "score": flat_scores,
    })
    return recs[flat_scores > -np.inf].reset_index(drop=True)  # -inf: seen items filling a short list


def exclude_seen(scores: torch.Tensor, seen_columns: list[list[int]]) -> None:
    """Sets each row's seen columns to -inf, in place, with one scatter for the whole chunk."""
    lengths = torch.tensor([len(cols) for cols in seen_columns], dtype=torch.long)
    if int(lengths.sum()):
        rows = torch.repeat_interleave(torch.arange(len(seen_columns)), lengths)
        scores[rows, torch.tensor(list(itertools.chain.from_iterable(seen_columns)), dtype=torch.long)] = -torch.inf


def write_recommendations(url: str | sa.URL, run_date: str, model_version: int, recs: pd.DataFrame,
                          batch_rows: int = WRITE_BATCH,
                          extra: Sequence[tuple[sa.Table, pd.DataFrame]] = ()) -> int:
    """Replaces the night's rows in one transaction: a rerun of the same date never duplicates.

    ``extra`` tables (each with a ``run_date`` column; the frames hold every other column) have
    their night's rows replaced in the same transaction, so readers see all tables of one night.

    The delete and every insert batch share one transaction, so a failure at any point rolls
    back to the night's previous rows. PostgreSQL (psycopg2 or psycopg) loads with ``COPY``;
    other databases with one executemany per batch.

    Returns:
        The number of rows written.

    Raises:
        ValueError: ``run_date`` is not ``YYYY-MM-DD`` or ``recs`` is malformed (the message
            names the column and the problem).
    """
    rows = night_rows(recs, run_date, model_version)
    tables = [(schema.recommendations, rows)] + [(table, frame.assign(run_date=run_date)) for table, frame in extra]
    engine = sa.create_engine(url)
    try:
        for table, _ in tables:
            table.create(engine, checkfirst=True)
        with engine.begin() as conn:
            for table, frame in tables:
                conn.execute(table.delete().where(table.c.run_date == run_date))
                frame = frame[[column.name for column in table.columns]]
                for start in range(0, len(frame), batch_rows):
                    insert_batch(conn, frame.iloc[start:start + batch_rows], table)
    finally:
        engine.dispose()
    return len(rows)


def night_rows(recs: pd.DataFrame, run_date: str, model_version: int) -> pd.DataFrame:
    """The rows of table ``recommendations`` for one night, checked before anything is deleted."""
    try:
        valid_date = dt.date.fromisoformat(run_date).isoformat() == run_date
    except (TypeError, ValueError):
        valid_date = False
    if not valid_date:
        raise ValueError(f"write_recommendations: run_date must be 'YYYY-MM-DD', got {run_date!r}")
    missing = [c for c in RECOMMENDATION_COLUMNS if c not in recs.columns]
    if missing:
        raise ValueError(f"write_recommendations: recs lacks column(s) {missing}; it has {list(recs.columns)}")
    nulls = [c for c in RECOMMENDATION_COLUMNS if recs[c].isna().any()]
    if nulls:
        raise ValueError(f"write_recommendations: recs has empty values in column(s) {nulls}")
    duplicated = recs.duplicated(["user_id", "rank"])
    if duplicated.any():
        first = recs[duplicated].iloc[0]
        raise ValueError(f"write_recommendations: recs has {int(duplicated.sum())} duplicate (user_id, rank) "
                         f"rows, e.g. user {first['user_id']!r} rank {first['rank']}")
    return pd.DataFrame({
        "run_date": run_date,
        "user_id": recs["user_id"].astype(str).to_numpy(),
        "rank": recs["rank"].astype("int64").to_numpy(),
        "item_id": recs["item_id"].astype(str).to_numpy(),
        "score": recs["score"].astype("float64").to_numpy(),
        "model_version": int(model_version),
    }, columns=list(TABLE_COLUMNS))


def insert_batch(conn: sa.Connection, rows: pd.DataFrame, table: sa.Table = schema.recommendations) -> None:
    """Inserts one batch (its columns are the table's, in order) inside the caller's transaction."""
    names = list(rows.columns)
    driver = conn.dialect.driver if conn.dialect.name == "postgresql" else None
    if driver in ("psycopg2", "psycopg"):
        _copy_into(conn, rows, driver, table)
        return
    columns = [rows[c].tolist() for c in names]  # plain Python values, column by column: fast
    if conn.dialect.paramstyle == "qmark":  # SQLite: one executemany of tuples, no per-row compiling
        placeholders = ", ".join("?" for _ in names)
        conn.exec_driver_sql(f"INSERT INTO {table.name} ({', '.join(names)}) "
                             f"VALUES ({placeholders})", list(zip(*columns)))
    else:
        conn.execute(table.insert(), [dict(zip(names, values)) for values in zip(*columns)])


def _copy_into(conn: sa.Connection, rows: pd.DataFrame, driver: str, table: sa.Table) -> None:
    """PostgreSQL ``COPY ... FROM STDIN`` (CSV) on the transaction's own DBAPI connection."""
    buffer = io.StringIO()
    rows.to_csv(buffer, index=False, header=False, quoting=csv.QUOTE_MINIMAL)
    statement = f"COPY {table.name} ({', '.join(rows.columns)}) FROM STDIN WITH (FORMAT csv)"
    cursor = conn.connection.cursor()
    try:
        if driver == "psycopg2":
            buffer.seek(0)
            cursor.copy_expert(statement, buffer)
        else:
            with cursor.copy(statement) as copy:
                copy.write(buffer.getvalue())
    finally:
        cursor.close()
