"""bench/groups_consrec.py: a ConsRec-layout dataset in the canonical warehouse tables, and (slow)
ours trained on one and ranked beside the baselines by bench/groups.py."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.groups_consrec import ORIGIN, import_consrec
from pipelines.datasets.consrec import load_consrec
from pipelines.groups.aggregation import GROUP_MODEL, STRATEGIES
from tests.conftest import PROJECT_ROOT
from tests.pipelines.datasets.test_consrec import write_layout


def write_trainable_layout(root: Path, seed: int = 0) -> Path:
    """A random ConsRec-layout set large enough to train on: 40 users with 12 training and 1 test
    item each, 12 groups of 3 with 6 training and 2 test items each, 60 items."""
    rng = np.random.default_rng(seed)
    lines: dict[str, list[str]] = {name: [] for name in (
        "userRatingTrain.txt", "userRatingTest.txt", "groupMember.txt", "groupRatingTrain.txt", "groupRatingTest.txt")}
    for user in range(40):
        items = rng.choice(60, 13, replace=False)
        lines["userRatingTrain.txt"] += [f"{user} {item}" for item in items[:12]]
        lines["userRatingTest.txt"].append(f"{user} {items[12]}")
    for group in range(12):
        lines["groupMember.txt"].append(f"{group} " + ",".join(str(u) for u in rng.choice(40, 3, replace=False)))
        items = rng.choice(60, 8, replace=False)
        lines["groupRatingTrain.txt"] += [f"{group} {item}" for item in items[:6]]
        lines["groupRatingTest.txt"] += [f"{group} {item}" for item in items[6:]]
    for name, rows in lines.items():
        (root / name).write_text("\n".join(rows) + "\n")
    return root


def test_a_consrec_set_lands_in_the_canonical_tables_in_file_order(tmp_path):
    data = load_consrec(write_layout(tmp_path))
    url = f"sqlite:///{tmp_path}/warehouse.db"
    assert import_consrec(data, url) == "2020-01-02"  # the day after the last event
    table = {name: pd.read_sql(f"SELECT * FROM {name}", url)
             for name in ("users", "items", "interactions", "group_members", "group_events")}
    assert sorted(table["users"]["user_id"]) == ["10", "11", "12", "13", "14"]  # members without ratings too
    assert set(table["items"]["item_id"]) == {"100", "101", "102", "103", "104", "105"}
    assert table["items"].set_index("item_id").loc["100", "title"] == "Toy Story"
    assert table["interactions"]["item_id"].tolist() == ["100", "105", "102"]
    assert pd.to_datetime(table["interactions"]["ts"]).is_monotonic_increasing
    assert sorted(zip(table["group_members"]["group_id"], table["group_members"]["user_id"])) == [
        ("1", "10"), ("1", "11"), ("2", "12"), ("2", "13"), ("2", "14")]
    events = table["group_events"]
    assert list(zip(events["group_id"], events["item_id"])) == [("1", "100"), ("1", "101"), ("2", "102")]
    assert pd.to_datetime(events["ts"]).min() == pd.Timestamp(ORIGIN)


@pytest.mark.slow
def test_the_bench_trains_ours_and_ranks_every_strategy_beside_the_baselines(tmp_path):
    (tmp_path / "trainable").mkdir()  # the directory names the results
    dataset = write_trainable_layout(tmp_path / "trainable")
    out, scratch = tmp_path / "results", tmp_path / "scratch"
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch), "HF_HUB_OFFLINE": "1"}
    run = subprocess.run([sys.executable, "bench/groups.py", str(dataset), "--budget-minutes", "0.05",
                          "--lambdas", "1,10", "--out", str(out), "--threads", "1"],
                         cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-4000:]
    document = json.loads((out / "groups-trainable.json").read_text())
    strategies = [*STRATEGIES, GROUP_MODEL]
    assert list(document["models"]) == ["MostPop", "GroupEASE", "EASE + average", "EASE + least misery",
                                        *[f"ours + {s}" for s in strategies], "ours"]
    assert all(0.0 <= row["ndcg@10"] <= row["hr@10"] <= 1.0 for row in document["models"].values())
    chosen = document["ours"]["strategy"]
    assert chosen in strategies and document["models"]["ours"]["strategy"] == chosen
    assert document["models"]["ours"]["ndcg@10"] == document["models"][f"ours + {chosen}"]["ndcg@10"]
    validation = {s: document["models"][f"ours + {s}"]["validation_ndcg"] for s in strategies}
    assert validation[chosen] == max(validation.values())  # chosen on validation, not on the test cases
    assert document["ours"]["validation_cases"] == document["protocol"]["validation_cases"] > 0  # same cases
    assert document["ours"]["training"]["steps"] > 0 and document["budget_minutes"] == 0.05
    assert set(document["sampled_protocol"]["models"]) == set(document["models"])
    assert document["recommendations"] == {"model": f"ours ({chosen})", "k": 20, "groups": 12}

    with open(out / "group-recs-trainable.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    training = load_consrec(dataset).group_train.groupby("group_id")["item_id"].agg(set).to_dict()
    assert {row["group_id"] for row in rows} == {str(g) for g in range(12)}
    for group, frame in pd.DataFrame(rows).groupby("group_id"):
        assert frame["rank"].astype(int).tolist() == list(range(1, 21))
        assert not set(frame["item_id"]) & training[group]  # the group's own history is never recommended
    assert not list(scratch.glob("bench-groups-*"))  # the temporary project is gone
