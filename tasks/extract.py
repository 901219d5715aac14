"""Stage extract: the night's window from the warehouse into Parquet + manifest."""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path
from typing import Any

from tasks.common import parse_date, run_stage, stage_parser

log = logging.getLogger("retrain.extract")


def extract_stage(args: argparse.Namespace, params: dict[str, Any]) -> None:
    from pipelines.extract import extract_window
    from pipelines.io import atomic_dir, write_manifest
    from pipelines.warehouse import redact, resolve_url

    logical_date = parse_date(args.logical_date)
    settings = params["extract"]
    # Airflow connection `warehouse`, else RETRAIN_WAREHOUSE_URL, else paths.warehouse_url.
    url, source = resolve_url(os.environ, params["paths"].get("warehouse_url"))
    log.info("warehouse %s (from %s)", redact(url), source)
    started = time.monotonic()
    with atomic_dir(Path(params["paths"]["extract"])) as staging:
        fields = extract_window(
            url, staging, logical_date,
            interval_days=int(settings["interval_days"]), window_days=int(settings["window_days"]),
            # .get: params recorded by versions older than the mapping and retries lack these keys.
            mapping=settings.get("mapping"), connect_attempts=int(settings.get("connect_attempts", 1)),
            backoff_s=float(settings.get("connect_backoff_s", 1.0)),
            max_backoff_s=float(settings.get("connect_max_backoff_s", 30.0)),
        )
        write_manifest(staging, stage="extract", params=settings,
                       seconds=round(time.monotonic() - started, 3), **fields)


def main(argv: list[str] | None = None) -> int:
    return run_stage(extract_stage, stage_parser(__doc__), argv)


if __name__ == "__main__":
    raise SystemExit(main())
