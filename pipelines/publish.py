"""Batch scoring with the champion and the write-back of top-K lists to the warehouse."""

from __future__ import annotations

import math

import pandas as pd
import sqlalchemy as sa
import torch

from pipelines import schema
from pipelines.evaluation import Scorer


def top_k_recommendations(scorer: Scorer, user_ids: list[str], histories: list[list[str]],
                          catalogue_ids: list[str], k: int, chunk: int = 1024) -> pd.DataFrame:
    """Each user's top k unseen items: columns user_id, rank (1-based), item_id, score."""
    column = {item: i for i, item in enumerate(catalogue_ids)}
    frames = []
    for start in range(0, len(user_ids), chunk):
        histories_chunk = histories[start:start + chunk]
        with torch.no_grad():
            scores = scorer(histories_chunk).float().clone()
        for row, history in enumerate(histories_chunk):
            seen = [column[i] for i in history if i in column]
            scores[row, seen] = -math.inf
        values, index = torch.topk(scores, min(k, scores.shape[1]), dim=1)
        users = user_ids[start:start + chunk]
        width = index.shape[1]
        frames.append(pd.DataFrame({
            "user_id": [u for u in users for _ in range(width)],
            "rank": list(range(1, width + 1)) * len(users),
            "item_id": [catalogue_ids[c] for c in index.reshape(-1).tolist()],
            "score": values.reshape(-1).tolist(),
        }))
    result = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["user_id", "rank", "item_id", "score"])
    return result[result["score"] > -math.inf].reset_index(drop=True)


def write_recommendations(url: str, run_date: str, model_version: int, recs: pd.DataFrame) -> int:
    """Replaces the night's rows in one transaction: a rerun of the same date never duplicates."""
    engine = sa.create_engine(url)
    table = schema.recommendations
    rows = [
        {"run_date": run_date, "user_id": r.user_id, "rank": int(r.rank), "item_id": r.item_id,
         "score": float(r.score), "model_version": int(model_version)}
        for r in recs.itertuples(index=False)
    ]
    try:
        table.create(engine, checkfirst=True)
        with engine.begin() as conn:
            conn.execute(table.delete().where(table.c.run_date == run_date))
            for start in range(0, len(rows), 10_000):
                conn.execute(table.insert(), rows[start:start + 10_000])
    finally:
        engine.dispose()
    return len(rows)
