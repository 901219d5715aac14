"""bench/new_items.py: items hidden from training are judged as new items, in one real run."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from bench import new_items
from pipelines.ranking.recency import ItemTimeline, RecencyPrior, case_prior
from pipelines.ranking.scoring import EvalSet
from tests.bench.test_nights_cli import START_S, write_time_line
from tests.conftest import PROJECT_ROOT


def test_arguments_are_checked():
    for wrong in (["d", "--hidden-fraction", "0"], ["d", "--hidden-fraction", "1"], ["d", "--budget-minutes", "0"]):
        with pytest.raises(SystemExit):
            new_items.parse_args(wrong)


def test_the_burying_variant_gives_an_item_never_seen_the_lowest_prior_where_serving_gives_the_average():
    day = START_S // 86_400
    # Item 0 chosen in the 2-day window, item 1 only before it, item 2 never.
    timeline = ItemTimeline(np.array([0, 0, 1]), np.array([day - 2, day - 1, day - 5]), 3)
    cases = EvalSet(["u"], [["x"]], ["y"], [START_S])
    prior = RecencyPrior(weight=1.0, window_days=2)
    buried = new_items.burying_unseen(timeline, prior, cases)(torch.zeros(1, 3), 0)[0]  # no model opinion
    served = case_prior(timeline, prior, cases).adjust(torch.zeros(1, 3), 0)[0]
    assert buried[0] > buried[1] == buried[2]
    assert served[0] > served[2] == 0 > served[1]


@pytest.mark.slow
def test_the_command_hides_items_and_judges_them_as_new(tmp_path):
    dataset = write_time_line(tmp_path / "ml-timeline")
    out, scratch = tmp_path / "results", tmp_path / "scratch"
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch), "HF_HUB_OFFLINE": "1",
           "RETRAIN_WAREHOUSE_URL": f"sqlite:///{tmp_path}/must-not-be-used.db"}
    run = subprocess.run([sys.executable, "bench/new_items.py", str(dataset), "--hidden-fraction", "0.1",
                          "--budget-minutes", "0.05", "--out", str(out), "--threads", "1"],
                         cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-4000:]
    document = json.loads((out / "new-items-ml-timeline.json").read_text())
    assert document["hidden_items"] == 4  # a tenth of the 40 items
    assert document["deleted_events"] > 0 and document["text_only_items"] >= 4
    models = document["models"]
    assert set(models) == {"ours", "ours, no prior", "ours, prior burying unseen items", "ours, ID rows unmasked",
                           "text similarity", "MostPop", "EASE", "SASRec"}
    for row in models.values():
        assert row["new"]["cases"] > 0 and row["new"]["cases"] + row["known"]["cases"] == 90
    assert models["MostPop"]["new"]["hr@10"] == 0.0  # no training event: MostPop ranks them last
    assert models["ours"]["validation"]["new"]["cases"] > 0
    assert "new NDCG@10" in run.stdout
    assert not (tmp_path / "must-not-be-used.db").exists()
    assert not list(scratch.glob("bench-new-items-*"))  # the temporary project is gone
