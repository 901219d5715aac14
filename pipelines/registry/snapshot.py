"""Each night's data and model in the DVC cache, and their restoration by ``dvc.lock``.

The nightly stages run under Airflow or ``dvc repro``; either way promote then calls
``snapshot_night``: ``dvc commit`` records the content hash of every stage output in ``dvc.lock``
and copies the outputs into the DVC cache, and ``dvc push`` sends them to the configured remote.
The registry keeps that ``dvc.lock`` with the version, so ``restore_night`` can bring any
version's extracts, profiles and model back, from the local cache or else the remote.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from pipelines.core.io import NonRetryableError, sha256_file

log = logging.getLogger(__name__)

# The stages whose outputs a night's version is made of; promote and publish come after it.
SNAPSHOT_STAGES = ("extract", "validate", "profiles", "finetune", "evaluate")
DVC_TIMEOUT_S = 1800


class SnapshotError(RuntimeError):
    """A DVC command failed; the message carries its output."""


@dataclass(frozen=True)
class Snapshot:
    lock_text: str
    lock_sha256: str
    pushed: bool


def is_dvc_project(root: Path) -> bool:
    return (Path(root) / ".dvc").is_dir() and (Path(root) / "dvc.yaml").is_file()


def snapshot_night(root: Path, *, push: bool = True) -> Snapshot:
    """Commits the night's stage outputs to the DVC cache (and remote) and returns ``dvc.lock``.

    Raises:
        NonRetryableError: ``root`` is not a DVC project.
        SnapshotError: a DVC command failed (retryable: nothing was registered yet).
    """
    root = Path(root)
    if not is_dvc_project(root):
        raise NonRetryableError(f"{root} is not a DVC project (needs .dvc/ and dvc.yaml)")
    run_dvc(root, "commit", "--force", *SNAPSHOT_STAGES)
    pushed = False
    if push and default_remote(root):
        run_dvc(root, "push", *SNAPSHOT_STAGES)
        pushed = True
    lock = root / "dvc.lock"
    log.info("night committed to the DVC cache%s (dvc.lock %s)", " and pushed" if pushed else "",
             sha256_file(lock)[:12])
    return Snapshot(lock_text=lock.read_text(), lock_sha256=sha256_file(lock), pushed=pushed)


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
    if done.returncode != 0:
        output = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
        raise SnapshotError(f"dvc {' '.join(args)} failed in {root}: {' / '.join(output[-5:])}")
    return done.stdout
