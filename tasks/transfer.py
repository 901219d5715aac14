"""Stage outputs between workers through the DVC remote (pipelines/registry/transfer.py).

    python -m tasks.transfer push --stage STAGE --logical-date D --record FILE   # writes the stage's record
    python -m tasks.transfer pull --logical-date D --record FILE                 # {stage: record} of earlier stages

The Airflow operator runs ``pull`` before a stage and ``push`` after it where workers share no
working tree (``RETRAIN_STAGE_TRANSFER=dvc``), and keeps the records in the night's XCom.
Exit codes as for a stage: 3 for a missing input, remote or bad record (not retryable), 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pipelines.config import Params
from pipelines.core.io import NonRetryableError, write_json
from pipelines.registry.transfer import pull_stages, push_stage
from tasks.common import parse_date, run_stage, stage_parser


def transfer(args: argparse.Namespace, params: Params) -> None:
    logical_date = parse_date(args.logical_date).isoformat()
    if args.direction == "push":
        if not args.stage:
            raise NonRetryableError("push needs --stage, the stage whose outputs to push")
        write_json(Path(args.record), push_stage(Path.cwd(), args.stage, logical_date, Path(args.params)))
        return
    try:
        records = json.loads(Path(args.record).read_text())
    except (OSError, ValueError) as exc:
        raise NonRetryableError(f"cannot read the earlier stages' records from {args.record}: {exc}") from exc
    pull_stages(Path.cwd(), records, logical_date)


def parser() -> argparse.ArgumentParser:
    transfer_parser = stage_parser(__doc__)
    transfer_parser.add_argument("direction", choices=["push", "pull"])
    transfer_parser.add_argument("--stage", help="push: the stage that just ran")
    transfer_parser.add_argument("--record", required=True,
                                 help="push: where to write the stage's record; pull: the records to pull (JSON)")
    return transfer_parser


def main(argv: list[str] | None = None) -> int:
    return run_stage(transfer, parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
