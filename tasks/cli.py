"""The ``retrain`` command: demo data, MovieLens import, single stages, the registry and reproduce."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from tasks.common import EXIT_NON_RETRYABLE, configure_logging, load_params

if TYPE_CHECKING:
    from pipelines.registry import Registry

EXIT_USAGE = 2  # what argparse returns for bad arguments
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


PROMOTE_NEEDS_FORCE = (
    "retrain registry promote: the promote stage promotes blessed candidates on its own; a manual "
    "promotion overrides the gate and needs --force and --reason"
)


def cmd_registry(args: argparse.Namespace) -> int:
    """``retrain registry ACTION``: every failure is one line on stderr and a non-zero exit."""
    from pipelines.io import NonRetryableError
    from pipelines.registry import Registry, UnknownVersionError

    if args.action == "promote" and not args.force:
        print(PROMOTE_NEEDS_FORCE, file=sys.stderr)
        return EXIT_USAGE
    if args.action in ("promote", "rollback") and not (args.reason or "").strip():
        print(f"retrain registry {args.action}: --reason is required and must not be empty", file=sys.stderr)
        return EXIT_USAGE
    try:
        paths = load_params(args.params)["paths"]
        with Registry(paths["registry_url"], Path(paths["artifact_store"])) as registry:
            return REGISTRY_ACTIONS[args.action](registry, args)
    except (NonRetryableError, UnknownVersionError) as exc:
        print(f"retrain registry {args.action}: {exc}", file=sys.stderr)
        return EXIT_NON_RETRYABLE


def _registry_list(registry: Registry, args: argparse.Namespace) -> int:
    champion = registry.champion()
    print(f"{'version':>7}  {'run_date':10}  {'status':8}  {'ndcg@10':>8}  {'parent':>6}  reason")
    for v in registry.list_versions():
        mark = "*" if champion and champion.version == v.version else " "
        ndcg = v.metrics.get("candidate", {}).get("ndcg@10", float("nan"))
        parent = "-" if v.parent_version is None else str(v.parent_version)
        print(f"{v.version:>6}{mark}  {v.run_date:10}  {v.status:8}  {ndcg:8.4f}  {parent:>6}  {v.reason}")
    print("(* = champion)" if champion else "(no champion yet)")
    return 0


def _registry_show(registry: Registry, args: argparse.Namespace) -> int:
    v = registry.get(args.version)
    champion = registry.champion()
    print(json.dumps({**v.__dict__, "champion": bool(champion and champion.version == v.version)},
                     indent=2, default=str))
    return 0


def _registry_diff(registry: Registry, args: argparse.Namespace) -> int:
    diff = registry.diff(args.v1, args.v2)
    if args.json:
        print(json.dumps(diff.to_dict(), indent=2, default=str))
        return 0
    print(f"version {diff.v1} -> version {diff.v2}")
    if diff.identical:
        print("no differences")
    for section in ("status", "params", "metrics", "lineage"):
        for key, change in getattr(diff, section).items():
            old, new = (json.dumps(change[s], default=str) if s in change else "(absent)" for s in ("v1", "v2"))
            print(f"  {section:8} {key}: {old} -> {new}")
    return 0


def _registry_promote(registry: Registry, args: argparse.Namespace) -> int:
    change = registry.promote(args.version, reason=args.reason, actor=args.actor, force=args.force)
    if not change.moved:
        print(f"version {args.version} is already the champion; nothing changed")
    else:
        print(f"version {change.champion.version} ({change.champion.status}) is champion; was {change.previous} "
              f"(audit entry {change.audit_id})")
    return 0


def _registry_rollback(registry: Registry, args: argparse.Namespace) -> int:
    started = time.perf_counter()
    change = registry.rollback(reason=args.reason, actor=args.actor, to_version=args.to)
    elapsed_ms = (time.perf_counter() - started) * 1000
    print(f"rolled back: champion {change.previous} -> {change.champion.version} "
          f"(audit entry {change.audit_id}) in {elapsed_ms:.1f} ms")
    return 0


def _registry_audit(registry: Registry, args: argparse.Namespace) -> int:
    print(f"{'id':>5}  {'at (UTC)':19}  {'action':13}  {'version':>7}  {'prev':>4}  {'actor':12}  reason")
    for e in registry.audit_log(limit=args.limit):
        version = "-" if e.version is None else str(e.version)
        previous = e.details.get("previous_champion")
        previous = "-" if previous is None else str(previous)
        print(f"{e.id:>5}  {e.at:%Y-%m-%d %H:%M:%S}  {e.action:13}  {version:>7}  {previous:>4}  "
              f"{e.actor:12}  {e.reason}")
    return 0


REGISTRY_ACTIONS = {
    "list": _registry_list, "show": _registry_show, "diff": _registry_diff, "promote": _registry_promote,
    "rollback": _registry_rollback, "audit": _registry_audit,
}


def _default_actor() -> str:
    return os.environ.get("USER") or "unknown"


def _add_registry_parser(sub: argparse._SubParsersAction) -> None:
    registry = sub.add_parser("registry", help="inspect the model registry, promote by hand, roll back")
    actions = registry.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="every version, its status, NDCG@10, parent and reason; * marks the champion")
    show = actions.add_parser("show", help="one version with its lineage")
    show.add_argument("version", type=int)
    diff = actions.add_parser("diff", help="what differs between two versions: status, params, metrics, lineage")
    diff.add_argument("v1", type=int)
    diff.add_argument("v2", type=int)
    diff.add_argument("--json", action="store_true", help="print the differences as JSON")
    promote = actions.add_parser("promote", help="make a version champion by hand (overrides the gate)")
    promote.add_argument("version", type=int)
    promote.add_argument("--force", action="store_true", help="required: a manual promotion overrides the gate")
    promote.add_argument("--reason", help="required: why, recorded in the audit log")
    rollback = actions.add_parser("rollback", help="give the champion back to the previous champion")
    rollback.add_argument("--to", type=int, metavar="VERSION", help="an earlier champion to return to instead")
    rollback.add_argument("--reason", help="required: why, recorded in the audit log")
    for parser in (promote, rollback):
        parser.add_argument("--actor", default=_default_actor(), help="who (default: $USER)")
    audit = actions.add_parser("audit", help="the audit log, newest first")
    audit.add_argument("--limit", type=int, default=20, help="entries to show (default: 20)")
    registry.set_defaults(func=cmd_registry)


def cmd_reproduce(args: argparse.Namespace) -> int:
    from pipelines.io import NonRetryableError
    from pipelines.snapshot import SnapshotError
    from tasks.reproduce import print_comparisons, reproduce

    try:
        comparisons = reproduce(args.version, load_params(args.params), Path.cwd(), from_stage=args.from_stage,
                                keep=args.keep)
    except (NonRetryableError, SnapshotError) as exc:
        print(f"retrain reproduce: {exc}", file=sys.stderr)
        return EXIT_NON_RETRYABLE
    return 0 if print_comparisons(args.version, comparisons) else 1


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

    _add_registry_parser(sub)

    reproduce = sub.add_parser("reproduce", help="restore a version's night from DVC, rerun it, compare hashes")
    reproduce.add_argument("version", type=int)
    reproduce.add_argument("--from", dest="from_stage", default="finetune",
                           choices=("extract", "validate", "profiles", "finetune"),
                           help="first stage to rerun on the restored inputs (default: finetune)")
    reproduce.add_argument("--keep", action="store_true", help="keep the scratch worktree (state/reproduce/vN)")
    reproduce.set_defaults(func=cmd_reproduce)
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
