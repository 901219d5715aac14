"""Group recommendation benchmark on a ConsRec-layout dataset: the baselines of the protocol.

    python bench/groups.py DATASET_DIR [--out bench/results] [--lambdas 10,50,...] [--seed 0]

Protocol (full ranking): one case per (group, test item); the group's training items are excluded
from its ranking; test pairs whose item is already in the group's training pairs are dropped and
counted; ties count against the target. EASE's L2 weight is chosen on validation cases cut from
the training pairs, then the model is fitted on all training pairs. A validation case looks like a
test case: its item is one of the group's training items that no member has in their own
training history (on CAMRa2011 no test item is in a member's history, while 83% of the groups'
training items are; holding out any training item would choose the weight on an easier task). Models: MostPop (group training counts), GroupEASE (EASE over group
and user rows stacked, scored from the group's row), EASE on the members with average and with
least-misery aggregation. The platform's own group model is not part of this bench yet.

Writes ``<out>/groups-<dataset>.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

PROJECT_ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):  # run as a script: make `bench` (and the project) importable
    sys.path.insert(0, str(PROJECT_ROOT))

K = 10
DEFAULT_LAMBDAS = (1.0, 5.0, 10.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0)
MEMBER_STRATEGIES = {"EASE + average": "average", "EASE + least misery": "least_misery"}


def progress(message: str) -> None:
    print(f"[groups {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def split_validation(train: dict[str, list[int]], member_items: dict[str, set[int]], seed: int
                     ) -> tuple[dict[str, list[int]], dict[str, int]]:
    """Per group with two or more training items, one held out (seeded) for validation, chosen among
    the items none of its members has in their own history (a group without such an item has none)."""
    rng = np.random.default_rng(seed)
    fit, held_out = {}, {}
    for group, items in train.items():
        items = sorted(set(items))
        eligible = [i for i in items if i not in member_items.get(group, set())]
        if len(items) >= 2 and eligible:
            pick = eligible[int(rng.integers(len(eligible)))]
            held_out[group] = pick
            items = [i for i in items if i != pick]
        fit[group] = items
    return fit, held_out


def run(dataset_dir: Path, lambdas: list[float], seed: int) -> dict[str, Any]:
    from pipelines.datasets.consrec import load_consrec
    from pipelines.groups import baselines as gb

    data = load_consrec(dataset_dir)
    tables = (data.group_train, data.group_test, data.user_train, data.user_test)
    catalogue = sorted(set().union(*(set(t["item_id"]) for t in tables)))
    column = {item: i for i, item in enumerate(catalogue)}
    n_items = len(catalogue)
    group_items = data.group_train.groupby("group_id")["item_id"].agg(list).to_dict()
    group_train = {g: [column[i] for i in group_items.get(g, [])] for g in data.members}
    users = sorted({u for members in data.members.values() for u in members})
    user_train = {u: [column[i] for i in frame["item_id"]] for u, frame in data.user_train.groupby("user_id")}
    user_rows = gb.binary_rows([user_train.get(u, []) for u in users], n_items)
    member_rows = {g: gb.binary_rows([user_train.get(u, []) for u in members], n_items)
                   for g, members in data.members.items()}

    member_items = {g: {column[i] for i in items} for g, items in data.member_items().items()}
    fit, held_out = split_validation(group_train, member_items, seed)
    if not held_out and len(lambdas) > 1:
        raise SystemExit("no group has a training item to hold out for validation (two or more items, one of "
                         "them in no member's history): give a single --lambdas value")
    valid = gb.Cases(list(held_out), np.array(list(held_out.values()), dtype=np.int64), [fit[g] for g in held_out])
    tests = data.group_test_cases()
    test = gb.Cases(list(tests["group_id"]), np.array([column[i] for i in tests["item_id"]]),
                    [sorted(set(group_train[g])) for g in tests["group_id"]])
    progress(f"{len(data.members)} groups, {len(users)} users, {n_items} items; {len(valid.groups)} validation "
             f"and {len(test.groups)} test cases ({len(data.leaking_test_pairs())} leaking test pairs dropped)")

    results: dict[str, dict[str, Any]] = {}
    popularity = np.bincount(np.concatenate([np.asarray(v, dtype=np.int64) for v in group_train.values()]),
                             minlength=n_items)
    results["MostPop"] = gb.metrics(gb.most_popular(popularity, test), test, K)

    started = time.perf_counter()
    fit_rows = dict(zip(fit, gb.binary_rows(list(fit.values()), n_items)))
    stacked = gb.EaseFamily(np.vstack([*fit_rows.values(), user_rows]))
    lam, curve = gb.choose_lambda(stacked, lambdas, lambda w: gb.group_ease(fit_rows, w, valid), valid, K)
    all_rows = dict(zip(group_train, gb.binary_rows(list(group_train.values()), n_items)))
    final = gb.EaseFamily(np.vstack([*all_rows.values(), user_rows]))
    results["GroupEASE"] = {**gb.metrics(gb.group_ease(all_rows, final.weights(lam), test), test, K),
                            "lambda": lam, "validation": curve, "seconds": round(time.perf_counter() - started, 1)}
    progress(f"GroupEASE: {results['GroupEASE']}")

    members = gb.EaseFamily(user_rows)
    for name, strategy in MEMBER_STRATEGIES.items():
        started = time.perf_counter()
        lam, curve = gb.choose_lambda(members, lambdas, lambda w, s=strategy: gb.member_ease(member_rows, w, valid, s, K),
                                      valid, K)
        scores = gb.member_ease(member_rows, members.weights(lam), test, strategy, K)
        results[name] = {**gb.metrics(scores, test, K), "lambda": lam, "validation": curve,
                         "seconds": round(time.perf_counter() - started, 1)}
        progress(f"{name}: {results[name]}")
    return {"dataset": dataset_dir.resolve().name, "k": K,
            "protocol": {"cases": len(test.groups), "validation_cases": len(valid.groups),
                         "leaking_test_pairs_dropped": len(data.leaking_test_pairs()),
                         "duplicate_pairs_dropped": data.duplicates, "items": n_items, "seed": seed},
            "models": results}


def format_table(document: dict[str, Any]) -> str:
    lines = [f"| model | NDCG@{K} | HR@{K} | lambda |", "|---|---|---|---|"]
    for name, row in document["models"].items():
        lines.append(f"| {name} | {row[f'ndcg@{K}']:.4f} | {row[f'hr@{K}']:.4f} | {row.get('lambda', '')} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", type=Path, help="a ConsRec-layout directory (groupMember.txt, ...)")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "bench" / "results")
    parser.add_argument("--lambdas", default=",".join(str(v) for v in DEFAULT_LAMBDAS),
                        help="EASE L2 weights to choose from on validation (comma separated)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the validation split")
    args = parser.parse_args(argv)
    try:
        args.lambdas = [float(v) for v in args.lambdas.split(",") if v.strip()]
    except ValueError:
        parser.error(f"--lambdas must be numbers separated by commas, got {args.lambdas!r}")
    if not args.lambdas or min(args.lambdas) <= 0:
        parser.error("--lambdas needs at least one weight, every one > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    from bench.quality import machine_info

    args = parse_args(argv)
    started = time.perf_counter()
    document = run(args.dataset, args.lambdas, args.seed)
    document.update(machine=machine_info(), seconds=round(time.perf_counter() - started, 1))
    args.out.mkdir(parents=True, exist_ok=True)
    result_file = args.out / f"groups-{document['dataset']}.json"
    result_file.write_text(json.dumps(document, indent=2) + "\n")
    print(format_table(document))
    print(f"\nwritten: {result_file}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
