"""The ``retrain`` command: demo data, MovieLens import, single stages and the registry."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from tasks.common import EXIT_NON_RETRYABLE, configure_logging, load_params

STAGES = ("extract", "validate", "profiles", "finetune", "evaluate", "promote", "publish")


def cmd_demo_data(args: argparse.Namespace) -> int:
    from pipelines.synthetic import generate_warehouse

    params = load_params(args.params)
    settings = dict(params["demo_data"])
    for key in ("seed", "n_users", "n_items", "days"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    url = args.url or params["paths"]["warehouse_url"]
    _ensure_sqlite_dir(url)
    counts = generate_warehouse(url, **settings)
    print(f"demo warehouse written to {url}: {json.dumps(counts)}")
    return 0


def cmd_import_movielens(args: argparse.Namespace) -> int:
    from pipelines.movielens import import_movielens

    url = args.url or load_params(args.params)["paths"]["warehouse_url"]
    _ensure_sqlite_dir(url)
    counts = import_movielens(Path(args.path), url)
    print(f"MovieLens from {args.path} imported into {url}: {json.dumps(counts)}")
    return 0


def cmd_stage(args: argparse.Namespace) -> int:
    module = importlib.import_module(f"tasks.{args.stage}")
    return module.main(["--params", args.params, "--logical-date", args.logical_date])


def cmd_registry(args: argparse.Namespace) -> int:
    from pipelines.registry import Registry

    paths = load_params(args.params)["paths"]
    with Registry(paths["registry_url"], Path(paths["artifact_store"])) as registry:
        champion = registry.champion()
        if args.action == "list":
            print(f"{'version':>7}  {'run_date':10}  {'status':8}  {'ndcg@10':>8}  reason")
            for v in registry.list_versions():
                mark = "*" if champion and champion.version == v.version else " "
                ndcg = v.metrics.get("candidate", {}).get("ndcg@10", float("nan"))
                print(f"{v.version:>6}{mark}  {v.run_date:10}  {v.status:8}  {ndcg:8.4f}  {v.reason}")
            print("(* = champion)" if champion else "(no champion yet)")
        else:
            if args.version is None:
                print("retrain registry show needs a VERSION", file=sys.stderr)
                return 2
            v = registry.get(args.version)
            print(json.dumps({**v.__dict__, "champion": bool(champion and champion.version == v.version)},
                             indent=2, default=str))
    return 0


def _ensure_sqlite_dir(url: str) -> None:
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="retrain", description=__doc__)
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo-data", help="write the synthetic demo warehouse (params: demo_data)")
    demo.add_argument("--url", help="SQLAlchemy URL (default: paths.warehouse_url / RETRAIN_WAREHOUSE_URL)")
    for key in ("seed", "n_users", "n_items", "days"):
        demo.add_argument(f"--{key.replace('_', '-')}", dest=key, type=int, help=f"override demo_data.{key}")
    demo.set_defaults(func=cmd_demo_data)

    movielens = sub.add_parser("import-movielens", help="load MovieLens 100K, 1M or latest-small into the warehouse")
    movielens.add_argument("path", help="directory holding u.data / ratings.dat / ratings.csv and friends")
    movielens.add_argument("--url", help="SQLAlchemy URL (default: paths.warehouse_url / RETRAIN_WAREHOUSE_URL)")
    movielens.set_defaults(func=cmd_import_movielens)

    stage = sub.add_parser("stage", help="run one pipeline stage (what Airflow and dvc repro run)")
    stage.add_argument("stage", choices=STAGES)
    stage.add_argument("--logical-date", required=True, help="the night, YYYY-MM-DD")
    stage.set_defaults(func=cmd_stage)

    registry = sub.add_parser("registry", help="inspect the model registry")
    registry.add_argument("action", choices=("list", "show"))
    registry.add_argument("version", nargs="?", type=int)
    registry.set_defaults(func=cmd_registry)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    configure_logging()
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, KeyError) as exc:
        print(f"retrain {args.command}: {exc}", file=sys.stderr)
        return EXIT_NON_RETRYABLE


if __name__ == "__main__":
    raise SystemExit(main())
