"""``retrain reproduce V``: restore version V's night from DVC, rerun it, and compare hashes.

In a scratch git worktree at V's commit, V's ``dvc.lock`` (kept in the registry) checks out the
night's extracts, validation, profiles and model from the DVC cache, or the remote when the cache
lacks them. The restored model must hash to V's registered artifact. Then the stages from
``--from`` (default finetune) through finetune run again on the restored inputs, with the
night's date and the commit's params, and every rerun output must hash exactly as restored.
Evaluate is not rerun: it scores against the champion of the day, which has moved on since.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from pipelines.core.io import NonRetryableError

if TYPE_CHECKING:
    from pipelines.config import PathsParams

log = logging.getLogger("retrain.reproduce")

RERUNNABLE = ("extract", "validate", "profiles", "finetune")
OUTPUT_PARAM = {"extract": "extract", "validate": "validate", "profiles": "profiles", "finetune": "candidate"}
# The live systems, not the night's outputs: resolved against the project so the worktree reads
# the same ones. Connection URLs from the environment still override them (and stay off disk).
LIVE_PATHS = ("warehouse_url", "registry_url", "artifact_store")
STAGE_TIMEOUT_S = 4 * 3600


@dataclass(frozen=True)
class Comparison:
    what: str
    expected: str
    actual: str

    @property
    def matches(self) -> bool:
        return self.expected == self.actual


def reproduce(version: int, paths: PathsParams, project: Path, *, from_stage: str = "finetune",
              keep: bool = False) -> list[Comparison]:
    """Restores, reruns and compares; returns every comparison (all must match)."""
    from pipelines.registry.store import Registry

    if from_stage not in RERUNNABLE:
        raise NonRetryableError(f"--from must be one of {', '.join(RERUNNABLE)}, not {from_stage!r}")
    project = project.resolve()
    with Registry(paths.registry_url, project / paths.artifact_store) as registry:
        target = registry.get(version)
    lock = target.lineage.get("dvc_lock")
    if not lock:
        raise NonRetryableError(f"version {version} has no DVC snapshot: it was registered outside a DVC project")
    commit = source_commit(target.git_commit)
    worktree = project / "state" / "reproduce" / f"v{version}"
    add_worktree(project, worktree, commit)
    try:
        return restore_and_rerun(target, lock, project, worktree, from_stage)
    finally:
        if keep:
            log.info("worktree kept at %s", worktree)
        else:
            remove_worktree(project, worktree)


def restore_and_rerun(target, lock: str, project: Path, worktree: Path, from_stage: str) -> list[Comparison]:
    from pipelines.core.io import sha256_dir
    from pipelines.registry.snapshot import SnapshotError, restore_night

    share_dvc_storage(project, worktree)
    started = time.monotonic()
    try:
        restore_night(worktree, lock)
    except SnapshotError as exc:
        raise NonRetryableError(f"version {target.version}'s outputs could not be restored from the DVC cache "
                                f"or the remote: {exc}") from exc
    rerun_params = write_rerun_params(worktree, project, target.run_date, target.params)
    outputs = {stage: worktree / rerun_params["paths"][OUTPUT_PARAM[stage]] for stage in RERUNNABLE}
    restored = {stage: output_digest(stage, path) for stage, path in outputs.items()}
    comparisons = [Comparison("restored model vs registered artifact", target.artifact_sha256,
                              sha256_dir(outputs["finetune"]))]
    log.info("version %d restored from DVC in %.1f s", target.version, time.monotonic() - started)
    for stage in RERUNNABLE[RERUNNABLE.index(from_stage):]:
        run_stage_in(worktree, stage, target.run_date)
        comparisons.append(Comparison(f"{stage} rerun vs restored", restored[stage],
                                      output_digest(stage, outputs[stage])))
    return comparisons


def output_digest(stage: str, path: Path) -> str:
    """What a rerun must reproduce exactly: the data a stage hands on, never its timings.

    Extract's manifest records timings and the connection string, so its data files are compared.
    Validate hands on a verdict: its success, failures and statistics (Data Docs carry run times;
    the future-rows statistic carries the extraction's wall-clock time).
    Profiles and the model directory hold nothing that varies, so they are compared whole.
    """
    from pipelines.core.io import file_hashes, sha256_dir

    if stage == "extract":
        return _digest(file_hashes(path))
    if stage == "validate":
        result = json.loads((path / "result.json").read_text())
        # The future-rows check compares with the wall clock at extraction: a rerun is later.
        statistics = {key: value for key, value in (result.get("statistics") or {}).items() if key != "future"}
        return _digest({"success": result.get("success"), "failures": result.get("failures"),
                        "statistics": statistics})
    return sha256_dir(path)


def _digest(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def source_commit(git_commit: str) -> str:
    if not git_commit or git_commit == "unknown":
        raise NonRetryableError("the version records no git commit, so its code cannot be checked out")
    if git_commit.endswith("-dirty"):
        log.warning("version was trained from a tree with uncommitted changes: its code may differ from %s",
                    git_commit.removesuffix("-dirty"))
    return git_commit.removesuffix("-dirty")


def add_worktree(project: Path, worktree: Path, commit: str) -> None:
    if worktree.exists():
        remove_worktree(project, worktree)
    worktree.parent.mkdir(parents=True, exist_ok=True)
    git(project, "worktree", "add", "--detach", str(worktree), commit)


def remove_worktree(project: Path, worktree: Path) -> None:
    try:
        git(project, "worktree", "remove", "--force", str(worktree))
    except NonRetryableError:
        shutil.rmtree(worktree, ignore_errors=True)
        git(project, "worktree", "prune")


def git(project: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=project, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise NonRetryableError(f"git {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def share_dvc_storage(project: Path, worktree: Path) -> None:
    """The worktree reads the project's DVC cache and remote (a relative remote path would move)."""
    from pipelines.registry.snapshot import default_remote, run_dvc

    run_dvc(worktree, "config", "--local", "cache.dir", str(project / ".dvc" / "cache"))
    remote = default_remote(project)
    if remote:  # DVC prints a local remote's path resolved against the project's .dvc/
        url = run_dvc(project, "config", f"remote.{remote}.url").strip()
        run_dvc(worktree, "config", "--local", f"remote.{remote}.url", url)


def write_rerun_params(worktree: Path, project: Path, run_date: str, finetune: dict[str, Any]) -> dict[str, Any]:
    """The commit's params with the night's date and the version's own finetune params (a night
    may have run with other params than the file's), and the project's warehouse and registry."""
    params = yaml.safe_load((worktree / "params.yaml").read_text())
    params.setdefault("run", {})["logical_date"] = run_date
    if finetune:
        params["finetune"] = overlay(params.get("finetune") or {}, finetune)
    for key in LIVE_PATHS:
        params["paths"][key] = absolute(params["paths"][key], project)
    (worktree / "params.reproduce.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return params


def overlay(base: dict[str, Any], recorded: dict[str, Any]) -> dict[str, Any]:
    """``recorded``'s values in ``base``'s key order: the registry stores params with sorted keys,
    while the model card and manifests keep the file's order, which is part of the artifact hash."""
    merged = {key: overlay(value, recorded[key]) if isinstance(value, dict) and isinstance(recorded.get(key), dict)
              else recorded.get(key, value) for key, value in base.items()}
    return {**merged, **{key: value for key, value in recorded.items() if key not in base}}


def absolute(path_or_url: str, project: Path) -> str:
    prefix = "sqlite:///"
    if path_or_url.startswith(prefix) and not path_or_url[len(prefix):].startswith("/"):
        return prefix + str(project / path_or_url[len(prefix):])
    if "://" in path_or_url or Path(path_or_url).is_absolute():
        return path_or_url
    return str(project / path_or_url)


def run_stage_in(worktree: Path, stage: str, run_date: str) -> None:
    """The worktree's own code runs the stage, as its night ran it."""
    log.info("rerunning %s for %s", stage, run_date)
    env = {**os.environ, "PYTHONPATH": str(worktree), "RETRAIN_PROJECT_DIR": str(worktree)}
    command = [sys.executable, "-m", f"tasks.{stage}", "--params", "params.reproduce.yaml", "--logical-date", run_date]
    done = subprocess.run(command, cwd=worktree, env=env, stdin=subprocess.DEVNULL, timeout=STAGE_TIMEOUT_S)
    if done.returncode != 0:
        raise NonRetryableError(f"{stage} failed while reproducing {run_date} (exit {done.returncode})")


def print_comparisons(version: int, comparisons: list[Comparison]) -> bool:
    print(f"reproduce version {version}:")
    for c in comparisons:
        verdict = "match" if c.matches else "DIFFERS"
        print(f"  {c.what:45s} {verdict:8s} {c.expected[:12]} -> {c.actual[:12]}")
    ok = all(c.matches for c in comparisons)
    print("reproduced: every hash matches" if ok else "NOT reproduced: see the hashes that differ above")
    return ok
