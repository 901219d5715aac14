"""bench/quality.py: the bench overrides, the logical date, and one real run of the whole command."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from bench import quality
from tests.conftest import PROJECT_ROOT

METRIC_KEYS = {"ndcg@10", "hr@10", "mrr@10", "coverage@10", "train_s"}


def write_movielens_100k(directory: Path, n_users: int = 120, n_items: int = 60, seed: int = 0) -> Path:
    """A MovieLens-100K-format directory (u.data, u.item, u.user) where users walk a cycle of items.

    Over 1000 ratings, so the platform's default ``validate.min_rows`` holds without an override.
    """
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    flags = "|".join("0" for _ in range(19))
    (directory / "u.item").write_text("".join(
        f"{i}|Movie {i} (19{90 + i % 10})|01-Jan-19{90 + i % 10}||http://example.invalid/{i}|{flags}\n"
        for i in range(1, n_items + 1)), encoding="latin-1")
    (directory / "u.user").write_text("".join(
        f"{u}|{20 + u % 40}|{'MF'[u % 2]}|student|{10000 + u}\n" for u in range(1, n_users + 1)))
    lines = []
    for user in range(1, n_users + 1):
        start, length = int(rng.integers(n_items)), int(rng.integers(9, 15))
        for step in range(length):
            item = (start + step) % n_items + 1
            lines.append(f"{user}\t{item}\t{int(rng.integers(1, 6))}\t{880_000_000 + user * 5000 + step * 60}\n")
    (directory / "u.data").write_text("".join(lines))
    return directory


def flatten(tree: dict, prefix: str = "") -> dict[str, object]:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def test_bench_params_change_only_the_documented_overrides(tmp_path):
    base = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    base["paths"]["added_by_a_new_stage"] = "data/new"  # unknown to the bench, rebased all the same
    params = quality.bench_params(base, tmp_path, "1998-04-23", 3.0)
    before, after = flatten(base), flatten(params)
    changed = {k for k in after if before.get(k) != after[k]}
    assert changed - {k for k in changed if k.startswith("paths.")} == {
        "run.logical_date", "validate.min_interval_rows", "validate.max_staleness_hours",
        "validate.volume_min_nights", "validate.user_share_min_rows", "validate.drift.min_rows",
        "finetune.budget_minutes", "finetune.epochs"}
    assert all(str(tmp_path) in str(v) for k, v in after.items() if k.startswith("paths."))
    assert params["paths"]["warehouse_url"] == f"sqlite:///{tmp_path}/warehouse.db"
    assert params["finetune"]["budget_minutes"] == 3.0 and params["validate"]["min_interval_rows"] == 1
    assert base["paths"]["extract"] == "data/extract"  # the caller's params are left alone


def test_logical_date_is_the_day_after_the_newest_interaction(tmp_path):
    dataset = write_movielens_100k(tmp_path / "ml-synthetic", n_users=5)
    _, logical_date = quality.import_dataset(dataset, tmp_path)
    newest = max(int(line.split("\t")[3]) for line in (dataset / "u.data").read_text().splitlines())
    import datetime as dt

    assert logical_date == (dt.datetime.fromtimestamp(newest, dt.timezone.utc).date()
                            + dt.timedelta(days=1)).isoformat()


def test_stage_environment_drops_connection_overrides(monkeypatch):
    monkeypatch.setenv("RETRAIN_WAREHOUSE_URL", "postgresql://prod/warehouse")
    monkeypatch.setenv("RETRAIN_REGISTRY_URL", "postgresql://prod/registry")
    env = quality.stage_env(threads=1)
    assert "RETRAIN_WAREHOUSE_URL" not in env and "RETRAIN_REGISTRY_URL" not in env
    assert env["HF_HUB_OFFLINE"] == "1" and env["OMP_NUM_THREADS"] == "1"


def test_arguments_are_checked():
    assert quality.parse_args(["d", "--models", "ours,MostPop"]).models == ["MostPop", "ours"]
    assert quality.parse_args(["d"]).models == ["MostPop", "EASE", "SASRec", "ours"]
    assert quality.parse_args(["d", "--tag", "night"]).tag == "night" and quality.parse_args(["d"]).tag == "quality"
    with pytest.raises(SystemExit):
        quality.parse_args(["d", "--tag", "../quality"])  # a tag never leaves --out
    with pytest.raises(SystemExit):
        quality.parse_args(["d", "--models", "MostPop,ItemKNN"])
    with pytest.raises(SystemExit):
        quality.parse_args(["d", "--budget-minutes", "0"])


@pytest.mark.slow
def test_the_command_writes_the_results_and_the_recommendations(tmp_path):
    dataset = write_movielens_100k(tmp_path / "ml-synthetic")
    out, scratch = tmp_path / "results", tmp_path / "scratch"
    scratch.mkdir()
    # A connection override in the environment must not pull the bench into another warehouse.
    env = {**os.environ, "TMPDIR": str(scratch), "HF_HUB_OFFLINE": "1",
           "RETRAIN_WAREHOUSE_URL": f"sqlite:///{tmp_path}/must-not-be-used.db"}
    run = subprocess.run([sys.executable, "bench/quality.py", str(dataset), "--budget-minutes", "0.2",
                          "--out", str(out), "--threads", "1"],
                         cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-4000:]
    assert "SASRec" in run.stdout and "ours" in run.stdout  # the table

    document = json.loads((out / "quality-ml-synthetic.json").read_text())
    assert set(document) == {"dataset", "machine", "budget_minutes", "models"}
    assert document["dataset"] == "ml-synthetic" and document["budget_minutes"] == 0.2
    assert {"cpu", "cores", "torch", "python"} <= set(document["machine"])
    assert list(document["models"]) == ["MostPop", "EASE", "SASRec", "ours"]
    extra = {"EASE": {"lambda"}, "ours": {"recency_prior", "without_recency_prior", "training"}}
    for name, row in document["models"].items():
        assert set(row) == METRIC_KEYS | extra.get(name, set()), name
        assert all(0.0 <= row[m] <= 1.0 for m in METRIC_KEYS - {"train_s"}) and row["train_s"] >= 0
    ours = document["models"]["ours"]
    assert set(ours["recency_prior"]) == {"weight", "window_days"}
    assert set(ours["without_recency_prior"]) == METRIC_KEYS - {"train_s"}  # the same model, scored without it
    assert set(ours["training"]) == {"stopped_by", "steps", "best_epoch", "averaged_epochs", "best_valid_ndcg@10",
                                     "weight_averaging_valid_ndcg@10"}
    assert 0 < ours["training"]["best_valid_ndcg@10"] <= 1
    if not ours["recency_prior"]["weight"]:
        assert all(ours["without_recency_prior"][m] == ours[m] for m in METRIC_KEYS - {"train_s"})
    assert document["models"]["SASRec"]["ndcg@10"] > document["models"]["MostPop"]["ndcg@10"]

    with open(out / "recs-ml-synthetic.csv", newline="") as handle:
        recs = list(csv.DictReader(handle))
    assert list(recs[0]) == ["user_id", "rank", "item_id"]
    rated: dict[str, list[tuple[int, str]]] = {}
    for line in (dataset / "u.data").read_text().splitlines():
        user, item, _, ts = line.split("\t")
        rated.setdefault(user, []).append((int(ts), item))
    by_user: dict[str, list[str]] = {}
    for row in recs:
        by_user.setdefault(row["user_id"], []).append(row["item_id"])
        assert 1 <= int(row["rank"]) <= 10
    assert set(by_user) == set(rated)  # the source's user ids, every evaluable user
    for user, items in by_user.items():
        history = {item for _, item in sorted(rated[user])[:-1]}  # all but the test item
        assert len(items) == 10 and not history & set(items), user
    assert not (tmp_path / "must-not-be-used.db").exists()
    assert not list(scratch.glob("bench-quality-*"))  # the temporary project is gone
