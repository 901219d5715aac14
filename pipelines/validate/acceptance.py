"""Operator acceptances of known anomalies: one failed expectation (and column) for one night.

They come from ``validate.accept`` in params.yaml or from the stage's ``--accept``/``--reason``
flags. An accepted failure no longer fails the night; it is recorded in result.json, the
manifest and the registry's audit log (``accept_anomaly``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipelines.validate.validation import Failure, ValidationReport

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


def flag_acceptances(specs: Sequence[str] | None, reason: str | None, actor: str | None,
                     logical_date: str) -> list[dict[str, Any]]:
    """``--accept EXPECTATION[:COLUMN]`` flags (with ``--reason``, ``--actor``) as ``validate.accept``
    entries for this night.

    Raises:
        NonRetryableError: flags without a reason.
    """
    from pipelines.core.io import NonRetryableError

    specs = specs or []
    if specs and not (reason or "").strip():
        raise NonRetryableError("--accept needs --reason: an accepted anomaly must say why")
    entries = []
    for spec in specs:
        expectation, _, column = spec.partition(":")
        entries.append({"expectation": expectation, "column": column or None, "logical_date": logical_date,
                        "reason": reason, "actor": actor or "cli"})
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


def record_acceptances(out_dir: Path, accepted: Sequence[tuple[Failure, Acceptance]],
                       unmatched: Sequence[Acceptance], success: bool) -> None:
    """Adds the acceptances to ``out_dir``'s result.json; its ``failures`` keep only the unaccepted ones."""
    from pipelines.core.io import read_json, write_json
    from pipelines.validate.validation import RESULT_FILE

    path = out_dir / RESULT_FILE
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


def audit_acceptances(registry_url: str, artifact_store: Path,
                      accepted: Sequence[tuple[Failure, Acceptance]]) -> None:
    """One ``accept_anomaly`` audit entry per accepted failure, before the verdict is published."""
    from pipelines.registry.store import Registry

    with Registry(registry_url, artifact_store) as registry:
        for failure, acceptance in accepted:
            registry.record(ACTION_ACCEPT_ANOMALY, reason=acceptance.reason, actor=acceptance.actor,
                            details={**failure.as_dict(), "logical_date": acceptance.logical_date})
