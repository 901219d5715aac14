"""Faults of the machine a night runs on, not of its data or its configuration: a read-only disk
under the registry, a full disk under the artifact store or the DVC cache, a DVC remote whose host
does not resolve or whose server refuses connections.

Each case makes the fault for real (a tmpfs mounted small, or remounted read-only; a remote URL on
a ``.invalid`` host or a closed local port) and runs the real stage or ``retrain`` command. A fault
no retry can fix must exit 3 (Airflow does not retry) with one line naming the resource (the
setting, path or remote) and what to do, print no traceback, and leave everything stored as it was
(registry file, artifact store, champion, DVC cache). A refused connection exits 1: Airflow
retries it. Mounting needs root with CAP_SYS_ADMIN; without it those cases skip, saying so.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipelines.core.io import sha256_dir, sha256_file
from tasks import cli
from tasks.common import EXIT_NON_RETRYABLE, EXIT_RETRYABLE
from tests.conftest import PROJECT_ROOT, write_params
from tests.reliability.night import make_project, run_task, stage_night

NIGHTS = ("2026-02-08", "2026-02-09", "2026-02-10")
NIGHT = NIGHTS[1]  # the night the DVC cases transfer
DVC_YAML = """stages:
  extract:
    cmd: python -m tasks.extract --logical-date ${run.logical_date}
    params: [run.logical_date]
    outs: [data/extract]
"""


# -- a small disk -----------------------------------------------------------------------------

@contextlib.contextmanager
def tmpfs(directory: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on ``directory`` (made here), unmounted on the way out."""
    directory.mkdir(parents=True)
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)],
                              capture_output=True, text=True)
    except OSError as exc:
        pytest.skip(f"cannot run mount: {exc}")
    if done.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here (needs root with CAP_SYS_ADMIN): {done.stderr.strip()}")
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False)


def remount_read_only(directory: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(directory)], check=True)


def fill(directory: Path, leave: int) -> None:
    """Writes a file that leaves about ``leave`` bytes free on ``directory``'s file system."""
    free = os.statvfs(directory).f_bavail * os.statvfs(directory).f_frsize
    (directory / "filler").write_bytes(b"\0" * max(free - leave, 0))


def fake_model(directory: Path, size: int, seed: int) -> Path:
    """A candidate's files: promote only copies and hashes them, so bytes will do."""
    directory.mkdir(parents=True)
    (directory / "weights.bin").write_bytes(bytes((seed + i) % 251 for i in range(size)))
    (directory / "config.json").write_text(json.dumps({"seed": seed}))
    return directory


# -- the registry: a night served, the next one staged ------------------------------------------

def served_project(root: Path, nights: int) -> tuple[dict[str, Any], Path]:
    """A project whose promote stage has served ``nights`` nights (each blessed), then the next
    night staged for promote with a 256 KiB candidate."""
    root.mkdir()
    params, params_file = make_project(root)
    for n, night in enumerate(NIGHTS[:nights]):
        stage_night(params, night, fake_model(root / f"model-{n}", 4096, seed=n), blessed=True)
        assert run_task("promote", params_file, night) == 0
    stage_night(params, NIGHTS[nights], fake_model(root / "model-next", 256 << 10, seed=9), blessed=True)
    return params, params_file


def move_registry(params: dict[str, Any], params_file: Path, disk: Path) -> dict[str, Any]:
    """Moves the registry's database and artifact store onto ``disk``; params point there."""
    paths = params["paths"]
    database = disk / "registry.db"
    shutil.copyfile(paths["registry_url"].removeprefix("sqlite:///"), database)
    shutil.copytree(paths["artifact_store"], disk / "artifacts")
    paths.update(registry_url=f"sqlite:///{database}", artifact_store=str(disk / "artifacts"))
    params_file.write_text(yaml.safe_dump(params))
    return params


def champion(params: dict[str, Any]) -> int | None:
    database = params["paths"]["registry_url"].removeprefix("sqlite:///")
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as conn:
        row = conn.execute("SELECT version FROM aliases WHERE alias = 'champion'").fetchone()
    return row[0] if row else None


def stored(params: dict[str, Any]) -> dict[str, Any]:
    """Digests of everything a failed promote must leave as it was."""
    paths = params["paths"]
    store = Path(paths["artifact_store"])
    return {"registry": sha256_file(Path(paths["registry_url"].removeprefix("sqlite:///"))),
            "artifact_store": sha256_dir(store), "store_entries": sorted(os.listdir(store)),
            "champion": champion(params), "promote": sha256_dir(Path(paths["promote"]))}


def said(caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> str:
    """Everything a run in this process said: its log records and its stderr."""
    return "\n".join(record.getMessage() for record in caplog.records) + "\n" + capsys.readouterr().err


def stopped_for_good(code: int, output: str, *parts: str) -> None:
    """Exit 3 (no retry), one line naming every one of ``parts``, and no traceback."""
    assert code == EXIT_NON_RETRYABLE, output[-3000:]
    one_line_with(output, *parts)
    assert "Traceback" not in output


def one_line_with(text: str, *parts: str) -> str:
    """The line of ``text`` that holds every one of ``parts``; fails showing the text if none does."""
    lines = [line for line in text.splitlines() if all(part in line for part in parts)]
    assert lines, f"no line names all of {parts}:\n{text[-3000:]}"
    return lines[0]


def test_a_rollback_on_a_read_only_registry_names_the_registry(tmp_path, monkeypatch, capsys, caplog):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RETRAIN_REGISTRY_URL", raising=False)
    params, params_file = served_project(tmp_path / "project", nights=2)
    with tmpfs(tmp_path / "disk", "16m") as disk:
        params = move_registry(params, params_file, disk)
        remount_read_only(disk)
        before = stored(params)
        assert before["champion"] == 2
        capsys.readouterr()
        caplog.clear()

        code = cli.main(["--params", str(params_file), "registry", "rollback", "--reason", "bad night"])

        stopped_for_good(code, said(caplog, capsys), "paths.registry_url or RETRAIN_REGISTRY_URL",
                         str(disk / "registry.db"), "read-only")
        assert stored(params) == before


def test_promote_on_a_read_only_disk_names_the_artifact_store(tmp_path, monkeypatch, capsys, caplog):
    monkeypatch.chdir(tmp_path)
    params, params_file = served_project(tmp_path / "project", nights=1)
    with tmpfs(tmp_path / "disk", "16m") as disk:
        params = move_registry(params, params_file, disk)
        remount_read_only(disk)
        before = stored(params)
        capsys.readouterr()
        caplog.clear()

        code = run_task("promote", params_file, NIGHTS[1])

        stopped_for_good(code, said(caplog, capsys), "paths.artifact_store", str(disk / "artifacts"), "read-only")
        assert stored(params) == before


def test_promote_on_a_full_disk_stores_no_half_version(tmp_path, monkeypatch, capsys, caplog):
    monkeypatch.chdir(tmp_path)
    params, params_file = served_project(tmp_path / "project", nights=1)
    with tmpfs(tmp_path / "disk", "1m") as disk:
        params = move_registry(params, params_file, disk)
        fill(disk, leave=64 << 10)  # the 256 KiB candidate does not fit
        before = stored(params)
        capsys.readouterr()
        caplog.clear()

        code = run_task("promote", params_file, NIGHTS[1])

        stopped_for_good(code, said(caplog, capsys), "the disk is full", str(disk / "artifacts"))
        assert stored(params) == before  # no version row, champion kept, no partial artifact directory


# -- DVC: the cache and the remote --------------------------------------------------------------

def dvc(root: Path, *args: str) -> None:
    subprocess.run([sys.executable, "-m", "dvc", *args], cwd=root, check=True, capture_output=True,
                   env={**os.environ, "DVC_NO_ANALYTICS": "1"})


@pytest.fixture(scope="module")
def dvc_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DVC project (git, full params.yaml) whose extract stage has run: 512 KiB in data/extract."""
    root = tmp_path_factory.mktemp("dvc-base") / "project"
    root.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    dvc(root, "init", "-q")
    (root / "dvc.yaml").write_text(DVC_YAML)
    write_params(root)
    (root / "data" / "extract").mkdir(parents=True)
    (root / "data" / "extract" / "events.parquet").write_bytes(bytes(i % 253 for i in range(512 << 10)))
    return root


def worker(base: Path, root: Path) -> Path:
    """A copy of ``base`` at ``root``, its params pointing at the copy."""
    shutil.copytree(base, root, symlinks=True)
    params_file = root / "params.yaml"
    params_file.write_text(params_file.read_text().replace(str(base), str(root)))
    return root


def dvc_stored(cache: Path, remote: Path) -> dict[str, str]:
    """Digests of the DVC cache's objects and of the remote. The cache's ``runs/`` is left out: DVC
    records each commit there, and checks that the objects exist before it reuses a record."""
    return {"cache objects": sha256_dir(cache / "files"), "remote": sha256_dir(remote)}


def transfer(root: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``python -m tasks.transfer ARGS`` in ``root``, as the Airflow operator runs it."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("RETRAIN_", "AWS_"))}
    environment.update(PYTHONPATH=str(PROJECT_ROOT), HF_HUB_OFFLINE="1", DVC_NO_ANALYTICS="1", **env)
    return subprocess.run(
        [sys.executable, "-m", "tasks.transfer", *args, "--params", "params.yaml", "--logical-date", NIGHT,
         "--record", "record.json"],
        cwd=root, env=environment, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def test_a_full_dvc_cache_fails_the_push_naming_the_cache(dvc_base, tmp_path):
    root = worker(dvc_base, tmp_path / "worker")
    remote = tmp_path / "remote"
    remote.mkdir()
    with tmpfs(tmp_path / "disk", "1m") as disk:
        cache = disk / "cache"
        dvc(root, "cache", "dir", "--local", str(cache))
        fill(disk, leave=64 << 10)  # the 512 KiB extract does not fit
        before = dvc_stored(cache, remote)

        done = transfer(root, "push", "--stage", "extract", env={"RETRAIN_DVC_REMOTE_URL": str(remote)})

        stopped_for_good(done.returncode, done.stderr, "the disk is full", str(cache))
        assert dvc_stored(cache, remote) == before
        assert not list(cache.rglob("*.tmp")), "DVC's half-written copy is left in the cache"
        assert not (root / "record.json").exists()  # no record of a stage that is in no cache


UNRESOLVABLE = "http://no-such-host.invalid:9000"
REFUSED = "http://127.0.0.1:9"  # discard: nothing listens there


def s3_remote(endpoint: str) -> dict[str, str]:
    """An S3-compatible remote at ``endpoint``; one attempt per request (botocore's own five
    attempts with backoff would only slow the case: Airflow is what retries)."""
    return {"RETRAIN_DVC_REMOTE_URL": "s3://nightly/remote", "RETRAIN_DVC_REMOTE_ENDPOINT": endpoint,
            "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_MAX_ATTEMPTS": "1",
            "AWS_EC2_METADATA_DISABLED": "true"}


def pulling_worker(base: Path, root: Path) -> Path:
    """A worker about to pull the extract stage that another worker committed (record.json)."""
    committed = worker(base, root.with_name(root.name + "-committed"))
    dvc(committed, "commit", "--force", "extract")
    lock = yaml.safe_load((committed / "dvc.lock").read_text())["stages"]["extract"]
    root = worker(base, root)
    shutil.rmtree(root / "data" / "extract")
    (root / "record.json").write_text(json.dumps(
        {"extract": {"stage": "extract", "logical_date": NIGHT, "lock": lock, "files": {}}}))
    return root


def transfer_through(base: Path, tmp_path: Path, direction: str, endpoint: str) -> subprocess.CompletedProcess[str]:
    """Pushes the extract stage, or pulls it into a worker that lacks it, through an S3 remote at ``endpoint``."""
    if direction == "push":
        root = worker(base, tmp_path / "worker")
        done = transfer(root, "push", "--stage", "extract", env=s3_remote(endpoint))
        assert not (root / "record.json").exists(), "a record of a stage that reached no remote"
        return done
    root = pulling_worker(base, tmp_path / "worker")
    done = transfer(root, "pull", env=s3_remote(endpoint))
    assert not (root / "data" / "extract").exists()
    return done


@pytest.mark.parametrize("direction", ["push", "pull"])
def test_a_remote_whose_host_does_not_resolve_is_named(dvc_base, tmp_path, direction):
    try:
        socket.getaddrinfo("no-such-host.invalid", None)
    except socket.gaierror as exc:
        if exc.errno == socket.EAI_AGAIN:
            pytest.skip(f"this machine's name service does not answer ({exc}): a name cannot be told missing")

    done = transfer_through(dvc_base, tmp_path, direction, UNRESOLVABLE)

    stopped_for_good(done.returncode, done.stderr, "'nightly'", "no-such-host.invalid", "does not resolve",
                     "RETRAIN_DVC_REMOTE_ENDPOINT")


@pytest.mark.parametrize("direction", ["push", "pull"])
def test_a_remote_that_refuses_connections_is_retried(dvc_base, tmp_path, direction):
    done = transfer_through(dvc_base, tmp_path, direction, REFUSED)

    assert done.returncode == EXIT_RETRYABLE, done.stderr[-3000:]  # not "an input is missing" (exit 3)
    one_line_with(done.stderr, "DVC remote 'nightly'", "127.0.0.1:9")
