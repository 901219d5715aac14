"""Stage promote: register the candidate; it becomes champion only with a blessing.

Each step is safe to interrupt, and a rerun of the night finishes what a killed run started
(pipelines/registry/promote.py says how).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipelines.config import Params
from pipelines.registry.promote import run_promote
from tasks.common import parse_date, run_stage, stage_parser


def promote_stage(args: argparse.Namespace, params: Params) -> None:
    run_promote(parse_date(args.logical_date).isoformat(), params.finetune, params.paths, Path.cwd(),
                Path(args.params), dry_run=args.dry_run)


def parser() -> argparse.ArgumentParser:
    stage = stage_parser(__doc__)
    stage.add_argument("--dry-run", action="store_true",
                       help="decide only: register, record and promote nothing (publish then publishes nothing)")
    return stage


def main(argv: list[str] | None = None) -> int:
    return run_stage(promote_stage, parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
