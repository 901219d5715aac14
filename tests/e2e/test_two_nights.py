"""The whole pipeline, every stage for real, for two nights on a tiny synthetic warehouse."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pandas as pd
import pytest

from pipelines.registry.store import Registry
from tests.e2e.helpers import NIGHTS, STAGES, tiny_project


def run_stage(stage: str, params_file, night: str) -> int:
    return importlib.import_module(f"tasks.{stage}").main(["--params", str(params_file), "--logical-date", night])


@pytest.mark.slow
def test_two_nights_end_to_end(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    params, params_file = tiny_project(tmp_path)

    for night in NIGHTS:
        for stage in STAGES:
            assert run_stage(stage, params_file, night) == 0, f"{stage} failed for {night}"
        decision = json.loads((tmp_path / "data/promote/decision.json").read_text())
        assert decision["logical_date"] == night and decision["reason"]

    blessing = json.loads((tmp_path / "data/evaluate/blessing.json").read_text())
    assert blessing["checks"] and all("reason" in c for c in blessing["checks"])
    metrics = json.loads((tmp_path / "reports/evaluate/metrics.json").read_text())
    assert metrics["candidate"]["ndcg@10"] > metrics["MostPop"]["ndcg@10"]
    assert {"candidate", "champion", "MostPop", "EASE"} <= set(metrics)  # night two re-evaluates the champion
    evaluation = json.loads((tmp_path / "data/evaluate/evaluation.json").read_text())
    candidate = evaluation["models"]["candidate"]
    low, high = candidate["intervals"]["ndcg@10"]
    assert low <= candidate["metrics"]["ndcg@10"] <= high and {"ndcg@1", "ndcg@20"} <= set(candidate["metrics"])
    paired = evaluation["paired"]["ndcg@10"]
    assert paired["low"] <= paired["delta"] <= paired["high"]
    # night two has a champion: its change rules are judged on the paired interval, not skipped
    changes = [c for c in blessing["checks"] if c["rule"] in ("min_gain", "max_loss")]
    assert changes and not any(c["skipped"] for c in changes) and blessing["bootstrap_rule"] is None
    for check in changes:
        assert check["interval"] == [evaluation["paired"][check["metric"]][b] for b in ("low", "high")]
    assert any(name.startswith("users:") for name in evaluation["slices"])
    history = evaluation["history"]
    assert [h["run_date"] for h in history] == list(NIGHTS)  # night one's own numbers, then re-scored
    assert history[0]["ndcg@10"] > 0
    assert history[1]["ndcg@10"] == evaluation["models"]["champion"]["metrics"]["ndcg@10"]
    report = (tmp_path / "reports/evaluate/report.html").read_text()
    assert "NOT_BLESSED" in report or "BLESSED" in report
    for section in ("blessing", "metrics", "by-k", "deltas", "slices", "groups", "history", "training", "data"):
        assert f'id="{section}"' in report
    by_k = pd.read_csv(tmp_path / "reports/evaluate/ndcg_by_k.csv")
    assert list(by_k["k"]) == evaluation["ks"] and "candidate" in by_k.columns

    with Registry(params["paths"]["registry_url"], tmp_path / "state/artifacts") as registry:
        versions = registry.list_versions()
        assert [v.run_date for v in versions] == list(NIGHTS)
        assert versions[0].blessed  # bootstrap rule on the first night
        champion = registry.champion()
        assert champion is not None and champion.lineage["manifests"]
    assert_recency_prior_chosen_and_recorded(params, evaluation, versions, champion)

    recs = pd.read_sql("SELECT * FROM recommendations", params["paths"]["warehouse_url"])
    assert set(recs["run_date"]) == set(NIGHTS)
    assert not recs.duplicated(["run_date", "user_id", "rank"]).any()
    assert set(recs[recs.run_date == NIGHTS[1]]["model_version"]) == {champion.version}
    assert_groups_published(params, evaluation, champion.version)
    before = len(recs)
    assert run_stage("publish", params_file, NIGHTS[1]) == 0
    assert len(pd.read_sql("SELECT * FROM recommendations", params["paths"]["warehouse_url"])) == before


def assert_recency_prior_chosen_and_recorded(params: dict, evaluation: dict, versions, champion) -> None:
    """Every (weight, window) pair was tried on validation beside off; the choice is recorded with the
    version, and publish serves the served version's."""
    recency = evaluation["recency_prior"]
    weights, windows = params["evaluate"]["recency_weights"], params["evaluate"]["recency_windows_days"]
    assert len(recency["validation"]) == 1 + len(weights) * len(windows) and "off" in recency["validation"]
    assert recency["chosen_on"] == "validation NDCG@10"
    assert versions[1].metrics["recency_prior"] == recency["chosen"]
    published = json.loads(Path(params["paths"]["publish"], "summary.json").read_text())["recency_prior"]
    served = champion.metrics["recency_prior"]
    if served["weight"]:
        assert {key: published[key] for key in served} == served and published["as_of_day"] > 0
    else:
        assert published == {"weight": 0.0}


def assert_groups_published(params: dict, evaluation: dict, version: int) -> None:
    """Both nights published interest groups, with ids carried over and lists for every kind of group."""
    url = params["paths"]["warehouse_url"]
    groups = evaluation["groups"]
    assert groups["strategy"] in params["groups"]["strategies"] and groups["explicit_groups"] > 0
    assert "group_model" in groups["strategies"] and groups["models"]["candidate"]["group_ndcg@10"] >= 0
    members = pd.read_sql("SELECT * FROM interest_group_members", url)
    sizes = members.groupby(["run_date", "group_id"]).size()
    assert set(members["run_date"]) == set(NIGHTS) and sizes.min() >= params["groups"]["min_group_size"]
    first, second = (set(members[members.run_date == night]["group_id"]) for night in NIGHTS)
    assert first & second  # tonight's groups keep last night's ids where their members overlap
    profiles = pd.read_sql("SELECT * FROM interest_groups", url)
    assert (profiles["summary"].str.contains("users")).all() and set(profiles["model_version"]) >= {version}
    lists = pd.read_sql("SELECT * FROM group_recommendations", url)
    tonight = lists[lists.run_date == NIGHTS[1]]
    assert set(tonight["group_kind"]) == {"interest", "explicit"}
    assert not lists.duplicated(["run_date", "group_kind", "group_id", "rank"]).any()


@pytest.mark.slow
def test_rerunning_a_night_reproduces_the_same_artifact(tmp_path, monkeypatch):
    """Training is deterministic on CPU: a rerun registers nothing new and publishes no duplicates."""
    monkeypatch.chdir(tmp_path)
    params, params_file = tiny_project(tmp_path)
    for _ in range(2):
        for stage in STAGES:
            assert run_stage(stage, params_file, NIGHTS[0]) == 0, stage
    with Registry(params["paths"]["registry_url"], tmp_path / "state/artifacts") as registry:
        assert [v.version for v in registry.list_versions()] == [1]
    recs = pd.read_sql("SELECT * FROM recommendations", params["paths"]["warehouse_url"])
    assert not recs.duplicated(["run_date", "user_id", "rank"]).any()
