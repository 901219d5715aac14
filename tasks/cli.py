"""The ``retrain`` command: demo data, MovieLens import, single stages, the registry and reproduce."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pipelines.config import PathsParams, load_params
from tasks.common import EXIT_NON_RETRYABLE, configure_logging

if TYPE_CHECKING:
    import sqlalchemy as sa

    from pipelines.registry.store import Registry

EXIT_USAGE = 2  # what argparse returns for bad arguments
STAGES = ("extract", "validate", "profiles", "finetune", "evaluate", "promote", "publish")


def cmd_demo_data(args: argparse.Namespace) -> int:
    from pipelines.datasets.synthetic import generate_warehouse

    params = load_params(args.params)
    settings = params.demo_data.model_dump()
    for key in ("seed", "n_users", "n_items", "days"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    url = _warehouse_argument(args.url, params.paths.warehouse_url)
    _ensure_sqlite_dir(url)
    counts = generate_warehouse(url, **settings)
    print(f"demo warehouse written to {url.render_as_string(hide_password=True)}: {json.dumps(counts)}")
    return 0


def cmd_import_movielens(args: argparse.Namespace) -> int:
    from pipelines.datasets.movielens import import_movielens

    url = _warehouse_argument(args.url, load_params(args.params).paths.warehouse_url)
    _ensure_sqlite_dir(url)
    counts = import_movielens(Path(args.path), url)
    print(f"MovieLens from {args.path} imported into {url.render_as_string(hide_password=True)}: {json.dumps(counts)}")
    return 0


def _warehouse_argument(given: str | None, configured: str) -> sa.URL:
    """The warehouse URL of ``--url`` or of the params, parsed, its driver installed."""
    from pipelines.core.warehouse import sqlalchemy_url

    return sqlalchemy_url(given, "--url") if given else sqlalchemy_url(configured, "paths.warehouse_url")


def cmd_doctor(args: argparse.Namespace) -> int:
    """One line per check, OK or what to fix; exit 3 when any fails."""
    from tasks.doctor import run_checks

    params_file = Path(args.params)
    checks = run_checks(params_file, Path(os.environ.get("RETRAIN_PROJECT_DIR") or params_file.resolve().parent))
    for check in checks:
        print(check.line(), flush=True)
    failed = [check.name for check in checks if not check.ok]
    print(f"{len(checks) - len(failed)} of {len(checks)} checks passed" + (f"; fix: {', '.join(failed)}" if failed else ""))
    return EXIT_NON_RETRYABLE if failed else 0


def cmd_stage(args: argparse.Namespace) -> int:
    module = importlib.import_module(f"tasks.{args.stage}")
    return module.main(["--params", args.params, "--logical-date", args.logical_date])


VALIDATE_HELP = """\
Runs the validate stage for one night: the Great Expectations suite over data/extract (the
night's Parquet extract), the same entry point Airflow and dvc repro run.

The suite: exact columns and types per table; non-null and unique keys; ratings on the scale
and known event types; no duplicate events; every interaction's user and item present (and
created before it); timestamps inside the data interval, none after it, the newest fresh
enough; enough rows; the night's volume against the median of the earlier nights; no single
user producing most of the night; titles non-empty and bounded, all text readable; drift
against the previous night (event mix, item popularity, per-user activity, new users and items);
no interactions in the warehouse dated after the extraction (extract manifest's future_rows).
Its definition is the JSON files in pipelines/validate/expectations/ (GX suites, thresholds as
$PARAMETER references to the values below).

Thresholds live in params.yaml under validate.* (min_rows, min_interval_rows,
max_staleness_hours, rating_min/max, volume_nights, volume_min_nights, volume_min/max_ratio,
max_user_share, user_share_min_rows, title_min/max_chars) and validate.drift.*. Every night's
statistics and drift distances are kept in reports/validate/history.csv (DVC plots) and
drawn with their thresholds, failed nights marked, in reports/validate/history.html.

On failure: exit code 3 (not retried), a one-screen summary naming each failed expectation,
column, observed value and threshold; data/validate/result.json and its Data Docs are
written, and the night's extract and report are copied into paths.quarantine/<date>/
(a rerun of the night replaces it). Registry, champion and
warehouse are untouched.

Override: --accept EXPECTATION[:COLUMN] --reason TEXT accepts that failed expectation for
--logical-date only (the same as an entry in params validate.accept). Each acceptance is
recorded in result.json, the validate manifest and the registry audit log (accept_anomaly);
if every failure is accepted the night goes on. An --accept that matches nothing is reported.

example:
  retrain validate --logical-date 2026-03-02 \\
      --accept expect_column_values_to_be_between:rating --reason "partner resent a 0-10 batch"
"""


def cmd_validate(args: argparse.Namespace) -> int:
    from tasks import validate

    if args.accept and not (args.reason or "").strip():
        print("retrain validate: --accept needs --reason (why the anomaly is accepted)", file=sys.stderr)
        return EXIT_USAGE
    argv = ["--params", args.params, "--logical-date", args.logical_date, "--actor", args.actor]
    for spec in args.accept or []:
        argv += ["--accept", spec]
    if args.reason:
        argv += ["--reason", args.reason]
    return validate.main(argv)


PROMOTE_NEEDS_FORCE = (
    "retrain registry promote: the promote stage promotes blessed candidates on its own; a manual "
    "promotion overrides the gate and needs --force and --reason"
)


def cmd_registry(args: argparse.Namespace) -> int:
    """``retrain registry ACTION``: every failure is one line on stderr and a non-zero exit."""
    from pipelines.core.io import NonRetryableError
    from pipelines.registry.store import Registry, UnknownVersionError

    if args.action == "promote" and not args.force:
        print(PROMOTE_NEEDS_FORCE, file=sys.stderr)
        return EXIT_USAGE
    if args.action in ("promote", "rollback") and not (args.reason or "").strip():
        print(f"retrain registry {args.action}: --reason is required and must not be empty", file=sys.stderr)
        return EXIT_USAGE
    try:
        paths = load_params(args.params).paths
        if args.action == "init":
            return _registry_init(paths)
        with Registry(paths.registry_url, Path(paths.artifact_store)) as registry:
            return REGISTRY_ACTIONS[args.action](registry, args)
    except (NonRetryableError, UnknownVersionError) as exc:
        print(f"retrain registry {args.action}: {exc}", file=sys.stderr)
        return EXIT_NON_RETRYABLE


def _registry_init(paths: PathsParams) -> int:
    """Creates the registry database if missing and migrates its schema (idempotent)."""
    from sqlalchemy.engine import make_url

    from pipelines.registry.store import Registry, create_database

    created = create_database(paths.registry_url)
    with Registry(paths.registry_url, Path(paths.artifact_store)):  # opening migrates the schema
        pass
    where = make_url(paths.registry_url).render_as_string(hide_password=True)
    print(f"registry {'created and ' if created else ''}ready at {where}")
    return 0


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
    print(f"{'id':>5}  {'at (UTC)':19}  {'action':14}  {'version':>7}  {'prev':>4}  {'actor':12}  reason")
    for e in registry.audit_log(limit=args.limit):
        version = "-" if e.version is None else str(e.version)
        previous = e.details.get("previous_champion")
        previous = "-" if previous is None else str(previous)
        print(f"{e.id:>5}  {e.at:%Y-%m-%d %H:%M:%S}  {e.action:14}  {version:>7}  {previous:>4}  "
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
    actions.add_parser("init", help="create the registry database if it does not exist and migrate its schema")
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
    from pipelines.core.io import NonRetryableError
    from pipelines.registry.snapshot import SnapshotError
    from pipelines.registry.reproduce import print_comparisons, reproduce

    try:
        comparisons = reproduce(args.version, load_params(args.params).paths, Path.cwd(), from_stage=args.from_stage,
                                keep=args.keep)
    except (NonRetryableError, SnapshotError) as exc:
        print(f"retrain reproduce: {exc}", file=sys.stderr)
        return EXIT_NON_RETRYABLE
    return 0 if print_comparisons(args.version, comparisons) else 1


def _ensure_sqlite_dir(url: sa.URL) -> None:
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)


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

    validate = sub.add_parser("validate", help="run the validation suite for a night (override: --accept/--reason)",
                              description=VALIDATE_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    validate.add_argument("--logical-date", required=True, help="the night, YYYY-MM-DD")
    validate.add_argument("--accept", action="append", metavar="EXPECTATION[:COLUMN]",
                          help="accept this failed expectation (on COLUMN) for this night only; repeatable")
    validate.add_argument("--reason", help="required with --accept: why, recorded in the audit log")
    validate.add_argument("--actor", default=_default_actor(), help="who accepts it (default: $USER)")
    validate.set_defaults(func=cmd_validate)

    _add_registry_parser(sub)

    reproduce = sub.add_parser("reproduce", help="restore a version's night from DVC, rerun it, compare hashes")
    reproduce.add_argument("version", type=int)
    reproduce.add_argument("--from", dest="from_stage", default="finetune",
                           choices=("extract", "validate", "profiles", "finetune"),
                           help="first stage to rerun on the restored inputs (default: finetune)")
    reproduce.add_argument("--keep", action="store_true", help="keep the scratch worktree (state/reproduce/vN)")
    reproduce.set_defaults(func=cmd_reproduce)

    doctor = sub.add_parser("doctor", help="check the configuration before the first night (exit 3 if any check fails)")
    doctor.set_defaults(func=cmd_doctor)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    configure_logging()
    args = build_parser().parse_args(argv)
    from pipelines.core.failures import permanent_reason
    from pipelines.core.io import NonRetryableError

    try:
        return args.func(args)
    except (NonRetryableError, ValueError, FileNotFoundError, KeyError) as exc:
        print(f"retrain {args.command}: {exc}", file=sys.stderr)
        return EXIT_NON_RETRYABLE
    except Exception as exc:  # noqa: BLE001 - one line where no retry can fix it, else the traceback
        reason = permanent_reason(exc)
        if reason is None:
            raise
        print(f"retrain {args.command}: {reason}", file=sys.stderr)
        logging.getLogger("retrain").debug("the failure in full", exc_info=True)
        return EXIT_NON_RETRYABLE


if __name__ == "__main__":
    raise SystemExit(main())
