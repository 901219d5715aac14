"""Each night's data and model in the DVC cache, and their restoration by ``dvc.lock``.

The nightly stages run under Airflow or ``dvc repro``. Under Airflow, promote calls
``snapshot_night``: ``dvc commit`` records the content hash of every stage output in ``dvc.lock``
(with the night's date and the params that ran: ``pipelines/registry/nights.py``) and copies the
outputs into the DVC cache, and ``dvc push`` sends them to the configured remote; publish then
calls ``record_night``, which records the whole night, in DVC and on the ``nights`` branch. Under
``dvc repro`` DVC records each stage itself, and the lock is taken as DVC wrote it.
The registry keeps that ``dvc.lock`` with the version, so ``restore_night`` can bring any
version's extracts, profiles and model back, from the local cache or else the remote.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from pipelines.core.failures import named_if_permanent
from pipelines.core.io import NonRetryableError, sha256_file
from pipelines.registry.nights import (PARAMS_FILE, commit_night, params_in_place, params_that_ran,
                                       restore_operator_params, run_by_dvc, set_night_date)

log = logging.getLogger(__name__)

# The stages whose outputs a night's version is made of; promote and publish come after it.
SNAPSHOT_STAGES = ("extract", "validate", "profiles", "finetune", "evaluate")
DVC_TIMEOUT_S = 1800
# DVC's closing advert on a failure, no part of what failed.
_DVC_SUPPORT_LINE = "Having any troubles?"
# A copy DVC could not finish ("ERROR: failed to transfer ... -> '<dir>/.<random>.tmp'"): DVC leaves the partial file.
_PARTIAL_COPY = re.compile(r"-> '([^']*/\.[^'/]+\.tmp)'")


class SnapshotError(RuntimeError):
    """A DVC command failed; the message carries its output."""


@dataclass(frozen=True)
class Snapshot:
    lock_text: str
    lock_sha256: str
    pushed: bool


def is_dvc_project(root: Path) -> bool:
    return (Path(root) / ".dvc").is_dir() and (Path(root) / "dvc.yaml").is_file()


def snapshot_night(root: Path, *, logical_date: str, params_file: Path, push: bool = True) -> Snapshot:
    """Commits the night's stage outputs to the DVC cache (and remote) and returns ``dvc.lock``.

    Raises:
        NonRetryableError: ``root`` is not a DVC project, or its DVC cache cannot take the outputs
            (a full or read-only disk).
        SnapshotError: a DVC command failed (retryable: nothing was registered yet).
    """
    root = Path(root)
    if not is_dvc_project(root):
        raise NonRetryableError(f"{root} is not a DVC project (needs .dvc/ and dvc.yaml)")
    pushed = False
    if run_by_dvc():
        log.info("run by dvc repro: dvc.lock is DVC's own record of the stages so far (`dvc push` after the "
                 "run sends them to the remote)")
    else:
        commit_stages(root, logical_date, params_file, SNAPSHOT_STAGES)
        if push and default_remote(root):
            run_dvc(root, "push", *SNAPSHOT_STAGES)
            pushed = True
    lock = root / "dvc.lock"
    log.info("night committed to the DVC cache%s (dvc.lock %s)", " and pushed" if pushed else "",
             sha256_file(lock)[:12])
    return Snapshot(lock_text=lock.read_text(), lock_sha256=sha256_file(lock), pushed=pushed)


def commit_stages(root: Path, logical_date: str, params_file: Path, stages: tuple[str, ...] = ()) -> None:
    """``dvc commit`` of ``stages`` (all when empty) with the workspace moved to the night and the
    params that ran in ``params.yaml`` while DVC reads them."""
    restore_operator_params(root)
    if set_night_date(root / PARAMS_FILE, logical_date):
        log.info("%s: run.logical_date is now %s, the night this workspace holds", PARAMS_FILE, logical_date)
    if _is_workspace_params(root, params_file):
        _commit(root, stages)
        return
    with params_in_place(root, params_that_ran(params_file, logical_date)):
        _commit(root, stages)
    log.info("dvc.lock records the params that ran, from %s; where %s differs, `dvc status` names it and "
             "`dvc repro` reruns from there", params_file, PARAMS_FILE)


def _commit(root: Path, stages: tuple[str, ...]) -> None:
    """``dvc commit --force STAGES``; a failure no retry can fix (a full or read-only cache) names the cache.

    Raises:
        NonRetryableError: the outputs could not be written into the DVC cache for such a reason.
        SnapshotError: any other failure (retryable).
    """

    def where() -> str:  # asks DVC for its cache only once a commit has failed
        return (f"committing {', '.join(stages) or 'the stages'} to the DVC cache {cache_dir(root)} "
                "(`dvc cache dir` sets it)")

    with named_if_permanent(where, errors=(SnapshotError,)):
        run_dvc(root, "commit", "--force", *stages)


def cache_dir(root: Path) -> str:
    """The project's DVC cache directory, as DVC resolves it."""
    try:
        return run_dvc(root, "cache", "dir").strip() or str(Path(root) / ".dvc" / "cache")
    except SnapshotError:
        return str(Path(root) / ".dvc" / "cache")


def record_night(root: Path, *, logical_date: str, params_file: Path, message: str) -> str | None:
    """The end of a night: every stage committed to DVC and pushed, and the night committed on the
    ``nights`` branch; returns that commit, or None where there is nothing to record it in."""
    root = Path(root)
    if not is_dvc_project(root):
        log.warning("%s is not a DVC project: the night is not recorded in DVC", root)
        return None
    if run_by_dvc():
        log.info("run by dvc repro: DVC records this stage; `git add dvc.lock` and commit to keep the run")
        return None
    commit_stages(root, logical_date, params_file)
    if default_remote(root):
        run_dvc(root, "push")
    if _is_workspace_params(root, params_file):
        params_text = (root / PARAMS_FILE).read_text()
    else:
        params_text = yaml.safe_dump(params_that_ran(params_file, logical_date), sort_keys=False)
    return commit_night(root, logical_date, params_text, message)


def _is_workspace_params(root: Path, params_file: Path) -> bool:
    return Path(params_file).resolve() == (Path(root) / PARAMS_FILE).resolve()


def restore_night(root: Path, lock_text: str) -> None:
    """Writes ``lock_text`` as ``dvc.lock`` and checks its outputs out, pulling what the cache lacks."""
    root = Path(root)
    (root / "dvc.lock").write_text(lock_text)
    try:
        run_dvc(root, "checkout", "--force", *SNAPSHOT_STAGES)
    except SnapshotError as missing:
        if not default_remote(root):
            raise
        log.info("not all in the local cache (%s); pulling from the remote", missing)
        run_dvc(root, "pull", "--force", *SNAPSHOT_STAGES)


def default_remote(root: Path) -> str | None:
    try:
        return run_dvc(root, "config", "core.remote").strip() or None
    except SnapshotError:  # no default remote configured
        return None


def run_dvc(root: Path, *args: str) -> str:
    """Runs ``dvc ARGS`` in ``root`` with this interpreter's DVC; returns its standard output."""
    command = [sys.executable, "-m", "dvc", *args]
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    try:
        done = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=DVC_TIMEOUT_S,
                              stdin=subprocess.DEVNULL, env=env)
    except subprocess.TimeoutExpired as exc:
        raise SnapshotError(f"dvc {' '.join(args)} timed out after {DVC_TIMEOUT_S} s in {root}") from exc
    output = [line for line in (done.stdout + done.stderr).splitlines()
              if line.strip() and not line.startswith(_DVC_SUPPORT_LINE)]
    errors = [line for line in output if line.startswith("ERROR:")]
    if done.returncode != 0 or errors:  # DVC exits 0 from a commit whose outputs could not be copied to the cache
        for line in errors:
            for partial in _PARTIAL_COPY.findall(line):
                Path(partial).unlink(missing_ok=True)
        shown = output if done.returncode != 0 else errors
        raise SnapshotError(f"dvc {' '.join(args)} failed in {root}: {' / '.join(shown[-5:])}")
    return done.stdout
