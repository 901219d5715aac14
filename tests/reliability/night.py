"""A tiny project for the promote and publish stages: params, profiles, two real small models,
and the inputs that evaluate would leave for a night (candidate, blessing, metrics)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
import yaml

from tests.conftest import shipped_params
from tests.e2e.helpers import rebased_params

NIGHTS = ("2026-02-08", "2026-02-09")
FIRST_EVENT_S = 1_769_904_000  # 2026-02-01T00:00:00Z; a user's j-th event is j days later
DAY_S = 86_400
ITEM_IDS = [f"i{j:02d}" for j in range(24)]
USER_IDS = [f"u{j:02d}" for j in range(16)]
K = 5


def build_model(directory: Path, seed: int) -> Path:
    """A real recommender (untrained, distinct weights per seed) saved as finetune saves it."""
    import torch

    from pipelines.model.recommender import RecommenderConfig, SequenceRecommender, save_model

    finetune = shipped_params().finetune
    torch.manual_seed(seed)
    save_model(SequenceRecommender(RecommenderConfig.from_params(finetune, ITEM_IDS)), directory)
    return directory


def write_profiles(directory: Path) -> None:
    """Profiles as the profiles stage writes them: each user has seen a few items."""
    directory.mkdir(parents=True, exist_ok=True)
    n = len(ITEM_IDS)
    histories = [[ITEM_IDS[(u * 3 + j) % n] for j in range(4 + u % 5)] for u in range(len(USER_IDS))]
    times = [[FIRST_EVENT_S + j * DAY_S for j in range(len(h))] for h in histories]
    pd.DataFrame({
        "user_id": USER_IDS,
        "train_items": [h[:-2] for h in histories],
        "valid_item": [h[-2] for h in histories],
        "test_item": [h[-1] for h in histories],
        "train_ts": [t[:-2] for t in times],
        "valid_ts": pd.array([t[-2] for t in times], dtype="Int64"),
        "test_ts": pd.array([t[-1] for t in times], dtype="Int64"),
    }).to_parquet(directory / "sequences.parquet", index=False)
    (directory / "manifest.json").write_text(json.dumps(
        {"stage": "profiles", "data_interval": {"start": "2026-02-01T00:00:00", "end": "2026-02-10T00:00:00"}}))
    pd.DataFrame({"item_id": ITEM_IDS, "text": [f"Quiet Harbor Story {i}. drama. A drama story." for i in ITEM_IDS],
                  "train_count": 1}).to_parquet(directory / "items.parquet", index=False)
    pd.DataFrame({"user_id": USER_IDS, "profile_text": "", "n_interactions": [len(h) for h in histories]}
                 ).to_parquet(directory / "users.parquet", index=False)


def make_project(root: Path, registry_url: str | None = None) -> tuple[dict[str, Any], Path]:
    """params.yaml with every path under ``root`` (SQLite registry unless ``registry_url``)."""
    params = rebased_params(root)
    paths = params["paths"]
    if registry_url:
        paths["registry_url"] = registry_url
    params["publish"]["k"] = K
    params_file = root / "params.yaml"
    params_file.write_text(yaml.safe_dump(params))
    write_profiles(Path(paths["profiles"]))
    return params, params_file


def stage_night(params: dict[str, Any], night: str, model_dir: Path, *, blessed: bool,
                recency_prior: dict[str, Any] | None = None) -> None:
    """What finetune and evaluate leave behind for ``night``: the candidate, metrics (with the
    recency prior evaluate chose, where given) and blessing."""
    paths = params["paths"]
    candidate = Path(paths["candidate"])
    shutil.rmtree(candidate, ignore_errors=True)
    shutil.copytree(model_dir, candidate)
    (candidate / "manifest.json").write_text(json.dumps(
        {"stage": "finetune", "logical_date": night,
         "data_interval": {"start": f"{night}T00:00:00", "end": f"{night}T23:59:59"}}))
    evaluate = Path(paths["evaluate"])
    evaluate.mkdir(parents=True, exist_ok=True)
    reason = "every threshold passed" if blessed else "candidate ndcg@10 0.0100 - champion 0.0300 < required +0.0000"
    (evaluate / "blessing.json").write_text(json.dumps(
        {"logical_date": night, "blessed": blessed, "decision": "BLESSED" if blessed else "NOT_BLESSED",
         "reason": reason, "checks": []}))
    metrics: dict[str, Any] = {"candidate": {"ndcg@10": 0.03 if blessed else 0.01}}
    if recency_prior is not None:
        metrics["recency_prior"] = recency_prior
    (evaluate / "metrics.json").write_text(json.dumps(metrics))


def published(params: dict[str, Any], night: str) -> pd.DataFrame:
    engine = sa.create_engine(params["paths"]["warehouse_url"])
    try:
        with engine.connect() as conn:
            return pd.read_sql(sa.text("SELECT * FROM recommendations WHERE run_date = :d ORDER BY user_id, rank"),
                               conn, params={"d": night})
    finally:
        engine.dispose()


def run_task(stage: str, params_file: Path, night: str) -> int:
    """Runs a stage entry point in this process, as the end-to-end tests do."""
    import importlib

    return importlib.import_module(f"tasks.{stage}").main(["--params", str(params_file), "--logical-date", night])
