"""Speed of the nightly full-ranking evaluation, ML-1M-sized by default.

    python bench/eval_speed.py [--users 6040] [--items 3416] [--repeats 3] [--out bench/results]

Times, on synthetic histories (ML-1M-like lengths) and in one run:
  * ``ranking``: ``pipelines.ranking.scoring.rank_eval_set`` on precomputed scores, the vectorised,
    chunked ranking (history excluded, pessimistic ties) plus every metric at K = 1, 5, 10, 20;
  * ``naive``: the same ranks from a per-user Python loop (ranks only, no top-k), the baseline;
  * ``model``: the whole evaluation of one model as a night runs it: the platform's recommender
    scoring every user (text tower over the catalogue, sequence encoder) and the ranking;
  * ``analysis``: bootstrap intervals (1,000 resamples), the paired comparison and the slices.
Prints medians over ``--repeats`` and writes ``bench/results/eval_speed.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):
    sys.path.insert(0, str(PROJECT_ROOT))

KS = (1, 5, 10, 20)


def timed(function, repeats: int) -> tuple[float, Any]:
    seconds, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = function()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds), result


def precomputed_scorer(scores):
    """A scorer that hands out the rows of ``scores`` in order, as the users are asked for."""
    position = 0

    def score(histories: list[list[str]]):
        nonlocal position
        rows = scores[position:position + len(histories)]
        position += len(histories)
        return rows

    return score


def naive_ranks(scores, eval_set, column: dict[str, int]):
    """Per user: map ids to columns, drop the history, count the scores above the target and the
    ties (pessimistic): the straightforward loop, the baseline. Ranks only, no top-k lists."""
    import numpy as np

    ranks = []
    for row, history, target_id in zip(scores, eval_set.histories, eval_set.targets):
        row, target = row.copy(), column[target_id]
        row[[column[i] for i in history if column[i] != target]] = -np.inf
        ranks.append(int((row > row[target]).sum() + (row == row[target]).sum() - 1))
    return np.array(ranks)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=6040)
    parser.add_argument("--items", type=int, default=3416)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import numpy as np
    import torch

    from bench.train_speed import synthetic_sequences
    from pipelines.config import load_params
    from pipelines.evaluate.analysis import analyse, user_slices
    from pipelines.ranking.scoring import EvalSet, model_scorer, rank_eval_set
    from pipelines.ranking.metrics import compute_metrics
    from pipelines.model.recommender import Catalogue, RecommenderConfig, SequenceRecommender

    torch.manual_seed(0)
    item_ids = [f"i{j}" for j in range(args.items)]
    column = {item: j for j, item in enumerate(item_ids)}
    histories = synthetic_sequences(args.users, args.items, 200)
    eval_set = EvalSet([f"u{i}" for i in range(args.users)], [h[:-1] for h in histories], [h[-1] for h in histories])
    scores = torch.randint(0, 1000, (args.users, args.items)).float()  # integer scores: many ties

    def ranking():
        outcome = rank_eval_set(precomputed_scorer(scores), eval_set, item_ids, max(KS))
        compute_metrics(outcome.rankings(args.items, np.ones(args.items), args.users), KS)
        return outcome

    figures: dict[str, float] = {"users": args.users, "items": args.items}
    figures["ranking_s"], outcome = timed(ranking, args.repeats)
    targets = [column[t] for t in eval_set.targets]
    figures["naive_s"], naive = timed(lambda: naive_ranks(scores.numpy(), eval_set, column), args.repeats)
    if not np.array_equal(naive, outcome.ranks):
        raise AssertionError("the vectorised and the naive ranks differ")
    figures["naive_over_ranking"] = figures["naive_s"] / figures["ranking_s"]

    params = load_params(PROJECT_ROOT / "params.yaml", environ={}).finetune
    model = SequenceRecommender(RecommenderConfig.from_params(params, item_ids)).eval()
    texts = [f"Movie {j} (19{j % 100:02d}) Drama|Comedy" for j in range(args.items)]
    catalogue = Catalogue(model, item_ids, texts)
    figures["model_s"], model_outcome = timed(
        lambda: rank_eval_set(model_scorer(model, catalogue), eval_set, item_ids, max(KS)), args.repeats)

    popularity = np.bincount([column[i] for h in eval_set.histories for i in h], minlength=args.items)
    slices = user_slices(np.array([len(h) for h in eval_set.histories]), np.array(targets), popularity)
    figures["analysis_s"], _ = timed(lambda: analyse(
        {"candidate": model_outcome, "champion": outcome}, ks=KS, k=10, n_items=args.items,
        popularity=popularity, n_train_users=args.users, slices=slices), args.repeats)
    figures["night_total_s"] = 2 * figures["model_s"] + figures["analysis_s"]  # candidate + champion

    machine = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
               "cpu_cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__}
    print(f"eval_speed: {args.users} users x {args.items} items, median of {args.repeats}, "
          f"{machine['cpu_cores']} cores")
    for key, value in figures.items():
        print(f"  {key:22s} {value:,.3f}" if isinstance(value, float) else f"  {key:22s} {value}")
    args.out.mkdir(parents=True, exist_ok=True)
    target = args.out / "eval_speed.json"
    target.write_text(json.dumps({"machine": machine, "figures": figures}, indent=2) + "\n")
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
