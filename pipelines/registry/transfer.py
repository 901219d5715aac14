"""Stage outputs between workers that share no working tree, through the DVC remote.

After a stage, its worker commits the stage to DVC and pushes its outputs to the default remote;
the stage's record (its ``dvc.lock`` entry, and the small ``cache: false`` files DVC leaves to git:
metrics, plots, reports) goes to the orchestrator, which hands the night's records to the next
stage's worker (Airflow: XCom of the night's run, so the records are keyed by the night). Before a
stage, its worker writes those entries into its own ``dvc.lock`` and pulls them: the outputs come
from its DVC cache, or from the remote. A missing input fails the stage (not retryable), naming the
output and the stage that made it. A remote that cannot be reached fails it retryably, naming the
remote, unless its host does not resolve (not retryable: the URL is wrong).

The remote is the project's default DVC remote, or, where ``RETRAIN_DVC_REMOTE_URL`` is set, that URL
(with ``RETRAIN_DVC_REMOTE_ENDPOINT`` for an S3-compatible server), written to ``.dvc/config.local``
(never in git). Credentials stay in the environment (``AWS_ACCESS_KEY_ID`` ...), where DVC's plugins
read them.
"""

from __future__ import annotations

import logging
import os
import re
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from pipelines.core.failures import hide
from pipelines.core.io import NonRetryableError, write_text
from pipelines.registry.nights import PARAMS_FILE, set_night_date, uncached_outputs
from pipelines.registry.snapshot import SnapshotError, commit_stages, default_remote, run_dvc

log = logging.getLogger(__name__)

REMOTE_NAME = "nightly"
REMOTE_URL_ENV = "RETRAIN_DVC_REMOTE_URL"
REMOTE_ENDPOINT_ENV = "RETRAIN_DVC_REMOTE_ENDPOINT"
MAX_CARRIED_BYTES = 4 << 20  # a cache: false file larger than this is not carried (said in the log)
# URL schemes whose first part is a host (in s3://, gs://, azure:// it is a bucket: only the endpoint is a host).
HOST_SCHEMES = frozenset({"http", "https", "ssh", "sftp", "webdav", "webdavs", "webhdfs", "hdfs"})
# What DVC says when it could not reach the remote at all, as opposed to an object the remote lacks.
UNREACHABLE = re.compile(r"could not connect|cannot connect|failed to connect|connection refused|timed out",
                         re.IGNORECASE)


def configure_remote(root: Path, environ: Mapping[str, str] = os.environ) -> str:
    """The default remote, set from the environment where it names one; returns its name.

    Raises:
        NonRetryableError: no remote at all: outputs could not leave this worker.
    """
    url = environ.get(REMOTE_URL_ENV)
    if url:
        endpoint = environ.get(REMOTE_ENDPOINT_ENV)
        if local_remote(root) != (url, endpoint):  # each DVC command costs a process start: only when it changed
            run_dvc(root, "remote", "add", "--local", "--force", "--default", REMOTE_NAME, url)
            if endpoint:
                run_dvc(root, "remote", "modify", "--local", REMOTE_NAME, "endpointurl", endpoint)
        return REMOTE_NAME
    remote = default_remote(root)
    if not remote:
        raise NonRetryableError(f"stages hand their outputs to other workers through a DVC remote, and {root} has "
                                f"none: set {REMOTE_URL_ENV} (and {REMOTE_ENDPOINT_ENV} for an S3-compatible "
                                "server) or `dvc remote add --default`")
    return remote


def local_remote(root: Path) -> tuple[str | None, str | None] | None:
    """(url, endpoint) of the default remote in ``.dvc/config.local`` where it is ours, else None."""
    from configobj import ConfigObj  # DVC's own config reader

    path = Path(root) / ".dvc" / "config.local"
    if not path.is_file():
        return None
    config = ConfigObj(str(path))
    section = config.get(f'remote "{REMOTE_NAME}"')
    if config.get("core", {}).get("remote") != REMOTE_NAME or not section:
        return None
    return section.get("url"), section.get("endpointurl")


def push_stage(root: Path, stage: str, logical_date: str, params_file: Path) -> dict[str, Any]:
    """Commits ``stage`` to DVC, pushes its outputs, and returns its record for the next workers."""
    root = Path(root)
    remote = configure_remote(root)
    commit_stages(root, logical_date, params_file, (stage,))
    try:
        run_dvc(root, "push", "--remote", remote, stage)
    except SnapshotError as exc:
        raise remote_failure(root, remote, "push", exc) from None
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    files = {}
    for path in uncached_outputs(root, stage):
        file = root / path
        if file.is_file() and file.stat().st_size <= MAX_CARRIED_BYTES:
            files[path] = file.read_text()
        elif file.is_file():
            log.warning("%s is larger than %d bytes: not carried to the next workers", path, MAX_CARRIED_BYTES)
    log.info("stage %s of night %s pushed to DVC remote %r", stage, logical_date, remote)
    return {"stage": stage, "logical_date": logical_date, "lock": lock["stages"][stage], "files": files}


def pull_stages(root: Path, records: Mapping[str, Mapping[str, Any]], logical_date: str) -> None:
    """Brings the outputs of the night's earlier stages (their records) into this working tree.

    Raises:
        NonRetryableError: a record is of another night, or an output is in neither the DVC cache
            nor the remote; the message names it.
    """
    root = Path(root)
    if not records:
        return
    remote = configure_remote(root)
    for stage, record in records.items():
        if record.get("logical_date") != logical_date:
            raise NonRetryableError(f"the record of stage {stage} is for night {record.get('logical_date')}, "
                                    f"not {logical_date}")
    set_night_date(root / PARAMS_FILE, logical_date)
    lock_path = root / "dvc.lock"
    lock = (yaml.safe_load(lock_path.read_text()) if lock_path.is_file() else None) or {"schema": "2.0"}
    lock.setdefault("stages", {}).update({stage: record["lock"] for stage, record in records.items()})
    write_text(lock_path, yaml.safe_dump(lock, sort_keys=False))
    for record in records.values():
        for path, text in record.get("files", {}).items():
            write_text(root / path, text)
    try:
        run_dvc(root, "pull", "--force", "--remote", remote, *records)
    except SnapshotError as exc:
        if UNREACHABLE.search(str(exc)):
            raise remote_failure(root, remote, "pull", exc) from None
        raise NonRetryableError(f"an input of this stage is missing: {missing_outputs(records, root) or exc} "
                                f"(not in this worker's DVC cache nor in remote {remote!r})") from exc
    log.info("outputs of %s for night %s pulled from DVC remote %r", ", ".join(records), logical_date, remote)


def missing_outputs(records: Mapping[str, Mapping[str, Any]], root: Path) -> str:
    """``path (from stage S)`` for every recorded output not in the working tree after a pull."""
    missing = [f"{out['path']} (from stage {stage})" for stage, record in records.items()
               for out in record["lock"].get("outs", []) if not (root / out["path"]).exists()]
    return ", ".join(missing)


def remote_failure(root: Path, remote: str, direction: str, exc: SnapshotError) -> Exception:
    """A failed push or pull, naming the remote and its URL: not retryable (NonRetryableError) where the
    remote's host does not resolve, else a SnapshotError (retryable unless its message says otherwise)."""
    url, endpoint = remote_location(root, remote)
    where = f"DVC remote {remote!r} ({url}{f', endpoint {endpoint}' if endpoint else ''})"
    host = urlsplit(endpoint).hostname if endpoint else \
        (urlsplit(url).hostname if urlsplit(url).scheme in HOST_SCHEMES else None)
    if host and not resolves(host):
        return NonRetryableError(f"{where}: its host {host!r} does not resolve: fix the host in {REMOTE_URL_ENV} / "
                                 f"{REMOTE_ENDPOINT_ENV} (or the remote's url / endpointurl in .dvc/config)")
    return SnapshotError(f"{where}: the {direction} failed (check that the remote is up and reachable from this "
                         f"worker): {exc}")


def remote_location(root: Path, remote: str) -> tuple[str, str | None]:
    """(url, endpoint) of ``remote`` as DVC reads them (``.dvc/config.local`` over ``.dvc/config``), any
    password in the URL hidden."""
    from configobj import ConfigObj  # DVC's own config reader

    url = endpoint = None
    for name in ("config", "config.local"):
        path = Path(root) / ".dvc" / name
        section = ConfigObj(str(path)).get(f'remote "{remote}"') if path.is_file() else None
        if section:
            url, endpoint = section.get("url", url), section.get("endpointurl", endpoint)
    return hide(url or "no url", urlsplit(url or "").password), endpoint


def resolves(host: str) -> bool:
    """False only where the name service says ``host`` does not exist (not where it is unreachable)."""
    try:
        socket.getaddrinfo(host, None)
    except socket.gaierror as exc:
        return exc.errno not in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME))
    return True
