"""Stage promote: register the candidate; it becomes champion only with a blessing.

Steps, each safe to interrupt: read the inputs; record the night in DVC (``dvc commit`` and
``dvc push`` of every stage's outputs; ``pipelines/registry/snapshot.py``); register (the registry stores the artifact,
then inserts the version, its audit entry and the champion move in one transaction); write
``decision.json`` through an atomic directory. A rerun of the night finds its version by
(artifact hash, date) and writes nothing twice, so a run killed at any point is finished by
running it again.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipelines.config import Params
from pipelines.registry.promote import run_promote
from tasks.common import parse_date, run_stage, stage_parser


def promote_stage(args: argparse.Namespace, params: Params) -> None:
    run_promote(parse_date(args.logical_date).isoformat(), params.finetune, params.paths, Path.cwd())


def main(argv: list[str] | None = None) -> int:
    return run_stage(promote_stage, stage_parser(__doc__), argv)


if __name__ == "__main__":
    raise SystemExit(main())
