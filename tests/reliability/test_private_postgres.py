"""Failures of a real PostgreSQL server that the shared local one (trust auth) cannot produce.

This module starts its own PostgreSQL cluster: ``initdb`` and ``pg_ctl`` run as the OS user
``postgres`` (``runuser``; initdb refuses root), the data directory lives in a private temporary
directory, the server listens on a free port of 127.0.0.1 and asks every TCP client for a password
(``scram-sha-256``). The role ``etl`` owns the database ``wh``, which holds the tiny synthetic
warehouse of ``tests/e2e/helpers.py::tiny_project``.

What is real: the server, its password check and its log, the extract stage and the ``retrain``
CLI run in this process through their entry points, a ``pg_ctl restart -m fast`` in the middle of an
extract, and a stopped server that comes back while the stage's own connection loop waits. The
only thing patched is *when* the restart happens: a wrapper around one extraction function restarts
the server between reading the ``items`` and the ``users`` tables. Passwords reach the stages only
through environment variables.

What it proves: a wrong password exits 3 at the first attempt, in one line, with no traceback and
without the password; a restart mid-stage exits 1 (Airflow retries), changes nothing stored, and
the retry produces exactly what an undisturbed night does; a server that is down when the stage
starts is reached by the stage's own connection loop.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import glob
import json
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from pipelines.core.io import sha256_file
from pipelines.datasets.synthetic import generate_warehouse
from pipelines.extract import extraction
from tasks import cli
from tasks.common import EXIT_NON_RETRYABLE, EXIT_OK, EXIT_RETRYABLE
from tests.conftest import write_params
from tests.e2e.helpers import tiny_project
from tests.reliability.night import run_task
from tests.reliability.test_corrupted_warehouses import NIGHT, Project, copy_project

EARLIER_NIGHT = "2026-02-09"  # extracted into the base project, so a failed night has something to harm
CONNECTION_ENV = ("AIRFLOW_CONN_WAREHOUSE", "AIRFLOW_CONN_REGISTRY", "RETRAIN_WAREHOUSE_URL", "RETRAIN_REGISTRY_URL")
AUTH_FAILED = 'password authentication failed for user "etl"'  # the server's log line and libpq's message
# Manifest fields that differ between two identical extracts (when and how long).
VOLATILE_MANIFEST_KEYS = ("seconds", "extracted_at")


# --------------------------------------------------------------------------- the private server

@dataclass(frozen=True)
class PrivatePostgres:
    """A PostgreSQL cluster of this module's own, run by ``pg_ctl`` as ``owner``."""

    bin_dir: Path
    base: Path  # owned by ``owner``: the data directory, the server log and the Unix socket
    port: int
    password: str  # the role etl's
    owner: str | None  # the OS user the server runs as; None: the current user

    @property
    def data(self) -> Path:
        return self.base / "data"

    @property
    def log(self) -> Path:
        return self.base / "server.log"

    def url(self, password: str | None = None, database: str = "wh", scheme: str = "postgresql") -> str:
        """A URL as a stage gets it (the stage picks the installed driver): user etl over TCP, with the
        right password unless one is given."""
        return f"{scheme}://etl:{password or self.password}@127.0.0.1:{self.port}/{database}"

    def admin_url(self) -> str:
        """The superuser over the Unix socket (trusted: no password)."""
        return f"postgresql+psycopg2://postgres@/postgres?host={self.base}&port={self.port}"

    def command(self, program: str, *args: str) -> None:
        argv = [str(self.bin_dir / program), *args]
        if self.owner is not None:
            argv = ["runuser", "-u", self.owner, "--", *argv]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{program} {' '.join(args)} exited {done.returncode}: {done.stderr.strip()}\n"
                               f"server log:\n{self.log_text()[-2000:]}")

    def pg_ctl(self, action: str, *args: str) -> None:
        self.command("pg_ctl", action, "-D", str(self.data), "-l", str(self.log), "-w", "-t", "30", *args)

    def start(self) -> None:
        self.pg_ctl("start")

    def stop(self, mode: str = "fast") -> None:
        self.pg_ctl("stop", "-m", mode)

    def restart(self) -> None:
        self.pg_ctl("restart", "-m", "fast")

    def is_running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def auth_failures(self) -> int:
        """How many logins the server has refused for a wrong password, by its own log."""
        return sum(AUTH_FAILED in line for line in self.log_text().splitlines())


def find_bin_dir() -> Path | None:
    """The newest PostgreSQL server binaries: /usr/lib/postgresql/<version>/bin, else on PATH."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda path: int(path.split("/")[-2])
                        if path.split("/")[-2].isdigit() else 0)
    for directory in reversed(candidates):
        if (Path(directory) / "initdb").is_file() and (Path(directory) / "pg_ctl").is_file():
            return Path(directory)
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl and Path(initdb).resolve().parent == Path(pg_ctl).resolve().parent:
        return Path(initdb).resolve().parent
    return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def server_owner() -> str | None:
    """``postgres`` when running as root (initdb refuses root), else None (run as ourselves)."""
    if os.geteuid() != 0:
        return None
    if shutil.which("runuser") is None:
        pytest.skip("running as root, and runuser (util-linux) is missing: cannot run initdb as postgres")
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("running as root, and there is no OS user 'postgres' to run initdb and pg_ctl as")
    return "postgres"


def create_cluster(bin_dir: Path, owner: str | None) -> PrivatePostgres:
    """initdb, password auth for TCP, started; the role etl (with a password) owning database wh."""
    base = Path(tempfile.mkdtemp(prefix="retrain-pg-"))  # not pytest's tmp: postgres cannot enter it
    if owner is not None:
        user = pwd.getpwnam(owner)
        os.chown(base, user.pw_uid, user.pw_gid)
    server = PrivatePostgres(bin_dir, base, free_port(), secrets.token_hex(12), owner)
    try:
        server.command("initdb", "-D", str(server.data), "-U", "postgres", "-E", "UTF8", "--no-sync",
                       "--auth-local=trust", "--auth-host=scram-sha-256")
        (server.data / "pg_hba.conf").write_text("local all all trust\n"
                                                 "host all all 127.0.0.1/32 scram-sha-256\n")
        with (server.data / "postgresql.conf").open("a") as conf:
            conf.write(f"\nport = {server.port}\nlisten_addresses = '127.0.0.1'\n"
                       f"unix_socket_directories = '{base}'\nfsync = off\nfull_page_writes = off\n")
        server.start()
        admin = sa.create_engine(server.admin_url(), isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.exec_driver_sql(f"CREATE ROLE etl LOGIN PASSWORD '{server.password}'")
                conn.exec_driver_sql("CREATE DATABASE wh OWNER etl")
        finally:
            admin.dispose()
    except BaseException:
        remove_cluster(server)
        raise
    return server


def remove_cluster(server: PrivatePostgres) -> None:
    """Stops the server at once (nothing in it is worth a clean shutdown) and deletes its files."""
    with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
        if server.is_running():
            server.stop("immediate")
    shutil.rmtree(server.base, ignore_errors=True)


@pytest.fixture(scope="module")
def private_pg() -> Iterator[PrivatePostgres]:
    bin_dir = find_bin_dir()
    if bin_dir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found in /usr/lib/postgresql/*/bin or on PATH")
    server = create_cluster(bin_dir, server_owner())
    try:
        yield server
    finally:
        remove_cluster(server)


# --------------------------------------------------------------------------- projects and runs

@pytest.fixture(autouse=True)
def no_connection_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No connection from the machine's environment: each test sets the one it means."""
    for name in CONNECTION_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def pg_base(private_pg: PrivatePostgres, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny project whose warehouse is the private server's (reached through RETRAIN_WAREHOUSE_URL),
    with the earlier night already extracted into its snapshot and extract directories."""
    root = tmp_path_factory.mktemp("private-pg-base")
    params, params_file = tiny_project(root)
    generate_warehouse(private_pg.url(scheme="postgresql+psycopg2"), **params["demo_data"])
    with pytest.MonkeyPatch.context() as patch:
        for name in CONNECTION_ENV:
            patch.delenv(name, raising=False)
        patch.setenv("RETRAIN_WAREHOUSE_URL", private_pg.url())
        assert run_task("extract", params_file, EARLIER_NIGHT) == EXIT_OK
    return root


def set_extract_params(project: Project, **values: Any) -> None:
    """Lays ``values`` over the project's extract section, in its params file."""
    params = {**project.params, "extract": {**project.params["extract"], **values}}
    project.params_file.write_text(yaml.safe_dump(params))


def run_said(run: Callable[[], int], caplog: pytest.LogCaptureFixture,
             capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Runs a stage or command; returns its exit code and everything it said (log records, stdout, stderr)."""
    caplog.clear()
    capsys.readouterr()
    code = run()
    captured = capsys.readouterr()
    return code, "\n".join(record.getMessage() for record in caplog.records) + "\n" + captured.out + captured.err


def extract_stage(project: Project, night: str = NIGHT) -> Callable[[], int]:
    return lambda: run_task("extract", project.params_file, night)


def outputs(project: Project) -> dict[str, Any]:
    """What an extract leaves: the snapshot's files, the extract's files and its manifest, less
    the fields that say when and how long."""
    extract = Path(project.paths["extract"])
    files = {str(path.relative_to(extract)): sha256_file(path) for path in sorted(extract.rglob("*"))
             if path.is_file() and path.name != "manifest.json"}
    manifest = json.loads((extract / "manifest.json").read_text())
    for key in VOLATILE_MANIFEST_KEYS:
        manifest.pop(key, None)
    return {"snapshot": project.snapshot_files(), "extract": files, "manifest": manifest}


def said_lines(text: str, needle: str) -> list[str]:
    return [line for line in text.splitlines() if needle in line]


# --------------------------------------------------------------------------- a wrong password

def test_wrong_warehouse_password_fails_at_once(private_pg: PrivatePostgres, pg_base: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    project = copy_project(pg_base, tmp_path / "project")
    set_extract_params(project, connect_attempts=4)
    wrong = f"WRONG-{secrets.token_hex(8)}"
    monkeypatch.setenv("RETRAIN_WAREHOUSE_URL", private_pg.url(password=wrong))
    before, refused = outputs(project), private_pg.auth_failures()

    code, said = run_said(extract_stage(project), caplog, capsys)

    assert code == EXIT_NON_RETRYABLE, said[-3000:]
    [line] = said_lines(said, "authentication failed: check the user and password")  # one line says it all
    assert AUTH_FAILED in line and f"127.0.0.1:{private_pg.port}/wh" in line, line
    assert "Traceback" not in said, said[-3000:]
    assert wrong not in said and private_pg.password not in said
    # The stage's own loop gave up at once: no retry logged, and the server refused exactly one login.
    assert "attempt 1/4" not in said and "retrying" not in said, said[-3000:]
    assert private_pg.auth_failures() - refused == 1
    assert outputs(project) == before


def test_wrong_registry_password_names_the_setting(private_pg: PrivatePostgres, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   caplog: pytest.LogCaptureFixture,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    params_file = write_params(tmp_path)
    wrong = f"WRONG-{secrets.token_hex(8)}"
    monkeypatch.setenv("RETRAIN_REGISTRY_URL", private_pg.url(password=wrong))
    refused = private_pg.auth_failures()

    code, said = run_said(lambda: cli.main(["--params", str(params_file), "registry", "list"]), caplog, capsys)

    assert code == EXIT_NON_RETRYABLE, said[-3000:]
    [line] = said_lines(said, "authentication failed: check the user and password")
    assert "(paths.registry_url or RETRAIN_REGISTRY_URL)" in line and AUTH_FAILED in line, line
    assert "Traceback" not in said, said[-3000:]
    assert wrong not in said and private_pg.password not in said
    assert private_pg.auth_failures() - refused == 1


# --------------------------------------------------------------------------- the server restarts

def restarting_before(table: str, server: PrivatePostgres, restarts: list[float]) -> Callable[..., Any]:
    """``extraction._read_dimension``, restarting the server (once) before it reads ``table``; each
    restart's duration is appended to ``restarts``."""
    read_dimension = extraction._read_dimension

    def wrapper(source: extraction.Source, name: str, *args: Any, **kwargs: Any) -> Any:
        if name == table and not restarts:
            started = time.monotonic()
            server.restart()
            restarts.append(time.monotonic() - started)
        return read_dimension(source, name, *args, **kwargs)

    return wrapper


def test_restart_mid_stage_is_retried_and_the_retry_matches_an_undisturbed_night(
        private_pg: PrivatePostgres, pg_base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RETRAIN_WAREHOUSE_URL", private_pg.url())
    undisturbed = copy_project(pg_base, tmp_path / "undisturbed")
    disturbed = copy_project(pg_base, tmp_path / "disturbed")
    code, said = run_said(extract_stage(undisturbed), caplog, capsys)
    assert code == EXIT_OK, said[-3000:]
    before = outputs(disturbed)

    restarts: list[float] = []
    read_dimension = extraction._read_dimension
    monkeypatch.setattr(extraction, "_read_dimension", restarting_before("users", private_pg, restarts))
    code, said = run_said(extract_stage(disturbed), caplog, capsys)

    assert restarts, "the server was not restarted: the stage never read the users table"
    assert code == EXIT_RETRYABLE, said[-3000:]
    assert private_pg.password not in said
    assert outputs(disturbed) == before  # nothing half-written: snapshot and extract as they were

    monkeypatch.setattr(extraction, "_read_dimension", read_dimension)
    code, said = run_said(extract_stage(disturbed), caplog, capsys)  # Airflow's retry

    assert code == EXIT_OK, said[-3000:]
    assert outputs(disturbed) == outputs(undisturbed)


def test_server_down_at_start_is_reached_by_the_connect_loop(
        private_pg: PrivatePostgres, pg_base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> None:
    project = copy_project(pg_base, tmp_path / "project")
    set_extract_params(project, connect_attempts=4, connect_backoff_s=2.0, connect_max_backoff_s=30.0)
    monkeypatch.setenv("RETRAIN_WAREHOUSE_URL", private_pg.url())

    private_pg.stop()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        back = pool.submit(lambda: (time.sleep(2.0), private_pg.start()))
        try:
            code, said = run_said(extract_stage(project), caplog, capsys)
        finally:
            back.result()  # the server is up again for whatever runs next (or its start's error)

    assert code == EXIT_OK, said[-3000:]
    assert said_lines(said, "unreachable (attempt 1/4"), said[-3000:]  # the stage's own loop waited
    assert "unreachable after" not in said
    assert private_pg.password not in said
    assert outputs(project)["manifest"]["logical_date"] == NIGHT
