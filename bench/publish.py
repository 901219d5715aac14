"""Speed of the publish stage: the champion's top-K for every user, written to the warehouse.

    python bench/publish.py [--users 6040] [--items 3416] [--k K] [--repeats 3] [--naive-users 300]
                            [--postgres-url URL | --postgres-url none] [--out bench/results]

An ML-1M-shaped problem (6,040 users, 3,416 items, ML-1M-like history lengths cut to the
model's ``max_seq_len``, item texts from the project's synthetic generator) and the platform's
recommender built with the ``params.yaml`` finetune settings (untrained LoRA; the base model is
the local MiniLM). In one run, medians over ``--repeats``:

  * ``load``: ``pipelines.model.recommender.load_model`` of the saved model (what publish does first);
  * ``text tower``: the catalogue's text through the LM and the item table (``model_scorer``);
  * ``score + top-k``: ``pipelines.publish.writer.top_k_recommendations`` over every user;
  * ``write``: ``pipelines.publish.writer.write_recommendations`` into SQLite and into PostgreSQL (a
    temporary database created on the server of ``--postgres-url`` and dropped afterwards).

The baseline is the straightforward first implementation: one scorer call per user, a Python
loop to exclude the history, and one INSERT statement per row. It is timed on the first
``--naive-users`` users and extrapolated linearly to all users (it shares load and text tower).
Each phase is reported in wall-clock and in process-CPU seconds (the work alone, whatever else
runs on the cores). Prints a table and writes ``<out>/publish.json``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):
    sys.path.insert(0, str(PROJECT_ROOT))

from bench.databases import temporary_postgres  # noqa: E402

DEFAULT_POSTGRES = os.environ.get("RETRAIN_TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
BUDGET_S = 60.0


def timed(function: Callable[[int], Any], repeats: int) -> tuple[tuple[float, float], Any]:
    """Median wall and median process-CPU seconds of ``function(repeat)``, and its last result.

    CPU seconds count the work whatever else runs on the cores; on a busy machine the wall
    clock also counts the waiting.
    """
    walls, cpus, result = [], [], None
    for repeat in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        result = function(repeat)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return (statistics.median(walls), statistics.median(cpus)), result


def item_table(n_items: int, demo: dict[str, Any], max_chars: int, workdir: Path):
    """Items with the synthetic generator's titles, categories and descriptions, as profiles texts them."""
    import pandas as pd

    from pipelines.profiles.build import item_texts
    from pipelines.datasets.synthetic import generate_warehouse

    url = f"sqlite:///{workdir / 'items.db'}"
    generate_warehouse(url, seed=demo["seed"], n_users=1, n_items=n_items, n_groups=demo["n_groups"],
                       n_categories=demo["n_categories"], start_date=demo["start_date"], days=1,
                       events_per_user_per_day=0.0)
    items = pd.read_sql("SELECT * FROM items ORDER BY item_id", url)
    return list(items["item_id"]), list(item_texts(items, max_chars))


def histories_for(n_users: int, item_ids: list[str], max_len: int, seed: int = 0) -> list[list[str]]:
    """ML-1M-like histories: lognormal lengths (median ~100, 20 to 2,000) cut to ``max_len``,
    distinct items drawn by a long-tailed popularity."""
    import numpy as np

    rng = np.random.default_rng(seed)
    lengths = np.minimum(np.clip(rng.lognormal(4.6, 0.9, n_users).astype(int), 20, 2000), max_len)
    popularity = 1.0 / np.arange(1, len(item_ids) + 1) ** 0.8
    popularity /= popularity.sum()
    ids = np.asarray(item_ids, dtype=object)
    return [list(ids[rng.choice(len(item_ids), size=n, replace=False, p=popularity)]) for n in lengths]


def naive_top_k(scorer, user_ids: list[str], histories: list[list[str]], item_ids: list[str], k: int
                ) -> list[dict[str, Any]]:
    """The baseline: one scorer call per user, history excluded item by item, rows as dicts."""
    import math

    import torch

    column = {item: i for i, item in enumerate(item_ids)}
    rows = []
    for user, history in zip(user_ids, histories):
        with torch.no_grad():
            scores = scorer([history])[0].clone()
        for item in history:
            if item in column:
                scores[column[item]] = -math.inf
        values, index = torch.topk(scores, min(k, len(item_ids)))
        for rank, (value, col) in enumerate(zip(values.tolist(), index.tolist()), start=1):
            if value > -math.inf:
                rows.append({"user_id": user, "rank": rank, "item_id": item_ids[col], "score": value})
    return rows


def naive_write(url: str, run_date: str, version: int, rows: list[dict[str, Any]]) -> None:
    """The baseline write: the night's delete, then one INSERT statement per row, one transaction."""
    import sqlalchemy as sa

    from pipelines.core import schema

    table = schema.recommendations
    engine = sa.create_engine(url)
    try:
        table.create(engine, checkfirst=True)
        with engine.begin() as conn:
            conn.execute(table.delete().where(table.c.run_date == run_date))
            for row in rows:
                conn.execute(table.insert().values(run_date=run_date, model_version=version, **row))
    finally:
        engine.dispose()


def night(repeat: int) -> str:
    return f"2026-03-{repeat + 1:02d}"  # a new night per repeat, as the nightly run writes them


@dataclass(frozen=True)
class Problem:
    item_ids: list[str]
    texts: list[str]
    user_ids: list[str]
    histories: list[list[str]]
    k: int


def time_ours(problem: Problem, model_dir: Path, urls: dict[str, str], repeats: int):
    """Each phase of the publish path; returns (wall and CPU seconds per phase, the lists, the scorer)."""
    from pipelines.ranking.scoring import model_scorer
    from pipelines.model.recommender import Catalogue, load_model
    from pipelines.publish.writer import top_k_recommendations, write_recommendations

    p, figures = problem, {}

    def phase(name: str, function: Callable[[int], Any]) -> Any:
        (figures[f"{name}_s"], figures[f"{name}_cpu_s"]), result = timed(function, repeats)
        return result

    model = phase("load", lambda _: load_model(model_dir))
    scorer = phase("text_tower", lambda _: model_scorer(model, Catalogue(model, p.item_ids, p.texts)))
    recs = phase("score_top_k", lambda _: top_k_recommendations(scorer, p.user_ids, p.histories, p.item_ids, p.k))
    for db, url in urls.items():
        phase(f"write_{db}", lambda r: write_recommendations(url, night(r), 1, recs))
    return figures, recs, scorer


def time_naive(problem: Problem, scorer, recs, urls: dict[str, str], n: int, repeats: int) -> dict[str, float]:
    """The baseline on the first ``n`` users, scaled to all users; checks it ranks as ours does."""
    import numpy as np

    p, scale, naive = problem, len(problem.user_ids) / n, {}
    (seconds, _), rows = timed(lambda _: naive_top_k(scorer, p.user_ids[:n], p.histories[:n], p.item_ids, p.k), repeats)
    naive["score_top_k_s"] = seconds * scale
    ours_rows = recs[recs["user_id"].isin(set(p.user_ids[:n]))]
    if len(ours_rows) != len(rows) or not np.allclose(ours_rows["score"].to_numpy(), [r["score"] for r in rows],
                                                      atol=1e-4):
        raise AssertionError("ours and the baseline disagree on the top-k lists")
    for db, url in urls.items():
        (seconds, _), _ = timed(lambda r: naive_write(url, night(10 + r), 1, rows), repeats)
        naive[f"write_{db}_s"] = seconds * scale
    return naive


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    import numpy as np
    import torch

    from bench.quality import machine_info
    from pipelines.config import load_params
    from pipelines.model.recommender import RecommenderConfig, SequenceRecommender, save_model

    load_before = os.getloadavg()[0]  # other processes on the cores slow every phase
    params = load_params(args.params, environ={})
    finetune = params.finetune
    torch.manual_seed(0)
    item_ids, texts = item_table(args.items, params.demo_data.model_dump(), params.profiles.max_text_chars, workdir)
    problem = Problem(item_ids, texts, [f"u{i}" for i in range(args.users)],
                      histories_for(args.users, item_ids, finetune.max_seq_len), args.k or params.publish.k)
    save_model(SequenceRecommender(RecommenderConfig.from_params(finetune, item_ids)), workdir / "model")
    urls = {"sqlite": f"sqlite:///{workdir / 'warehouse.db'}"}
    pg_url, drop_pg, pg_skipped = (None, lambda: None, "--postgres-url none") if args.postgres_url == "none" \
        else temporary_postgres(args.postgres_url)
    if pg_url:
        urls["postgres"] = pg_url
    n = min(args.naive_users, args.users)
    try:
        ours, recs, scorer = time_ours(problem, workdir / "model", urls, args.repeats)
        naive = time_naive(problem, scorer, recs, urls, n, args.repeats)
    finally:
        drop_pg()
    for db in urls:  # the baseline shares load and text tower
        for figures in (ours, naive):
            figures[f"total_{db}_s"] = (ours["load_s"] + ours["text_tower_s"] + figures["score_top_k_s"]
                                        + figures[f"write_{db}_s"])
        ours[f"total_{db}_cpu_s"] = sum(ours[f"{name}_cpu_s"] for name in ("load", "text_tower", "score_top_k",
                                                                          f"write_{db}"))
    return {
        "machine": {**machine_info(), "load_average_1m_before": load_before,
                    "load_average_1m_after": os.getloadavg()[0]},
        "problem": {"users": args.users, "items": args.items, "k": problem.k, "rows": len(recs),
                    "max_seq_len": int(finetune["max_seq_len"]),
                    "mean_history": float(np.mean([len(h) for h in problem.histories])), "repeats": args.repeats},
        "ours": ours,
        "naive": {**naive, "users_timed": n, "extrapolated_to": args.users,
                  "note": "timed on the first users_timed users, scaled linearly; shares load and text tower"},
        "postgres": "skipped: " + pg_skipped if pg_skipped else "temporary database on " + redacted(args.postgres_url),
        "budget_s": BUDGET_S,
        "within_budget": all(v < BUDGET_S for key, v in ours.items() if key.startswith("total_") and "cpu" not in key),
    }


def redacted(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def format_table(result: dict[str, Any]) -> str:
    ours, naive = result["ours"], result["naive"]
    header = f"{'phase':<20} {'ours s':>9} {'ours CPU s':>11} {'naive s':>9}"
    lines = [header, "-" * len(header)]
    for name, label in (("load", "load model"), ("text_tower", "text tower"), ("score_top_k", "score + top-k"),
                        ("write_sqlite", "write SQLite"), ("write_postgres", "write PostgreSQL"),
                        ("total_sqlite", "total, SQLite"), ("total_postgres", "total, PostgreSQL")):
        if f"{name}_s" in ours:
            other = naive.get(f"{name}_s")
            lines.append(f"{label:<20} {ours[f'{name}_s']:>9.2f} {ours[f'{name}_cpu_s']:>11.2f} "
                         f"{'(same)' if other is None else f'{other:.2f}':>9}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=6040)
    parser.add_argument("--items", type=int, default=3416)
    parser.add_argument("--k", type=int, default=0, help="list length (default: params publish.k)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--naive-users", type=int, default=300, help="users the baseline is timed on")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES, help="server for the PostgreSQL write, or 'none'")
    parser.add_argument("--params", type=Path, default=PROJECT_ROOT / "params.yaml")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    for name in ("users", "items", "repeats", "naive_users"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

    with tempfile.TemporaryDirectory(prefix="publish-bench-") as workdir:
        result = run(args, Path(workdir))
    problem, machine = result["problem"], result["machine"]
    print(f"publish: {problem['users']} users x {problem['items']} items, k={problem['k']} ({problem['rows']:,} rows), "
          f"median of {problem['repeats']}, {machine['cpu']} ({machine['cores']} cores, "
          f"{machine['torch_threads']} torch threads; load average {machine['load_average_1m_before']:.1f} before, "
          f"{machine['load_average_1m_after']:.1f} after)")
    print(format_table(result))
    print(f"naive: timed on {result['naive']['users_timed']} users, scaled to {problem['users']}; "
          f"PostgreSQL: {result['postgres']}")
    from pipelines.core.io import write_json

    target = args.out / "publish.json"
    write_json(target, result)
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
