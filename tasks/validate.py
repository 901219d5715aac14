"""Stage validate: the Great Expectations suite over the night's extract; stops the run on bad data."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

from tasks.common import parse_date, run_stage, stage_parser


def validate_stage(args: argparse.Namespace, params: dict[str, Any]) -> None:
    """Validates ``paths.extract`` into ``paths.validate``.

    A failed suite still publishes its result.json and Data Docs (that is where people look
    for the reason) and only then raises, so the exit code says "bad data, do not retry".
    """
    from pipelines.io import NonRetryableError, atomic_dir, write_manifest
    from pipelines.validation import read_manifest, validate_extract

    # GX logs its own bookkeeping at INFO; the stage's log should carry the verdict, not that.
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    logical_date = parse_date(args.logical_date).isoformat()
    extract_dir, target = Path(params["paths"]["extract"]), Path(params["paths"]["validate"])
    extracted_date = str(read_manifest(extract_dir)["logical_date"])
    if extracted_date != logical_date:
        raise NonRetryableError(
            f"extract in {extract_dir} is for logical date {extracted_date}, "
            f"but validate runs for --logical-date {logical_date}")
    started = time.monotonic()
    with atomic_dir(target) as staging:
        report = validate_extract(extract_dir, staging, params["validate"])
        write_manifest(staging, stage="validate", logical_date=logical_date,
                       inputs={"extract_manifest_sha256": report.extract_manifest_sha256},
                       success=report.success, params=params["validate"],
                       statistics=report.statistics, failures=len(report.failures),
                       seconds=round(time.monotonic() - started, 3))
    report.out_dir = target  # the staging path it was written to is gone now
    if not report.success:
        raise NonRetryableError(report.summary())


def main(argv: list[str] | None = None) -> int:
    return run_stage(validate_stage, stage_parser(__doc__), argv)


if __name__ == "__main__":
    raise SystemExit(main())
