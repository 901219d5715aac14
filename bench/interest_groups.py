"""Interest groups on the synthetic warehouse: planted truth recovered, ids stable, and the cost.

    python bench/interest_groups.py [--nights 2026-03-01,2026-03-02] [--params params.yaml]
                                    [--users N] [--items N] [--out bench/results]

The synthetic warehouse of ``--params``'s ``demo_data`` plants interest groups
(``pipelines.datasets.synthetic.planted_interest_groups``). In a temporary project every stage of
each night runs for real (``python -m tasks.<stage>``, as a night runs them), then:

* the adjusted Rand index of the published interest groups (``interest_group_members``, the
  champion's groups from whole histories) against the planted groups, every published user;
* stability: the share of each night's ids kept from the night before, the membership churn
  publish reports, and the ARI between the two nights' memberships (users in both);
* cost: the group work in evaluate and publish (their recorded ``seconds``) against the night's
  training time (``reports/finetune/training.json``); the target is under 15%. The demo's nights
  train for seconds, so ``--users``/``--items`` size the warehouse up (a MovieLens-1M-sized crowd:
  ``--users 6000 --items 3700``) to see the ratio of a night that trains for minutes.

Prints a table and writes ``interest-groups-synthetic[-<users>u].json``.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):
    sys.path.insert(0, str(PROJECT_ROOT))

from bench.quality import in_temporary_project, machine_info, progress, run_stage, write_atomic  # noqa: E402

STAGES = ("extract", "validate", "profiles", "finetune", "evaluate", "promote", "publish")
DEFAULT_NIGHTS = ("2026-03-01", "2026-03-02")
ARI_TARGET = 0.8
COST_TARGET = 0.15


def project_params(base: dict[str, Any], project: Path) -> dict[str, Any]:
    """``base`` with every path inside ``project`` (URLs become SQLite files there)."""
    params = copy.deepcopy(base)
    for key in list(params["paths"]):
        params["paths"][key] = (f"sqlite:///{project / (key.removesuffix('_url') + '.db')}" if key.endswith("_url")
                                else str(project / key))
    return params


def published_groups(url: str, night: str) -> dict[str, int]:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT user_id, group_id FROM interest_group_members WHERE run_date = :d"),
                                {"d": night}).all()
    finally:
        engine.dispose()
    return {user: int(group) for user, group in rows}


def night_result(params: dict[str, Any], night: str, truth: dict[str, int],
                 previous: dict[str, int] | None, stage_seconds: dict[str, float]) -> dict[str, Any]:
    from sklearn.metrics import adjusted_rand_score

    groups = published_groups(params["paths"]["warehouse_url"], night)
    users = sorted(groups)
    paths = {key: Path(value) for key, value in params["paths"].items() if not key.endswith("_url")}
    publish = json.loads((paths["publish"] / "summary.json").read_text())["groups"]
    evaluation = json.loads((paths["evaluate"] / "evaluation.json").read_text())["groups"]
    training = json.loads((paths["reports"] / "finetune" / "training.json").read_text())
    group_seconds = evaluation["seconds"] + publish["seconds"]
    result: dict[str, Any] = {
        "night": night, "users": len(users), "groups": len(set(groups.values())),
        "ari_vs_planted": adjusted_rand_score([truth[u] for u in users], [groups[u] for u in users]),
        "churn": publish["churn"], "strategy": publish["strategy"], "backoff_strength": publish["backoff_strength"],
        "cost": {"group_seconds_evaluate": evaluation["seconds"], "group_seconds_publish": publish["seconds"],
                 "train_seconds": training["train_seconds"], "finetune_stage_seconds": stage_seconds["finetune"],
                 "ratio": group_seconds / training["train_seconds"]},
        "stage_seconds": stage_seconds,
    }
    if previous:
        common = sorted(groups.keys() & previous.keys())
        result["ari_vs_previous_night"] = adjusted_rand_score([previous[u] for u in common],
                                                              [groups[u] for u in common])
        result["ids_kept"] = len(set(groups.values()) & set(previous.values())) / len(set(groups.values()))
    return result


def format_table(nights: list[dict[str, Any]]) -> str:
    head = f"{'night':<12}{'users':>7}{'groups':>8}{'ARI':>8}{'ARI prev':>10}{'ids kept':>10}{'churn':>8}{'cost':>8}"
    lines = [head, "-" * len(head)]
    for n in nights:
        churn = n["churn"]["churn"] if n.get("churn") else float("nan")
        lines.append(f"{n['night']:<12}{n['users']:>7}{n['groups']:>8}{n['ari_vs_planted']:>8.3f}"
                     f"{n.get('ari_vs_previous_night', float('nan')):>10.3f}{n.get('ids_kept', float('nan')):>10.2f}"
                     f"{churn:>8.3f}{n['cost']['ratio']:>8.1%}")
    return "\n".join(lines)


def run(params_file: Path, nights: list[str], project: Path, sizes: dict[str, int]) -> dict[str, Any]:
    import yaml

    from pipelines.datasets.synthetic import generate_warehouse, planted_interest_groups

    params = project_params(yaml.safe_load(params_file.read_text()), project)
    params["demo_data"].update(sizes)
    project_file = project / "params.yaml"
    project_file.write_text(yaml.safe_dump(params, sort_keys=False))
    counts = generate_warehouse(params["paths"]["warehouse_url"], **params["demo_data"])
    progress(f"synthetic warehouse: {counts}")
    truth = planted_interest_groups(**params["demo_data"])
    results, previous = [], None
    for night in nights:
        seconds = {stage: round(run_stage(stage, project_file, night), 2) for stage in STAGES}
        results.append(night_result(params, night, truth, previous, seconds))
        previous = published_groups(params["paths"]["warehouse_url"], night)
    last = results[-1]
    return {"dataset": "synthetic warehouse (params demo_data)", "demo_data": params["demo_data"],
            "planted_groups": len(set(truth.values())), "nights": results,
            "summary": {"ari_vs_planted": last["ari_vs_planted"], "ari_target": ARI_TARGET,
                        "ids_kept": last.get("ids_kept"), "cost_ratio": max(n["cost"]["ratio"] for n in results),
                        "cost_target": COST_TARGET},
            "machine": machine_info()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nights", default=",".join(DEFAULT_NIGHTS), help="comma-separated logical dates")
    parser.add_argument("--params", type=Path, default=PROJECT_ROOT / "params.yaml")
    parser.add_argument("--users", type=int, help="demo_data.n_users instead of the params'")
    parser.add_argument("--items", type=int, help="demo_data.n_items instead of the params'")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "bench" / "results")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temporary project (its path is printed), e.g. to profile a stage in it")
    args = parser.parse_args(argv)
    sizes = {key: value for key, value in (("n_users", args.users), ("n_items", args.items)) if value}
    nights = [n.strip() for n in args.nights.split(",") if n.strip()]
    document = in_temporary_project("bench-interest-groups-", args.keep,
                                    lambda project: run(args.params.resolve(), nights, project, sizes))
    if document is None:  # a stage failed: in_temporary_project said which, in one line
        return 1
    print(format_table(document["nights"]))
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"interest-groups-synthetic{f'-{args.users}u' if args.users else ''}.json"
    write_atomic(out, json.dumps(document, indent=2, default=str) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
