"""The extract stage: the night's new data from the warehouse into the snapshot, and the night's
training window from the snapshot into Parquet + manifest."""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipelines.config import ExtractParams, PathsParams

log = logging.getLogger("retrain.extract")


def run_extract(logical_date: str, settings: ExtractParams, paths: PathsParams, environ: Mapping[str, str]) -> None:
    """Extracts the window ending on ``logical_date`` (YYYY-MM-DD) into ``paths.extract``.

    The warehouse is the Airflow connection ``warehouse`` in ``environ``, else its
    ``RETRAIN_WAREHOUSE_URL``, else ``paths.warehouse_url``.
    """
    from pipelines.core.io import atomic_dir, write_manifest
    from pipelines.core.warehouse import redact, resolve_url
    from pipelines.extract.extraction import KNOWN_HASHES, extract_window

    url, source = resolve_url(environ, paths.warehouse_url)
    log.info("warehouse %s (from %s)", redact(url), source)
    started = time.monotonic()
    with atomic_dir(Path(paths.extract)) as staging:
        fields = extract_window(
            url, staging, dt.date.fromisoformat(logical_date), snapshot_dir=Path(paths.snapshot),
            interval_days=settings.interval_days, window_days=settings.window_days,
            lookback_days=settings.lookback_days, read_workers=settings.read_workers, mapping=settings.mapping,
            connect_attempts=settings.connect_attempts, backoff_s=settings.connect_backoff_s,
            max_backoff_s=settings.connect_max_backoff_s,
        )
        known = fields.pop(KNOWN_HASHES)
        write_manifest(staging, known_hashes=known, stage="extract", params=settings.model_dump(),
                       seconds=round(time.monotonic() - started, 3), **fields)
