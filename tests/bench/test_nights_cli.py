"""bench/nights.py: the nights of a dataset's time line, and one real run of the whole command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import nights
from tests.conftest import PROJECT_ROOT

START_S = 888_710_400  # 1998-03-01 00:00 UTC


def write_time_line(directory: Path, n_users: int = 90, n_items: int = 40, events: int = 18) -> Path:
    """A MovieLens-100K-format directory whose users rate along a cycle of items, one rating every
    8 hours over 6 days, starting on day 0, 1 or 2: every day has users with history."""
    directory.mkdir(parents=True, exist_ok=True)
    flags = "|".join("0" for _ in range(19))
    (directory / "u.item").write_text("".join(
        f"{i}|Movie {i} (1997)|01-Jan-1997||http://example.invalid/{i}|{flags}\n" for i in range(1, n_items + 1)),
        encoding="latin-1")
    (directory / "u.user").write_text("".join(f"{u}|30|M|student|10000\n" for u in range(1, n_users + 1)))
    (directory / "u.data").write_text("".join(
        f"{u}\t{(u * 7 + step) % n_items + 1}\t4\t{START_S + (u % 3) * 86_400 + step * 8 * 3600}\n"
        for u in range(1, n_users + 1) for step in range(events)))
    return directory


def test_arguments_are_checked():
    for wrong in (["d", "--nights", "1"], ["d", "--nights", "3", "--night-days", "0"],
                  ["d", "--nights", "3", "--budget-minutes", "0"]):
        with pytest.raises(SystemExit):
            nights.parse_args(wrong)


@pytest.mark.slow
def test_the_command_replays_nights_and_writes_results(tmp_path):
    dataset = write_time_line(tmp_path / "ml-timeline")
    out, scratch = tmp_path / "results", tmp_path / "scratch"
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch), "HF_HUB_OFFLINE": "1",
           "RETRAIN_WAREHOUSE_URL": f"sqlite:///{tmp_path}/must-not-be-used.db"}
    run = subprocess.run([sys.executable, "bench/nights.py", str(dataset), "--nights", "3", "--night-days", "1",
                          "--budget-minutes", "0.05", "--out", str(out), "--threads", "1", "--cold-every-night",
                          "--keep"],
                         cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-4000:]
    document = json.loads((out / "nights-ml-timeline.json").read_text())
    first, middle, last = document["nights"]
    assert (first["logical_date"], last["logical_date"]) == ("1998-03-06", "1998-03-08")
    assert (first["start_ts"], first["end_ts"]) == (START_S + 5 * 86_400, START_S + 6 * 86_400)
    assert (first["ours_trained"], middle["ours_trained"], last["ours_trained"]) == ("cold", "warm", "warm")
    # --cold-every-night: a cold retrain beside the middle (warm) night too, not beside the first (cold) one
    assert "ours-cold" not in first["quality"] and "paired" not in first
    assert set(middle["quality"]) == {"ours", "MostPop", "EASE", "ours-cold"}
    assert set(middle["paired"]["ours_minus"]) == {"MostPop", "EASE"}
    assert middle["cold_training"]["plan"]["kind"] == "cold"
    assert last["training"]["plan"]["kind"] == "warm" and last["training"]["plan"]["text_vectors_computed"] == 0
    assert set(last["quality"]) == {"ours", "MostPop", "EASE", "ours-cold", "SASRec"}
    for row in last["quality"].values():
        assert row["all"]["users"] == last["judged_users"] > 0
        assert all(0.0 <= row["all"][m] <= 1.0 for m in ("ndcg@10", "recall@10", "hr@10"))
    stages = last["cost"]["ours"]
    assert list(stages) == list(nights.NIGHT_STAGES)
    assert all(cost["wall_s"] > 0 and cost["cpu_s"] > 0 and cost["peak_rss_mb"] > 50 for cost in stages.values())
    summary = document["summary"]
    assert summary["cost_ratio"] == pytest.approx(stages["finetune"]["wall_s"]
                                                  / last["cost"]["ours-cold"]["finetune"]["wall_s"], abs=1e-3)
    assert summary["ours_ndcg@10"] == last["quality"]["ours"]["all"]["ndcg@10"]
    paired = last["paired"]  # the same judged users, so the differences are exactly the means' differences
    assert paired["users"] == last["judged_users"]
    assert paired["warm_over_cold"]["ratio"] == pytest.approx(summary["quality_ratio"], abs=1e-3)
    assert summary["quality_ratio_ci95"][0] <= summary["quality_ratio_ci95"][1]
    assert set(paired["ours_minus"]) == {"MostPop", "EASE", "SASRec"}
    for name, diff in paired["ours_minus"].items():
        assert diff["delta"] == pytest.approx(last["quality"]["ours"]["all"]["ndcg@10"]
                                              - last["quality"][name]["all"]["ndcg@10"], abs=1e-5)
        assert diff["low"] <= diff["high"]
    assert summary["ours_minus_best_baseline"] == paired["ours_minus"][summary["best_baseline"]]
    pooled = summary["pooled_quality_ratio"]  # the warm / cold ratio over every user of both warm nights
    assert (pooled["nights"], pooled["user_nights"]) == (2, middle["judged_users"] + last["judged_users"])
    warm_sum, cold_sum = (sum(night["quality"][name]["all"]["ndcg@10"] * night["judged_users"]
                              for night in (middle, last)) for name in ("ours", "ours-cold"))
    assert pooled["ratio"] == pytest.approx(warm_sum / cold_sum, abs=1e-3)
    recs = (out / "nights-recs-ml-timeline.csv").read_text().splitlines()
    assert recs[0] == "user_id,rank,item_id" and len(recs) == 1 + 10 * last["judged_users"]
    assert not (tmp_path / "must-not-be-used.db").exists()

    # bench/warm_variants.py on the kept project: each variant's own candidate, judged on the same interval.
    [project] = scratch.glob("bench-nights-*")
    variants = tmp_path / "variants.json"
    variants.write_text(json.dumps({"shipped": {}, "no champion": {"warm_nights": {
        "keep_champion_unless_better": False, "learning_rate_scale": 5.0}}}))
    compared = subprocess.run([sys.executable, "bench/warm_variants.py", str(project), "--nights", "1998-03-08",
                               "--night-days", "1", "--variants", str(variants)],
                              cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert compared.returncode == 0, compared.stderr[-4000:]
    rows = {line.split()[1]: line for line in compared.stdout.splitlines() if line.startswith("1998-03-08")}
    assert set(rows) == {"shipped", "no"}, compared.stdout
    shipped_ndcg = float(rows["shipped"].split("NDCG@10 ")[1].split()[0])
    assert 0.0 <= shipped_ndcg <= 1.0
    assert (project / "variants" / "1998-03-08" / "no champion" / "candidate" / "manifest.json").is_file()
    assert "mean next-interval NDCG@10 over the nights:" in compared.stdout
