"""The production topology on one machine, without Docker: Airflow's api-server, scheduler,
dag-processor and triggerer, and Celery workers (queues ``default`` and ``gpu``), with PostgreSQL as metadata
database (and registry) and Redis as broker: the services of docker-compose.yml, as processes.

    python -m deploy.local.cluster up          # or `make cluster`; Ctrl-C stops every process

Each worker runs in its own working directory (``<state>/workers/<name>``) and reports its own name
as the task's hostname, so the UI and the REST API show which worker ran what. The stages run in
the project directory (``RETRAIN_PROJECT_DIR``), which the workers share as a shared volume does in
docker-compose.yml; or, with ``--worker-trees``, each worker in its own clone of the project, the
stages' outputs travelling between them through the DVC remote (``pipelines/registry/transfer.py``). Secrets (the admin password, the JWT secret, the Fernet key) are made
once per state directory, kept there with mode 0600 and never printed; logs go to ``<state>/logs``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROJECT_DIR = Path(__file__).resolve().parents[2]
ADMIN = "admin"
WORKERS = {"worker-default": ("default",), "worker-gpu": ("gpu",)}  # the queues of dags/nightly_retrain.py
STOP_GRACE_S = 20


class ClusterError(RuntimeError):
    """A service did not come up, or the API answered with an error."""


@dataclass(frozen=True)
class ClusterSettings:
    project_dir: Path = PROJECT_DIR
    state_dir: Path = PROJECT_DIR / ".cluster"
    metadata_url: str = "postgresql+psycopg2://postgres@127.0.0.1:5432/retrain_airflow"
    broker_url: str = "redis://127.0.0.1:6379/5"
    broker_prefix: str = "retrain"  # Redis key prefix: clusters sharing one Redis never take each other's tasks
    registry_url: str | None = "postgresql://postgres@127.0.0.1:5432/retrain_registry"  # connection `registry`
    api_port: int = 28080
    gpu_slots: int = 1
    heartbeat_timeout_s: int = 60  # a task whose worker died is failed (and retried) after this
    scheduled: bool = True  # False: only runs triggered by hand (or the API) run
    # True: each worker runs the stages in its own clone of the project, and outputs travel between
    # workers through the DVC remote (RETRAIN_STAGE_TRANSFER=dvc; set RETRAIN_DVC_REMOTE_URL, a
    # warehouse every worker reaches, and RETRAIN_ARTIFACT_STORE). False: one shared project directory.
    worker_trees: bool = False
    extra_env: Mapping[str, str] = field(default_factory=dict)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"


def create_database(url: str) -> None:
    """Creates the PostgreSQL database ``url`` names, if it does not exist."""
    import sqlalchemy as sa

    target = sa.make_url(url)
    if target.drivername == "postgresql":  # an Airflow connection URI: the driver installed here
        target = target.set(drivername="postgresql+psycopg2")
    admin = sa.create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            exists = conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :name"),
                                  {"name": target.database}).scalar()
            if not exists:
                conn.exec_driver_sql(f'CREATE DATABASE "{target.database}"')
    finally:
        admin.dispose()


def secret(state_dir: Path, name: str, make: Any) -> str:
    """A secret kept in ``state_dir`` (mode 0600), made on first use."""
    path = state_dir / "secrets" / name
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.touch(mode=0o600)
        path.write_text(make())
    return path.read_text().strip()


def admin_password(settings: ClusterSettings) -> str:
    return secret(settings.state_dir, "admin-password", lambda: secrets.token_urlsafe(18))


def environment(settings: ClusterSettings) -> dict[str, str]:
    """What every process of the cluster shares (the compose file's x-airflow-common)."""
    state = settings.state_dir
    passwords = state / "secrets" / "passwords.json"
    if not passwords.is_file():
        secret(state, "passwords.json", lambda: json.dumps({ADMIN: admin_password(settings)}))
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(state / "airflow"),
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CORE__DAGS_FOLDER": str(settings.project_dir / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__FERNET_KEY": secret(state, "fernet-key",
                                            lambda: base64.urlsafe_b64encode(os.urandom(32)).decode()),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{settings.api_url}/execution/",
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": "deploy.local.hostname.worker_name",
        "AIRFLOW__API__BASE_URL": settings.api_url,
        "AIRFLOW__API_AUTH__JWT_SECRET": secret(state, "jwt-secret", lambda: secrets.token_urlsafe(32)),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": settings.metadata_url,
        "AIRFLOW__CELERY__BROKER_URL": settings.broker_url,
        "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{settings.metadata_url}",
        "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__GLOBAL_KEYPREFIX": f"{settings.broker_prefix}:",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(settings.heartbeat_timeout_s),
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": str(settings.scheduled),
        "RETRAIN_PROJECT_DIR": str(settings.project_dir),
        "RETRAIN_PYTHON": sys.executable,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_DIR), os.environ.get("PYTHONPATH")])),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        **settings.extra_env,
    }
    if settings.registry_url:
        env["AIRFLOW_CONN_REGISTRY"] = settings.registry_url
    return env


def airflow(settings: ClusterSettings, *args: str, timeout: int = 600) -> str:
    binary = str(Path(sys.executable).with_name("airflow"))
    done = subprocess.run([binary, *args], env=environment(settings), capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise ClusterError(f"airflow {' '.join(args)} failed: {done.stderr.strip()[-2000:]}")
    return done.stdout


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (a stage runs in its own session, so a group kill misses it)."""
    table = subprocess.run(["ps", "-eo", "pid=,ppid="], capture_output=True, text=True, check=True).stdout
    children: dict[int, list[int]] = {}
    for line in table.splitlines():
        child, parent = map(int, line.split())
        children.setdefault(parent, []).append(child)
    found, frontier = [], [pid]
    while frontier:
        below = children.get(frontier.pop(), [])
        found += below
        frontier += below
    return found


class Cluster:
    """Starts and stops the cluster's processes; ``with Cluster(settings) as cluster:`` stops them all."""

    def __init__(self, settings: ClusterSettings) -> None:
        self.settings = settings
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.logs = settings.state_dir / "logs"

    def __enter__(self) -> Cluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, workers: Mapping[str, Sequence[str]] = WORKERS) -> None:
        settings = self.settings
        self.logs.mkdir(parents=True, exist_ok=True)
        for url in (settings.metadata_url, settings.registry_url):
            if url and url.startswith("postgresql"):
                create_database(url)
        print(f"metadata database {redacted(settings.metadata_url)}; migrating", flush=True)
        airflow(settings, "db", "migrate")
        airflow(settings, "pools", "set", "gpu", str(settings.gpu_slots), "GPU slots of the gpu workers")
        self.launch("api-server", "api-server", "--port", str(settings.api_port))
        self.launch("scheduler", "scheduler")
        self.launch("dag-processor", "dag-processor")
        self.launch("triggerer", "triggerer")  # runs the night's deadline alert (tasks/alerts.py)
        for name, queues in workers.items():
            self.start_worker(name, queues)
        self.wait_until_healthy()

    def launch(self, name: str, *args: str, cwd: Path | None = None, env: Mapping[str, str] | None = None) -> None:
        binary = str(Path(sys.executable).with_name("airflow"))
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - the child keeps it open
        self.processes[name] = subprocess.Popen(
            [binary, *args], env={**environment(self.settings), **(env or {})}, cwd=cwd or self.settings.state_dir,
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        print(f"started {name} (pid {self.processes[name].pid}, log {self.logs / f'{name}.log'})", flush=True)

    def start_worker(self, name: str, queues: Sequence[str]) -> None:
        """A Celery worker in its own working directory, named ``name`` in every task it runs."""
        workdir = self.settings.state_dir / "workers" / name
        workdir.mkdir(parents=True, exist_ok=True)
        env = {"RETRAIN_WORKER_NAME": name}
        if self.settings.worker_trees:
            env.update(RETRAIN_PROJECT_DIR=str(self.worker_tree(workdir)), RETRAIN_STAGE_TRANSFER="dvc")
        self.launch(name, "celery", "worker", "--queues", ",".join(queues), "--concurrency", "1",
                    "--celery-hostname", f"{name}@%h", cwd=workdir, env=env)

    def worker_tree(self, workdir: Path) -> Path:
        """The worker's own clone of the project (its committed state), made on first use."""
        tree = workdir / "project"
        if not tree.is_dir():
            done = subprocess.run(["git", "clone", "--quiet", str(self.settings.project_dir), str(tree)],
                                  capture_output=True, text=True)
            if done.returncode != 0:
                raise ClusterError(f"cannot clone {self.settings.project_dir} for a worker: {done.stderr.strip()}")
        return tree

    def kill_worker(self, name: str) -> None:
        """SIGKILL to the worker and everything under it, as when its machine is lost."""
        kill_tree(self.processes.pop(name))

    def wait_until_healthy(self, timeout_s: float = 180) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.check_alive()
            with contextlib.suppress(OSError, ClusterError):
                health = ApiClient(self.settings.api_url).get("/api/v2/monitor/health", auth=False)
                if health["metadatabase"]["status"] == "healthy" and health["scheduler"]["status"] == "healthy":
                    return
            time.sleep(2)
        raise ClusterError(f"the cluster was not healthy after {timeout_s:.0f} s; see {self.logs}")

    def check_alive(self) -> None:
        dead = {name: p.returncode for name, p in self.processes.items() if p.poll() is not None}
        if dead:
            raise ClusterError(f"exited: {dead}; see the logs in {self.logs}")

    def stop(self) -> None:
        """SIGTERM to every process group, then SIGKILL to whatever is left after the grace period."""
        for process in self.processes.values():
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                kill_tree(process)
        self.processes.clear()


def kill_tree(process: subprocess.Popen[bytes]) -> None:
    for pid in [process.pid, *descendants(process.pid)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.wait()


class ApiClient:
    """Airflow's REST API (v2) with a bearer token from the simple auth manager."""

    def __init__(self, base_url: str, username: str | None = None, password: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = self._token(username, password) if username else None

    def _token(self, username: str, password: str | None) -> str:
        answer = self._request("POST", "/auth/token", {"username": username, "password": password}, auth=False)
        return answer["access_token"]

    def get(self, path: str, auth: bool = True) -> Any:
        return self._request("GET", path, None, auth)

    def post(self, path: str, body: Mapping[str, Any]) -> Any:
        return self._request("POST", path, body, True)

    def patch(self, path: str, body: Mapping[str, Any]) -> Any:
        return self._request("PATCH", path, body, True)

    def _request(self, method: str, path: str, body: Mapping[str, Any] | None, auth: bool) -> Any:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if auth and self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base_url + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise ClusterError(f"{method} {path}: HTTP {exc.code}: {exc.read().decode()[:500]}") from exc


def redacted(url: str) -> str:
    import sqlalchemy as sa

    return sa.make_url(url).render_as_string(hide_password=True)


def api_client(settings: ClusterSettings) -> ApiClient:
    return ApiClient(settings.api_url, ADMIN, admin_password(settings))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.local.cluster", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["up"], help="start every service; Ctrl-C stops them")
    parser.add_argument("--state-dir", type=Path, default=ClusterSettings.state_dir)
    parser.add_argument("--metadata-url", default=ClusterSettings.metadata_url)
    parser.add_argument("--broker-url", default=ClusterSettings.broker_url)
    parser.add_argument("--registry-url", default=ClusterSettings.registry_url,
                        help="the registry database, as the Airflow connection `registry` (default: %(default)s)")
    parser.add_argument("--port", type=int, default=ClusterSettings.api_port)
    parser.add_argument("--manual-only", action="store_true", help="no scheduled nights, only triggered runs")
    parser.add_argument("--worker-trees", action="store_true",
                        help="each worker in its own clone of the project; outputs travel through the DVC remote")
    args = parser.parse_args(argv)
    settings = ClusterSettings(state_dir=args.state_dir.resolve(), metadata_url=args.metadata_url,
                               broker_url=args.broker_url, registry_url=args.registry_url, api_port=args.port,
                               scheduled=not args.manual_only, worker_trees=args.worker_trees)
    try:
        with Cluster(settings) as cluster:
            print(f"\nAirflow UI and REST API: {settings.api_url} (user {ADMIN}, password in "
                  f"{settings.state_dir / 'secrets' / 'admin-password'}); Ctrl-C stops the cluster", flush=True)
            while True:
                cluster.check_alive()
                time.sleep(5)
    except KeyboardInterrupt:
        print("stopped", flush=True)
    except ClusterError as exc:
        print(f"cluster: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
