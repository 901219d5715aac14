"""Stage extract: the night's new data from the warehouse into the snapshot, and the night's
training window from the snapshot into Parquet + manifest."""

from __future__ import annotations

import argparse
import os

from pipelines.config import Params
from pipelines.extract.stage import run_extract
from tasks.common import parse_date, run_stage, stage_parser


def extract_stage(args: argparse.Namespace, params: Params) -> None:
    run_extract(parse_date(args.logical_date).isoformat(), params.extract, params.paths, os.environ)


def main(argv: list[str] | None = None) -> int:
    return run_stage(extract_stage, stage_parser(__doc__), argv)


if __name__ == "__main__":
    raise SystemExit(main())
