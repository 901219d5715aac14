"""Stage extract: the night's new data from the warehouse into the snapshot, and the night's
training window from the snapshot into Parquet + manifest."""

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
    from pipelines.extract.extraction import KNOWN_HASHES, extract_window
    from pipelines.core.io import atomic_dir, write_manifest
    from pipelines.core.warehouse import redact, resolve_url

    logical_date = parse_date(args.logical_date)
    settings = params["extract"]
    # Airflow connection `warehouse`, else RETRAIN_WAREHOUSE_URL, else paths.warehouse_url.
    url, source = resolve_url(os.environ, params["paths"].get("warehouse_url"))
    log.info("warehouse %s (from %s)", redact(url), source)
    started = time.monotonic()
    with atomic_dir(Path(params["paths"]["extract"])) as staging:
        fields = extract_window(
            url, staging, logical_date,
            # .get: params recorded by older versions lack the snapshot, lookback, mapping and retries.
            snapshot_dir=Path(params["paths"].get("snapshot", "state/snapshot")),
            interval_days=int(settings["interval_days"]), window_days=int(settings["window_days"]),
            lookback_days=int(settings.get("lookback_days", 0)), read_workers=int(settings.get("read_workers", 1)),
            mapping=settings.get("mapping"), connect_attempts=int(settings.get("connect_attempts", 1)),
            backoff_s=float(settings.get("connect_backoff_s", 1.0)),
            max_backoff_s=float(settings.get("connect_max_backoff_s", 30.0)),
        )
        known = fields.pop(KNOWN_HASHES)
        write_manifest(staging, known_hashes=known, stage="extract", params=settings,
                       seconds=round(time.monotonic() - started, 3), **fields)


def main(argv: list[str] | None = None) -> int:
    return run_stage(extract_stage, stage_parser(__doc__), argv)


if __name__ == "__main__":
    raise SystemExit(main())
