"""Stage extract: the night's window from the warehouse into Parquet + manifest."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from tasks.common import parse_date, run_stage, stage_parser


def extract_stage(args: argparse.Namespace, params: dict[str, Any]) -> None:
    from pipelines.extract import extract_window
    from pipelines.io import atomic_dir, write_manifest

    logical_date = parse_date(args.logical_date)
    settings = params["extract"]
    started = time.monotonic()
    with atomic_dir(Path(params["paths"]["extract"])) as staging:
        fields = extract_window(
            params["paths"]["warehouse_url"], staging, logical_date,
            interval_days=int(settings["interval_days"]), window_days=int(settings["window_days"]),
        )
        write_manifest(staging, stage="extract", params=settings,
                       seconds=round(time.monotonic() - started, 3), **fields)


def main(argv: list[str] | None = None) -> int:
    return run_stage(extract_stage, stage_parser(__doc__), argv)


if __name__ == "__main__":
    raise SystemExit(main())
