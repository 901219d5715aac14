"""Each night's DVC record is the night: the date and params that ran, in ``dvc.lock`` and in git.

A night runs its stages with ``--logical-date D`` (and possibly ``--params`` other than
``params.yaml``); DVC records params from ``params.yaml``. So before DVC records anything, the
workspace's ``params.yaml`` is moved to the night (``run.logical_date: D``, a one-line edit that
keeps comments, as ``dvc exp run --set-param`` does). A night that ran from another params file (``--params``) is
recorded with that file's values in ``params.yaml`` for the moment DVC reads them, so ``dvc.lock``
and DVC's run cache hold what ran. After the night ``dvc status`` is clean, or names the params
the workspace no longer matches, which ``dvc repro`` then reruns.

At the end of the night (publish), every stage is committed to the DVC cache and the night becomes
a commit on the git branch ``nights``: the project's tree at HEAD plus the night's ``params.yaml``,
``dvc.lock`` and DVC's ``cache: false`` files (metrics, plots, reports). Its first parent is the
previous night, so ``dvc metrics diff nights~1 nights`` and ``dvc plots diff nights~1 nights``
compare the last two nights; the second parent is the code's commit. Nothing is checked out and the
working tree's branch never moves.

Under ``dvc repro`` (``DVC_STAGE`` set) DVC itself records each stage and holds its lock, so the
stage records nothing; ``params.yaml`` already is the night.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from pipelines.core.io import NonRetryableError, write_text

log = logging.getLogger(__name__)

NIGHTS_BRANCH = "nights"
PARAMS_FILE = "params.yaml"
SAVED_PARAMS = ".dvc/tmp/params.yaml.operator"  # DVC's own scratch directory, never in git
# Used only where git has no identity configured (a fresh worker): the commit is the platform's.
NIGHTLY_IDENTITY = {"GIT_AUTHOR_NAME": "retrain nightly", "GIT_AUTHOR_EMAIL": "retrain@localhost",
                    "GIT_COMMITTER_NAME": "retrain nightly", "GIT_COMMITTER_EMAIL": "retrain@localhost"}


def run_by_dvc() -> bool:
    """True inside a stage command that ``dvc repro`` runs: DVC records the stage itself."""
    return bool(os.environ.get("DVC_STAGE"))


def params_that_ran(params_file: Path, logical_date: str) -> dict[str, Any]:
    """The params file a stage ran with, as a dict, with the night's date in ``run.logical_date``."""
    try:
        params = yaml.safe_load(Path(params_file).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise NonRetryableError(f"cannot read the params that ran from {params_file}: {exc}") from exc
    params.setdefault("run", {})["logical_date"] = logical_date
    return params


def set_night_date(params_path: Path, logical_date: str) -> bool:
    """Writes ``run.logical_date: "D"`` into ``params_path`` in place, comments kept; True if it changed.

    Raises:
        NonRetryableError: the file has no ``run:`` section with a ``logical_date:`` line to edit.
    """
    text = Path(params_path).read_text()
    edited = _with_night_date(text, logical_date)
    if edited is None or (yaml.safe_load(edited) or {}).get("run", {}).get("logical_date") != logical_date:
        raise NonRetryableError(f"{params_path} needs a top-level `run:` section with a `logical_date:` line "
                                "(the night DVC records); add `run:\\n  logical_date: \"YYYY-MM-DD\"`")
    if edited == text:
        return False
    write_text(params_path, edited)
    return True


def _with_night_date(text: str, logical_date: str) -> str | None:
    lines = text.splitlines(keepends=True)
    in_run = False
    for index, line in enumerate(lines):
        if re.match(r"run:\s*(#.*)?$", line):
            in_run = True
        elif in_run and line.strip() and not line[0].isspace():
            return None  # the run section ended without a logical_date line
        elif in_run and (match := re.match(r"(\s+logical_date:\s*)(\"[^\"]*\"|'[^']*'|[^\s#]+)(.*)", line, re.S)):
            lines[index] = f'{match.group(1)}"{logical_date}"{match.group(3)}'
            return "".join(lines)
    return None


@contextlib.contextmanager
def params_in_place(root: Path, ran: Mapping[str, Any]) -> Iterator[None]:
    """``params.yaml`` holds the params that ran while DVC records them (its lock and run cache then
    tell the truth), and the operator's file is put back after: here, or by the next recording
    if this process dies in between (``restore_operator_params``)."""
    params, saved = Path(root) / PARAMS_FILE, Path(root) / SAVED_PARAMS
    restore_operator_params(root)
    saved.parent.mkdir(parents=True, exist_ok=True)
    write_text(saved, params.read_text())
    write_text(params, yaml.safe_dump(dict(ran), sort_keys=False))
    try:
        yield
    finally:
        os.replace(saved, params)


def restore_operator_params(root: Path) -> None:
    """Puts back a ``params.yaml`` that a killed recording left swapped out."""
    saved = Path(root) / SAVED_PARAMS
    if saved.is_file():
        log.warning("restoring %s from %s, left by a recording that was interrupted", PARAMS_FILE, saved)
        os.replace(saved, Path(root) / PARAMS_FILE)


def uncached_outputs(root: Path, stage: str | None = None) -> Iterator[str]:
    """Every ``cache: false`` output, metric and plot in ``dvc.yaml`` (of ``stage`` where given): the
    files DVC expects in git."""
    stages = (yaml.safe_load((Path(root) / "dvc.yaml").read_text()) or {}).get("stages") or {}
    for name, declared in stages.items():
        if stage not in (None, name):
            continue
        for kind in ("outs", "metrics", "plots"):
            for entry in declared.get(kind) or []:
                if isinstance(entry, Mapping):
                    for path, settings in entry.items():
                        if (settings or {}).get("cache") is False:
                            yield path


def commit_night(root: Path, logical_date: str, params_text: str, message: str) -> str | None:
    """The night as a commit on ``nights`` (see the module docstring); returns its id, or None
    outside a git checkout (said in the log)."""
    root = Path(root)
    head = _git(root, "rev-parse", "--verify", "-q", "HEAD", check=False)
    if not head:
        log.warning("%s is not a git checkout with a commit: the night is not recorded on the %r branch",
                    root, NIGHTS_BRANCH)
        return None
    files = {PARAMS_FILE: params_text, "dvc.lock": (root / "dvc.lock").read_text()}
    files.update({path: (root / path).read_text() for path in uncached_outputs(root) if (root / path).is_file()})
    previous = _git(root, "rev-parse", "--verify", "-q", f"refs/heads/{NIGHTS_BRANCH}", check=False)
    tree = _tree_with(root, head, files)
    parents = [arg for parent in (previous, head) if parent for arg in ("-p", parent)]
    commit = _git(root, "commit-tree", tree, *parents, "-m", message, env=_identity(root))
    # Compare-and-swap: a concurrent night that moved the branch meanwhile makes this fail (retried).
    _git(root, "update-ref", "-m", message, f"refs/heads/{NIGHTS_BRANCH}", commit, previous or "")
    log.info("night %s recorded as commit %s on branch %r: `dvc metrics diff %s~1 %s` compares it with the "
             "night before", logical_date, commit[:12], NIGHTS_BRANCH, NIGHTS_BRANCH, NIGHTS_BRANCH)
    return commit


def _tree_with(root: Path, head: str, files: Mapping[str, str]) -> str:
    """HEAD's tree with ``files`` added or replaced, built in a scratch index (the real one is untouched)."""
    with tempfile.TemporaryDirectory(prefix="nights-index-") as scratch:
        env = {"GIT_INDEX_FILE": str(Path(scratch) / "index")}
        _git(root, "read-tree", head, env=env)
        for path, text in files.items():
            blob = _git(root, "hash-object", "-w", "--stdin", stdin=text)
            _git(root, "update-index", "--add", "--cacheinfo", f"100644,{blob},{path}", env=env)
        return _git(root, "write-tree", env=env)


def _identity(root: Path) -> dict[str, str]:
    """Nothing where git can name a committer (it then commits as the operator would); else ours."""
    return {} if _git(root, "var", "GIT_COMMITTER_IDENT", check=False) else NIGHTLY_IDENTITY


def _git(root: Path, *args: str, check: bool = True, env: Mapping[str, str] | None = None,
         stdin: str | None = None) -> str:
    done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, input=stdin,
                          env={**os.environ, **(env or {})}, stdin=None if stdin is not None else subprocess.DEVNULL)
    if done.returncode != 0:
        if not check:
            return ""
        raise RuntimeError(f"git {args[0]} failed in {root}: {done.stderr.strip()}")
    return done.stdout.strip()
