"""The validate stage: the suite over the night's extract, acceptances, the history, the quarantine."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pipelines.validate.acceptance import (
    Acceptance,
    apply_acceptances,
    audit_acceptances,
    flag_acceptances,
    parse_acceptances,
    record_acceptances,
)
from pipelines.validate.quarantine import quarantine_dir, quarantine_night

if TYPE_CHECKING:
    from pipelines.config import PathsParams, ValidateParams
    from pipelines.validate.validation import Failure

log = logging.getLogger("retrain.validate")


def run_validate(logical_date: str, settings: ValidateParams, paths: PathsParams, *, params_dir: Path,
                 accept: Sequence[str] | None = None, reason: str | None = None, actor: str | None = None) -> None:
    """Validates ``paths.extract`` into ``paths.validate`` for ``logical_date`` (YYYY-MM-DD).

    A failed suite still publishes its result.json and Data Docs (that is where people look
    for the reason), quarantines the night and only then raises, so the exit code says "bad
    data, do not retry". Failures accepted for this night (``validate.accept``, or ``accept``
    flags with their ``reason`` and ``actor``) do not count. ``params_dir`` (the params file's
    directory) anchors a relative ``paths.quarantine``.

    Raises:
        NonRetryableError: a malformed acceptance, an extract of another night, or a failed suite.
    """
    from pipelines.core.io import NonRetryableError, atomic_dir, write_manifest
    from pipelines.validate.validation import history_row, read_manifest, update_history, validate_extract

    # GX logs its own bookkeeping at INFO; the stage's log should carry the verdict, not that.
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    thresholds = settings.model_dump()  # the suites look their parameters up by name
    acceptances = parse_acceptances(settings.accept)
    acceptances += parse_acceptances(flag_acceptances(accept, reason, actor, logical_date), source="--accept",
                                     default_actor="cli")
    extract_dir, target = Path(paths.extract), Path(paths.validation)
    extracted_date = str(read_manifest(extract_dir)["logical_date"])
    if extracted_date != logical_date:
        raise NonRetryableError(
            f"extract in {extract_dir} is for logical date {extracted_date}, "
            f"but validate runs for --logical-date {logical_date}: run extract for {logical_date} first "
            "(a working tree holds one night at a time)")
    started = time.monotonic()
    with atomic_dir(target) as staging:
        report = validate_extract(extract_dir, staging, thresholds)
        accepted, unmatched = apply_acceptances(report, acceptances, logical_date)
        _settle_acceptances(paths, staging, logical_date, accepted, unmatched, report.success)
        write_manifest(staging, stage="validate", logical_date=logical_date,
                       inputs={"extract_manifest_sha256": report.extract_manifest_sha256},
                       success=report.success, params=thresholds,
                       statistics=report.statistics, failures=len(report.failures),
                       accepted=[{**f.as_dict(), "acceptance": a.as_dict()} for f, a in accepted],
                       unmatched_acceptances=[a.as_dict() for a in unmatched],
                       seconds=round(time.monotonic() - started, 3))
    report.out_dir = target  # the staging path it was written to is gone now
    # Every night, passed or failed: the drift plots and history.html read it.
    update_history(Path(paths.reports) / "validate" / "history.csv", history_row(report), page_params=thresholds)
    if not report.success:
        quarantined = quarantine_night(quarantine_dir(paths.quarantine, params_dir), report.logical_date or logical_date,
                                       extract_dir, target, Path(paths.snapshot), report)
        raise NonRetryableError(f"{report.summary()}\n{quarantined}")


def _settle_acceptances(paths: PathsParams, staging: Path, logical_date: str,
                        accepted: Sequence[tuple[Failure, Acceptance]], unmatched: Sequence[Acceptance],
                        success: bool) -> None:
    """Warns about acceptances that matched nothing, records the rest in result.json and audits them."""
    for acceptance in unmatched:
        log.warning("validate.accept entry matches no failed expectation tonight: %s", acceptance.as_dict())
    if accepted or unmatched:
        record_acceptances(staging, accepted, unmatched, success)
    if accepted:  # audited before the verdict is published: no unrecorded override
        audit_acceptances(paths.registry_url, Path(paths.artifact_store), accepted)
        for failure, acceptance in accepted:
            log.warning("accepted by %s for %s: %s (%s)", acceptance.actor, logical_date, failure.line(),
                        acceptance.reason)

