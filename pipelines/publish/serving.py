"""What the publish stage serves after the night's promotion decision, and why, in words."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipelines.registry.store import ModelVersion


def read_decision(promote_dir: Path, logical_date: str) -> dict[str, Any]:
    """The night's promotion decision; publishing without it would serve an unknown model."""
    from pipelines.core.io import NonRetryableError, read_json

    path = Path(promote_dir) / "decision.json"
    if not path.is_file():
        raise NonRetryableError(f"no promotion decision at {path}: run promote for {logical_date} first")
    decision = read_json(path)
    if decision.get("logical_date") != logical_date:
        raise NonRetryableError(f"promotion decision at {path} is for {decision.get('logical_date')}, "
                                f"not {logical_date}: run promote for {logical_date} first")
    return decision


def serving_reason(decision: dict[str, Any], champion_version: int | None, champion_date: str | None) -> str:
    """Why this version (or nothing) is served tonight, in one sentence."""
    candidate = decision["version"]
    if decision["decision"] == "PROMOTED":
        why = f"candidate version {candidate} was promoted"
    elif decision["decision"] == "HELD":
        why = f"candidate version {candidate} was blessed but held (a later night's champion exists)"
    else:
        why = f"candidate version {candidate} was refused ({decision['reason']})"
    if champion_version is None:
        return f"{why}; there is no champion yet: nothing to publish"
    expected = decision.get("champion_version")
    if expected is not None and expected != champion_version:
        why += f"; the champion has changed since the decision (version {expected} then)"
    if champion_version == candidate:
        return f"{why}; serving it (version {champion_version})"
    return f"{why}; serving the current champion, version {champion_version} (registered for {champion_date})"


def served_as(decision: dict[str, Any], champion_version: int | None) -> str:
    if champion_version is None:
        return "none"
    return "candidate" if champion_version == decision["version"] else "previous champion"


def serving_summary(decision: dict[str, Any], champion: ModelVersion | None) -> dict[str, Any]:
    """The promotion decision, the version served (None: nothing) and why, for summary.json."""
    version = champion.version if champion else None
    return {"promotion": decision["decision"], "candidate_version": decision["version"], "model_version": version,
            "served": served_as(decision, version),
            "reason": serving_reason(decision, version, champion.run_date if champion else None)}
