"""Stage validate: the Great Expectations suite over the night's extract; stops the run on bad data.

On failure the night's extract and its validation report are copied into
``paths.quarantine/<logical date>/`` and the stage exits 3. An operator can accept a known
anomaly for one night (``validate.accept`` in params.yaml, or ``--accept``/``--reason``): each
accepted failure is recorded in result.json, the manifest and the registry's audit log.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.common import parse_date, run_stage, stage_parser

if TYPE_CHECKING:
    from pipelines.validate.validation import Failure, ValidationReport

log = logging.getLogger("retrain.validate")

DEFAULT_QUARANTINE = "state/quarantine"  # when paths.quarantine is unset
ACTION_ACCEPT_ANOMALY = "accept_anomaly"  # the registry audit log's action for an accepted failure
ACCEPT_KEYS = {"expectation", "column", "logical_date", "reason", "actor"}


@dataclass(frozen=True)
class Acceptance:
    """An operator's acceptance of one failed expectation (and column) for one logical date."""

    expectation: str
    column: str | None
    logical_date: str
    reason: str
    actor: str

    def matches(self, failure: Failure) -> bool:
        return failure.expectation == self.expectation and failure.column == self.column

    def as_dict(self) -> dict[str, Any]:
        return {"expectation": self.expectation, "column": self.column, "logical_date": self.logical_date,
                "reason": self.reason, "actor": self.actor}


def parse_acceptances(entries: Any, *, source: str = "validate.accept",
                      default_actor: str = "params.yaml") -> list[Acceptance]:
    """Checks every entry of ``validate.accept``; a malformed one is a configuration error.

    Raises:
        NonRetryableError: not a list, an entry that is not a mapping, an unknown key, or a
            missing/empty ``expectation``, ``logical_date`` (YYYY-MM-DD) or ``reason``.
    """
    from pipelines.core.io import NonRetryableError

    if entries is None:
        return []
    if not isinstance(entries, list):
        raise NonRetryableError(f"{source} must be a list of entries, got {type(entries).__name__}")
    accepted = []
    for index, entry in enumerate(entries):
        where = f"{source}[{index}]"
        if not isinstance(entry, Mapping):
            raise NonRetryableError(f"{where} must be a mapping with expectation, column, logical_date, reason")
        unknown = sorted(set(entry) - ACCEPT_KEYS)
        if unknown:
            raise NonRetryableError(f"{where} has unknown keys {unknown}; allowed: {sorted(ACCEPT_KEYS)}")
        for key in ("expectation", "reason"):
            if not isinstance(entry.get(key), str) or not entry[key].strip():
                raise NonRetryableError(f"{where}: {key} is mandatory and must be non-empty text")
        date = str(entry.get("logical_date", ""))  # YAML may read an unquoted date as a date
        try:
            if dt.date.fromisoformat(date).isoformat() != date:
                raise ValueError
        except ValueError:
            raise NonRetryableError(f"{where}: logical_date must be YYYY-MM-DD, got {entry.get('logical_date')!r}") \
                from None
        column = entry.get("column")
        if column is not None and (not isinstance(column, str) or not column.strip()):
            raise NonRetryableError(f"{where}: column must be a column name or null, got {column!r}")
        actor = str(entry.get("actor") or default_actor)
        accepted.append(Acceptance(entry["expectation"].strip(), column.strip() if column else None, date,
                                   entry["reason"].strip(), actor))
    return accepted


def cli_acceptances(args: argparse.Namespace, logical_date: str) -> list[dict[str, Any]]:
    """``--accept EXPECTATION[:COLUMN]`` flags as ``validate.accept`` entries for this night."""
    from pipelines.core.io import NonRetryableError

    specs = getattr(args, "accept", None) or []
    if specs and not (getattr(args, "reason", None) or "").strip():
        raise NonRetryableError("--accept needs --reason: an accepted anomaly must say why")
    entries = []
    for spec in specs:
        expectation, _, column = spec.partition(":")
        entries.append({"expectation": expectation, "column": column or None, "logical_date": logical_date,
                        "reason": args.reason, "actor": getattr(args, "actor", None) or "cli"})
    return entries


def apply_acceptances(report: ValidationReport, acceptances: Sequence[Acceptance],
                      logical_date: str) -> tuple[list[tuple[Failure, Acceptance]], list[Acceptance]]:
    """Splits off the failures accepted for ``logical_date``; the report keeps the rest.

    Returns:
        The accepted (failure, acceptance) pairs and this night's acceptances that matched nothing.
        Entries for other dates do nothing.
    """
    tonight = [a for a in acceptances if a.logical_date == logical_date]
    accepted: list[tuple[Failure, Acceptance]] = []
    remaining = []
    for failure in report.failures:
        match = next((a for a in tonight if a.matches(failure)), None)
        if match is None:
            remaining.append(failure)
        else:
            accepted.append((failure, match))
    used = {id(a) for _, a in accepted}
    unmatched = [a for a in tonight if id(a) not in used]
    report.failures = remaining
    report.success = not remaining
    return accepted, unmatched


def _record_acceptances(staging: Path, accepted: Sequence[tuple[Failure, Acceptance]],
                        unmatched: Sequence[Acceptance], success: bool) -> None:
    """Adds the acceptances to result.json; its ``failures`` keep only the unaccepted ones."""
    from pipelines.core.io import read_json, write_json
    from pipelines.validate.validation import RESULT_FILE

    path = staging / RESULT_FILE
    result = read_json(path)
    keys = {(f.expectation, f.table, f.column) for f, _ in accepted}
    result["success"] = success
    result["failures"] = [f for f in result["failures"]
                          if (f["expectation"], f["table"], f["column"]) not in keys]
    result["accepted"] = [{**failure.as_dict(), "acceptance": acceptance.as_dict()}
                          for failure, acceptance in accepted]
    result["unmatched_acceptances"] = [a.as_dict() for a in unmatched]
    for entry in result.get("results", []):
        if (entry.get("expectation"), entry.get("table"), entry.get("column")) in keys and not entry["success"]:
            entry["accepted"] = True
    write_json(path, result)


def _audit_acceptances(params: Mapping[str, Any], accepted: Sequence[tuple[Failure, Acceptance]]) -> None:
    """One ``accept_anomaly`` audit entry per accepted failure, before the verdict is published."""
    from pipelines.registry.store import Registry

    paths = params["paths"]
    with Registry(paths["registry_url"], Path(paths["artifact_store"])) as registry:
        for failure, acceptance in accepted:
            registry.record(ACTION_ACCEPT_ANOMALY, reason=acceptance.reason, actor=acceptance.actor,
                            details={**failure.as_dict(), "logical_date": acceptance.logical_date})


def quarantine_dir(args: argparse.Namespace, params: Mapping[str, Any]) -> Path:
    """``paths.quarantine`` (default ``state/quarantine``); a relative one is under the params file's directory.

    That directory is the project root wherever the stage runs for real (Airflow, ``dvc repro``);
    a copied params file elsewhere (a scratch project) keeps its quarantine beside it.
    """
    path = Path(params["paths"].get("quarantine") or DEFAULT_QUARANTINE)
    return path if path.is_absolute() else Path(args.params).resolve().parent / path


def quarantine(root: Path, logical_date: str, extract_dir: Path, validate_dir: Path,
               report: ValidationReport) -> Path:
    """Copies the night's extract and validation report into ``root/<logical_date>/``.

    Built in a temporary directory and renamed into place, so the entry is complete or absent;
    a rerun of the same night replaces it. The originals stay where they are.
    """
    from pipelines.core.io import atomic_dir, write_manifest

    target = Path(root) / logical_date
    with atomic_dir(target) as staging:
        shutil.copytree(extract_dir, staging / "extract")
        shutil.copytree(validate_dir, staging / "validate")
        write_manifest(staging, stage="quarantine", logical_date=logical_date,
                       quarantined_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                       sources={"extract": str(Path(extract_dir).resolve()),
                                "validate": str(Path(validate_dir).resolve())},
                       failures=[failure.as_dict() for failure in report.failures])
    return target.resolve()


def validate_stage(args: argparse.Namespace, params: dict[str, Any]) -> None:
    """Validates ``paths.extract`` into ``paths.validate``.

    A failed suite still publishes its result.json and Data Docs (that is where people look
    for the reason), quarantines the night and only then raises, so the exit code says "bad
    data, do not retry". Failures accepted for this night (``validate.accept``) do not count.
    """
    from pipelines.core.io import NonRetryableError, atomic_dir, write_manifest
    from pipelines.validate.validation import history_row, read_manifest, update_history, validate_extract

    # GX logs its own bookkeeping at INFO; the stage's log should carry the verdict, not that.
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    logical_date = parse_date(args.logical_date).isoformat()
    settings = params["validate"]
    acceptances = parse_acceptances(settings.get("accept"))
    acceptances += parse_acceptances(cli_acceptances(args, logical_date), source="--accept", default_actor="cli")
    extract_dir, target = Path(params["paths"]["extract"]), Path(params["paths"]["validate"])
    extracted_date = str(read_manifest(extract_dir)["logical_date"])
    if extracted_date != logical_date:
        raise NonRetryableError(
            f"extract in {extract_dir} is for logical date {extracted_date}, "
            f"but validate runs for --logical-date {logical_date}")
    started = time.monotonic()
    with atomic_dir(target) as staging:
        report = validate_extract(extract_dir, staging, settings)
        accepted, unmatched = apply_acceptances(report, acceptances, logical_date)
        for acceptance in unmatched:
            log.warning("validate.accept entry matches no failed expectation tonight: %s", acceptance.as_dict())
        if accepted or unmatched:
            _record_acceptances(staging, accepted, unmatched, report.success)
        if accepted:  # audited before the verdict is published: no unrecorded override
            _audit_acceptances(params, accepted)
            for failure, acceptance in accepted:
                log.warning("accepted by %s for %s: %s (%s)", acceptance.actor, logical_date, failure.line(),
                            acceptance.reason)
        write_manifest(staging, stage="validate", logical_date=logical_date,
                       inputs={"extract_manifest_sha256": report.extract_manifest_sha256},
                       success=report.success, params=settings,
                       statistics=report.statistics, failures=len(report.failures),
                       accepted=[{**f.as_dict(), "acceptance": a.as_dict()} for f, a in accepted],
                       unmatched_acceptances=[a.as_dict() for a in unmatched],
                       seconds=round(time.monotonic() - started, 3))
    report.out_dir = target  # the staging path it was written to is gone now
    if params["paths"].get("reports"):  # every night, passed or failed: the drift plots and history.html read it
        update_history(Path(params["paths"]["reports"]) / "validate" / "history.csv", history_row(report),
                       page_params=settings)
    if not report.success:
        raise NonRetryableError(f"{report.summary()}\n{_quarantine_line(args, params, extract_dir, target, report)}")


def _quarantine_line(args: argparse.Namespace, params: Mapping[str, Any], extract_dir: Path, validate_dir: Path,
                     report: ValidationReport) -> str:
    """Quarantines the night; the returned line ends the summary (the notifier reads it)."""
    logical_date = report.logical_date or parse_date(args.logical_date).isoformat()
    try:
        where = quarantine(quarantine_dir(args, params), logical_date, extract_dir, validate_dir, report)
    except OSError as exc:  # the verdict stands either way: bad data is not retried
        log.error("quarantine of %s failed: %s", logical_date, exc)
        return f"  quarantine FAILED: {exc}"
    log.info("night %s quarantined in %s", logical_date, where)
    return f"  quarantined: {where}{_release_snapshot_days(params, extract_dir)}"


def _release_snapshot_days(params: Mapping[str, Any], extract_dir: Path) -> str:
    """Drops the days the failed night read from the extract snapshot, so the next night reads them
    again from the warehouse (fixed by then, or failing again) instead of keeping bad rows."""
    from pipelines.extract.partitions import PartitionStore, days_between
    from pipelines.validate.validation import read_manifest

    reads = read_manifest(extract_dir).get("reads") or []
    days = [day for read in reads
            for day in days_between(dt.date.fromisoformat(read["first_day"]), dt.date.fromisoformat(read["end_day"]))]
    snapshot = Path(params["paths"].get("snapshot") or "state/snapshot")
    if not days or not snapshot.is_dir():
        return ""
    try:
        with PartitionStore(snapshot) as store:
            released = store.forget_days(days)
    except OSError as exc:
        log.error("could not release the night's days from the snapshot %s: %s", snapshot, exc)
        return f"; snapshot days NOT released ({exc})"
    return f"; {released} day(s) released from the snapshot, to be read again" if released else ""


def build_parser() -> argparse.ArgumentParser:
    parser = stage_parser(__doc__)
    parser.add_argument("--accept", action="append", metavar="EXPECTATION[:COLUMN]",
                        help="accept this failed expectation (on COLUMN) for --logical-date only; "
                             "repeatable; needs --reason")
    parser.add_argument("--reason", help="why the anomaly is accepted (recorded in the audit log)")
    parser.add_argument("--actor", default=os.environ.get("USER") or "cli",
                        help="who accepts it (default: $USER)")
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_stage(validate_stage, build_parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
