"""What a failed night leaves behind: its extract and report copied into the quarantine, and the
days it read released from the extract snapshot so the next night reads them again."""

from __future__ import annotations

import datetime as dt
import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipelines.validate.validation import ValidationReport

log = logging.getLogger("retrain.validate")

def quarantine_dir(quarantine: str, params_dir: Path) -> Path:
    """``paths.quarantine``; a relative one is under ``params_dir``, the params file's directory.

    That directory is the project root wherever the stage runs for real (Airflow, ``dvc repro``);
    a copied params file elsewhere (a scratch project) keeps its quarantine beside it.
    """
    path = Path(quarantine)
    return path if path.is_absolute() else Path(params_dir) / path


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


def _days_read(reads: list[dict[str, str]]) -> list[dt.date]:
    from pipelines.extract.partitions import days_between

    return [day for read in reads
            for day in days_between(dt.date.fromisoformat(read["first_day"]), dt.date.fromisoformat(read["end_day"]))]


def release_snapshot_days(extract_dir: Path, snapshot: Path) -> str:
    """Drops the days the failed night read from the extract snapshot (interactions, and group
    events where the extract has them), so the next night reads them again from the warehouse
    (fixed by then, or failing again) instead of keeping bad rows.

    Returns:
        The end of the quarantine line: how many days were released, why none could be, or "".
    """
    from pipelines.extract.partitions import PartitionStore
    from pipelines.validate.validation import read_manifest

    manifest = read_manifest(extract_dir)
    days = {"interactions": _days_read(manifest.get("reads") or []),
            "group_events": _days_read((manifest.get("group_events") or {}).get("reads") or [])}
    if not any(days.values()) or not snapshot.is_dir():
        return ""
    try:
        with PartitionStore(snapshot) as store:
            released = sum(store.forget_days(read, table) for table, read in days.items() if read)
    except OSError as exc:
        log.error("could not release the night's days from the snapshot %s: %s", snapshot, exc)
        return f"; snapshot days NOT released ({exc})"
    return f"; {released} day(s) released from the snapshot, to be read again" if released else ""


def quarantine_night(root: Path, logical_date: str, extract_dir: Path, validate_dir: Path, snapshot: Path,
                     report: ValidationReport) -> str:
    """Quarantines the night and releases its snapshot days; returns the line that ends the
    failure summary (the notifier reads it)."""
    try:
        where = quarantine(root, logical_date, extract_dir, validate_dir, report)
    except OSError as exc:  # the verdict stands either way: bad data is not retried
        log.error("quarantine of %s failed: %s", logical_date, exc)
        return f"  quarantine FAILED: {exc}"
    log.info("night %s quarantined in %s", logical_date, where)
    return f"  quarantined: {where}{release_snapshot_days(extract_dir, snapshot)}"
