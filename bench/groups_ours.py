"""The platform's own model for the group benches, trained as ``bench/quality.py`` trains it.

A MovieLens directory is imported into a SQLite warehouse in a temporary project; an optional
``prepare`` step may rewrite the warehouse before any stage reads it (the cold-user bench drops
events there); then extract -> validate -> profiles -> finetune run for real, each
``python -m tasks.<stage>`` in its own process, with ``bench.quality.bench_params``' overrides
(the ``--budget-minutes`` wall clock decides when training ends). The evaluate stage is not run:
the group benches score the candidate themselves, through ``serving_scorer`` as a night serves it.

One override more than ``bench_params``: a MovieLens warehouse has no explicit group tables, so
where the params map ``group_members``/``group_events`` and the warehouse lacks them, both entries
are dropped from ``extract.mapping`` (the params say "map both tables or neither").
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench import quality

OURS_STAGES = quality.PLATFORM_STAGES + ("finetune",)
SCORE_CHUNK = 1024  # users per scorer call
GROUP_TABLES = ("group_members", "group_events")  # extract.mapping's optional explicit-group tables


@dataclass
class Trained:
    """What one training run leaves for the benches."""

    params: dict[str, Any]
    profiles: Any  # pipelines.profiles.build.Profiles
    model: Any  # pipelines.model.recommender.SequenceRecommender
    warehouse_url: str
    training: dict[str, Any]  # reports/finetune/training.json
    stage_seconds: dict[str, float]
    prepared: dict[str, Any]  # what ``prepare`` returned

    @property
    def item_ids(self) -> list[str]:
        return list(self.profiles.items["item_id"])

    @property
    def texts(self) -> list[str]:
        return list(self.profiles.items["text"])

    def scorer(self):
        from pipelines.model.recommender import serving_scorer

        return serving_scorer(self.model, self.item_ids, self.texts)

    def training_summary(self) -> dict[str, Any]:
        keys = ("train_seconds", "stopped_by", "steps", "best_epoch", "averaged_epochs", "best_valid_ndcg@10",
                "device")
        return {**{key: self.training[key] for key in keys if key in self.training},
                "stage_seconds": {stage: round(s, 1) for stage, s in self.stage_seconds.items()}}


def train_ours(dataset: Path, project: Path, args: argparse.Namespace,
               prepare: Callable[[str], dict[str, Any]] | None = None) -> Trained:
    """Imports ``dataset`` into ``project``, runs ``prepare(warehouse_url)`` if given, then the
    stages up to finetune; returns the candidate and the profiles it was trained on.

    Raises:
        RuntimeError: a stage failed.
    """
    import yaml

    from pipelines.core.io import read_json
    from pipelines.model.recommender import load_model
    from pipelines.profiles.build import load_profiles

    base = yaml.safe_load(args.params.read_text())
    url, logical_date = quality.import_dataset(dataset, project)
    prepared = prepare(url) if prepare is not None else {}
    params = quality.bench_params(base, project, logical_date, args.budget_minutes, args.params.resolve().parent)
    unmap_missing_group_tables(params, url)
    params_file = project / "params.yaml"
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    seconds = {stage: quality.run_stage(stage, params_file, logical_date, args.threads) for stage in OURS_STAGES}
    training = read_json(Path(params["paths"]["reports"]) / "finetune" / "training.json")
    quality.progress(f"ours: training stopped by {training.get('stopped_by')} after {training.get('steps')} steps, "
                     f"best validation NDCG@10 {training.get('best_valid_ndcg@10', float('nan')):.4f}")
    return Trained(params=params, profiles=load_profiles(params["paths"]["profiles"]),
                   model=load_model(Path(params["paths"]["candidate"])), warehouse_url=url,
                   training=training, stage_seconds=seconds, prepared=prepared)


def unmap_missing_group_tables(params: dict[str, Any], url: str) -> list[str]:
    """Drops ``extract.mapping``'s group tables where the warehouse has not both; returns what went."""
    import sqlalchemy as sa

    mapping = params.get("extract", {}).get("mapping", {})
    keys = [key for key in GROUP_TABLES if key in mapping]
    if not keys:
        return []
    engine = sa.create_engine(url)
    try:
        present = set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()
    if all(mapping[key].get("table") in present for key in keys):
        return []
    for key in keys:
        del mapping[key]
    progress(f"the warehouse has no explicit group tables: {', '.join(keys)} unmapped for this bench")
    return keys


def score_matrix(scorer, histories: Sequence[Sequence[str]], n_items: int, chunk: int = SCORE_CHUNK) -> np.ndarray:
    """(users, items) float32 scores of ``scorer`` for each history, ``chunk`` users per call."""
    import torch

    parts = []
    with torch.no_grad():
        for start in range(0, len(histories), chunk):
            parts.append(scorer([list(h) for h in histories[start:start + chunk]]).float().cpu().numpy())
    return np.concatenate(parts) if parts else np.zeros((0, n_items), dtype=np.float32)


def warehouse_events(url: str):
    """The warehouse's interactions (event_id, user_id, item_id, rating, ts), ids as strings."""
    import pandas as pd
    import sqlalchemy as sa

    from pipelines.core import schema

    table = schema.interactions
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            frame = pd.read_sql(sa.select(table.c.event_id, table.c.user_id, table.c.item_id, table.c.rating,
                                          table.c.ts), conn)
    finally:
        engine.dispose()
    frame["user_id"] = frame["user_id"].astype(str)
    frame["item_id"] = frame["item_id"].astype(str)
    return frame


def delete_events(url: str, event_ids: Sequence[int], chunk: int = 5000) -> int:
    """Deletes these interactions from the warehouse in one transaction; returns how many went."""
    import sqlalchemy as sa

    from pipelines.core import schema

    table = schema.interactions
    engine = sa.create_engine(url)
    deleted = 0
    try:
        with engine.begin() as conn:
            ids = [int(e) for e in event_ids]
            for start in range(0, len(ids), chunk):
                deleted += conn.execute(table.delete().where(table.c.event_id.in_(ids[start:start + chunk]))).rowcount
    finally:
        engine.dispose()
    return deleted


def elapsed(started: float) -> float:
    return round(time.perf_counter() - started, 1)


progress = quality.progress
