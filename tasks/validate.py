"""Stage validate: the Great Expectations suite over the night's extract; stops the run on bad data.

On failure the night's extract and its validation report are copied into
``paths.quarantine/<logical date>/`` and the stage exits 3. An operator can accept a known
anomaly for one night (``validate.accept`` in params.yaml, or ``--accept``/``--reason``): each
accepted failure is recorded in result.json, the manifest and the registry's audit log.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from pipelines.config import Params
from pipelines.validate.stage import run_validate
from tasks.common import parse_date, run_stage, stage_parser


def validate_stage(args: argparse.Namespace, params: Params) -> None:
    run_validate(parse_date(args.logical_date).isoformat(), params.validation, params.paths,
                 params_dir=Path(args.params).resolve().parent, accept=args.accept, reason=args.reason, actor=args.actor)


def build_parser() -> argparse.ArgumentParser:
    parser = stage_parser(__doc__)
    parser.add_argument("--accept", action="append", metavar="EXPECTATION[:COLUMN]",
                        help="accept this failed expectation (on COLUMN) for --logical-date only; "
                             "repeatable; needs --reason")
    parser.add_argument("--reason", help="why the anomaly is accepted (recorded in the audit log)")
    parser.add_argument("--actor", default=os.environ.get("USER") or "cli",
                        help="who accepts it (default: $USER)")
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_stage(validate_stage, build_parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
