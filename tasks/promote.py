"""Stage promote: register the candidate; it becomes champion only with a blessing."""

from __future__ import annotations

import argparse
import logging
import subprocess
from pathlib import Path
from typing import Any

from tasks.common import parse_date, run_stage, stage_parser

log = logging.getLogger("retrain.promote")


def git_commit() -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{commit}-dirty" if dirty else commit


def lineage(paths: dict[str, str]) -> dict[str, Any]:
    from pipelines.io import sha256_file

    manifests = {stage: Path(paths[stage]) / "manifest.json" for stage in ("extract", "profiles", "candidate", "evaluate")}
    lock = Path("dvc.lock")
    return {
        "manifests": {stage: sha256_file(path) for stage, path in manifests.items() if path.is_file()},
        "dvc_lock_sha256": sha256_file(lock) if lock.is_file() else None,
    }


def promote_stage(args: argparse.Namespace, params: dict[str, Any]) -> None:
    from pipelines.io import NonRetryableError, atomic_dir, read_json, write_json, write_manifest
    from pipelines.registry import Registry

    paths = params["paths"]
    logical_date = parse_date(args.logical_date).isoformat()
    blessing = read_json(Path(paths["evaluate"]) / "blessing.json")
    if blessing["logical_date"] != logical_date:
        raise NonRetryableError(f"blessing is for {blessing['logical_date']}, not {logical_date}")
    candidate_manifest = read_json(Path(paths["candidate"]) / "manifest.json")
    metrics = read_json(Path(paths["evaluate"]) / "metrics.json")
    with Registry(paths["registry_url"], Path(paths["artifact_store"])) as registry:
        version = registry.register(
            model_dir=Path(paths["candidate"]), run_date=logical_date, blessed=bool(blessing["blessed"]),
            reason=blessing["reason"], base_model=params["finetune"]["base_model"],
            data_interval=(candidate_manifest["data_interval"]["start"], candidate_manifest["data_interval"]["end"]),
            params=params["finetune"], metrics=metrics, lineage=lineage(paths), git_commit=git_commit(),
            report_path=str(Path(paths["reports"]) / "evaluate" / "report.html"),
        )
        champion = registry.champion()
    decision = {
        "logical_date": logical_date, "version": version.version, "blessed": bool(blessing["blessed"]),
        "decision": "PROMOTED" if blessing["blessed"] else "REFUSED", "reason": blessing["reason"],
        "champion_version": champion.version if champion else None,
    }
    log.info("%s version %d: %s", decision["decision"], version.version, decision["reason"])
    with atomic_dir(Path(paths["promote"])) as staging:
        write_json(staging / "decision.json", decision)
        write_manifest(staging, stage="promote", logical_date=logical_date)


def main(argv: list[str] | None = None) -> int:
    return run_stage(promote_stage, stage_parser(__doc__), argv)


if __name__ == "__main__":
    raise SystemExit(main())
