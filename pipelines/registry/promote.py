"""The promote stage: register the night's candidate; it becomes champion only with a blessing, and only
when no later night's model is champion (a backfill is registered and held).

Steps, each safe to interrupt: read the inputs; record the night in DVC (``dvc commit`` and
``dvc push`` of every stage's outputs; ``pipelines/registry/snapshot.py``); register (the registry stores the artifact,
then inserts the version, its audit entry and the champion move in one transaction); write
``decision.json`` through an atomic directory. A rerun of the night finds its version by
(artifact hash, date) and writes nothing twice, so a run killed at any point is finished by
running it again.
"""

from __future__ import annotations

import logging
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipelines.config import FinetuneParams, PathsParams
    from pipelines.registry.snapshot import Snapshot
    from pipelines.registry.store import ModelVersion

log = logging.getLogger("retrain.promote")


@dataclass(frozen=True)
class PromoteInputs:
    """What the night's earlier stages decided and produced."""

    logical_date: str
    blessing: dict[str, Any]
    candidate_manifest: dict[str, Any]
    metrics: dict[str, Any]

    @property
    def blessed(self) -> bool:
        return bool(self.blessing["blessed"])


def git_commit(project_dir: Path) -> str:
    """The commit checked out in ``project_dir``, ``-dirty`` with uncommitted changes; "unknown" outside git.

    ``params.yaml``'s ``run.logical_date`` is no change: every night moves it to the night it runs.
    """
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=True, cwd=project_dir).stdout

    try:
        commit = git("rev-parse", "HEAD").strip()
        changed = git("status", "--porcelain", "--untracked-files=no").splitlines()
        committed_params = git("show", "HEAD:params.yaml") if any(line[3:] == "params.yaml" for line in changed) else ""
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    if committed_params and not params_differ_beyond_night(committed_params, project_dir / "params.yaml"):
        changed = [line for line in changed if line[3:] != "params.yaml"]
    return f"{commit}-dirty" if changed else commit


def params_differ_beyond_night(committed: str, workspace: Path) -> bool:
    import yaml

    def without_night(params: dict[str, Any] | None) -> dict[str, Any]:
        params = dict(params or {})
        params["run"] = {key: value for key, value in (params.get("run") or {}).items() if key != "logical_date"}
        return params

    try:
        return without_night(yaml.safe_load(committed)) != without_night(yaml.safe_load(workspace.read_text()))
    except (OSError, yaml.YAMLError):
        return True


def lineage(paths: PathsParams, snapshot: Snapshot | None) -> dict[str, Any]:
    """Stage manifests' hashes and the night's ``dvc.lock``, which ``retrain reproduce`` restores."""
    from pipelines.core.io import sha256_file

    manifests = {stage: Path(getattr(paths, stage)) / "manifest.json"
                 for stage in ("extract", "profiles", "candidate", "evaluate")}
    return {
        "manifests": {stage: sha256_file(path) for stage, path in manifests.items() if path.is_file()},
        "dvc_lock": snapshot.lock_text if snapshot else None,
        "dvc_lock_sha256": snapshot.lock_sha256 if snapshot else None,
    }


def snapshot_in_dvc(project_dir: Path, logical_date: str, params_file: Path) -> Snapshot | None:
    """The night's outputs committed (and pushed) to DVC; None outside a DVC project."""
    from pipelines.registry.snapshot import is_dvc_project, snapshot_night

    if not is_dvc_project(project_dir):
        log.warning("%s is not a DVC project: the version is registered without a DVC snapshot, "
                    "so `retrain reproduce` cannot restore it", project_dir)
        return None
    return snapshot_night(project_dir, logical_date=logical_date, params_file=params_file)


def read_inputs(paths: PathsParams, logical_date: str) -> PromoteInputs:
    """The blessing (for this night only), the candidate's manifest and the evaluation metrics."""
    from pipelines.core.io import NonRetryableError, read_json

    blessing = read_json(Path(paths.evaluate) / "blessing.json")
    if blessing["logical_date"] != logical_date:
        raise NonRetryableError(f"blessing is for {blessing['logical_date']}, not {logical_date}")
    return PromoteInputs(logical_date=logical_date, blessing=blessing,
                         candidate_manifest=read_json(Path(paths.candidate) / "manifest.json"),
                         metrics=read_json(Path(paths.evaluate) / "metrics.json"))


def register_candidate(inputs: PromoteInputs, finetune: FinetuneParams, paths: PathsParams,
                       snapshot: Snapshot | None, commit: str) -> dict[str, Any]:
    """Registers the candidate (idempotent per artifact and night) and returns the decision; the
    version records the ``finetune`` params it was trained with."""
    from pipelines.registry.store import Registry

    interval = inputs.candidate_manifest["data_interval"]
    with Registry(paths.registry_url, Path(paths.artifact_store)) as registry:
        version = registry.register(
            model_dir=Path(paths.candidate), run_date=inputs.logical_date, blessed=inputs.blessed,
            reason=inputs.blessing["reason"], base_model=finetune.base_model,
            data_interval=(interval["start"], interval["end"]), params=finetune.model_dump(), metrics=inputs.metrics,
            lineage=lineage(paths, snapshot), git_commit=commit,
            parent_version=inputs.blessing.get("champion_version"),
            report_path=str(Path(paths.reports) / "evaluate" / "report.html"),
        )
        champion = registry.champion()
    decision, reason = night_decision(inputs, champion, version.version)
    return {
        "logical_date": inputs.logical_date, "version": version.version, "blessed": inputs.blessed,
        "decision": decision, "reason": reason, "champion_version": champion.version if champion else None,
    }


def night_decision(inputs: PromoteInputs, champion: ModelVersion | None, version: int | None) -> tuple[str, str]:
    """PROMOTED, REFUSED, or HELD: blessed, but the champion is of a later night and keeps serving.
    ``version`` is the candidate's (None in a dry run, which registers nothing)."""
    from pipelines.registry.store import held_back_by

    reason = inputs.blessing["reason"]
    if not inputs.blessed:
        return "REFUSED", reason
    if champion is not None and champion.version != version and held_back_by(champion, inputs.logical_date):
        serve = f"`retrain registry promote {version} --force --reason ...` serves this one" if version else \
            "a run without dry_run would register it without serving it"
        return "HELD", (f"{reason}; held: the champion, version {champion.version}, is of a later night "
                        f"({champion.run_date}) and keeps serving ({serve})")
    return "PROMOTED", reason


def dry_run_decision(inputs: PromoteInputs, paths: PathsParams) -> dict[str, Any]:
    """What the night would decide, with nothing registered, snapshotted or moved."""
    from pipelines.registry.store import Registry

    with Registry(paths.registry_url, Path(paths.artifact_store)) as registry:
        champion = registry.champion()
    would_be, reason = night_decision(inputs, champion, None)
    return {"logical_date": inputs.logical_date, "version": None, "blessed": inputs.blessed, "decision": "DRY_RUN",
            "would_be": would_be, "reason": f"dry run, nothing registered: would be {would_be} ({reason})",
            "champion_version": champion.version if champion else None}


def write_decision(promote_dir: Path, decision: dict[str, Any]) -> None:
    """``decision.json`` and the manifest, renamed into place together."""
    from pipelines.core.io import atomic_dir, write_json, write_manifest

    with atomic_dir(promote_dir) as staging:
        write_json(staging / "decision.json", decision)
        write_manifest(staging, stage="promote", logical_date=decision["logical_date"])


def run_promote(logical_date: str, finetune: FinetuneParams, paths: PathsParams, project_dir: Path,
                params_file: Path, dry_run: bool = False) -> None:
    """Registers ``paths.candidate`` for ``logical_date`` and writes ``paths.promote``; ``project_dir``
    is the DVC project (and git checkout) whose outputs the version records, ``params_file`` the
    params the night ran with (recorded in its ``dvc.lock``). A dry run registers
    and records nothing: its decision (``DRY_RUN``) says what the night would decide, and publish
    then publishes nothing."""
    inputs = read_inputs(paths, logical_date)
    if dry_run:
        decision = dry_run_decision(inputs, paths)
        log.info("%s", decision["reason"])
    else:
        decision = register_candidate(inputs, finetune, paths, snapshot_in_dvc(project_dir, logical_date, params_file),
                                      git_commit(project_dir))
        log.info("%s version %d: %s", decision["decision"], decision["version"], decision["reason"])
    write_decision(Path(paths.promote), decision)
