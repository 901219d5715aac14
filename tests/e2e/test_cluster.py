"""The production topology on this machine: Airflow's api-server, scheduler, dag-processor and
triggerer, Celery workers per queue, PostgreSQL as metadata database and registry, Redis as broker
(deploy/local). Each night outlasts its deadline, set short here, and the triggerer reports it.

No worker shares a working tree: each runs the stages in its own clone of the project, and the
stages' outputs travel between them through a DVC remote on a real S3-compatible server. A night
triggered through the REST API runs each task on a worker of its queue; a second night loses its gpu
worker (SIGKILL to the worker and everything under it) in the middle of finetune, and still
succeeds after the retry on another gpu worker (a fresh clone), with nothing stored left
inconsistent."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa

from deploy.local.cluster import ApiClient, Cluster, ClusterSettings, api_client, create_database
from pipelines.registry.store import Registry
from tests.conftest import POSTGRES_ADMIN_URL, skip_or_fail
from tests.e2e.helpers import NIGHTS, project_copy
from deploy.local.s3 import free_port, s3_server

REDIS = ("127.0.0.1", 6379)
RUN_TIMEOUT_S = 600
DEADLINE_MINUTES = 0.5


def reachable(host: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(2)
        return probe.connect_ex((host, port)) == 0


def drop_database(url: str) -> None:
    engine = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{sa.make_url(url).database}" WITH (FORCE)')
    engine.dispose()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, ApiClient]]:
    if not reachable(*REDIS):
        skip_or_fail(f"Redis not reachable at {REDIS[0]}:{REDIS[1]} (the Celery broker)")
    try:
        sa.create_engine(POSTGRES_ADMIN_URL).connect().close()
    except Exception as exc:  # noqa: BLE001 - any connection failure means "no server here"
        skip_or_fail(f"PostgreSQL not reachable at {POSTGRES_ADMIN_URL}: {exc.__class__.__name__}")
    base = tmp_path_factory.mktemp("cluster")
    root = project_copy(base / "project")
    subprocess.run([sys.executable, "-m", "tasks.cli", "demo-data"], cwd=root, check=True, capture_output=True)
    suffix = uuid.uuid4().hex[:10]
    server = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    metadata, registry = f"{server}/cluster_meta_{suffix}", f"{server}/cluster_registry_{suffix}"
    create_database(registry)
    # What the workers share are services: the warehouse, the registry and its artifact store, the remote.
    shared = {"RETRAIN_RETRY_DELAY_S": "5", "RETRAIN_WAREHOUSE_URL": f"sqlite:///{root / 'warehouse' / 'demo.db'}",
              "RETRAIN_ARTIFACT_STORE": str(base / "artifacts"),
              # every night here outlasts half a minute, so each one raises the deadline alert
              "RETRAIN_NIGHT_DEADLINE_MINUTES": str(DEADLINE_MINUTES)}
    try:
        with s3_server(base) as remote, Cluster(ClusterSettings(
                project_dir=root, state_dir=base / "state", metadata_url=metadata,
                broker_url=f"redis://{REDIS[0]}:{REDIS[1]}/0", broker_prefix=f"test-{suffix}",
                registry_url=registry.replace("+psycopg2", ""),
                api_port=free_port(), scheduled=False, heartbeat_timeout_s=10, worker_trees=True,
                extra_env={**shared, **remote.environment()})) as running:
            settings = running.settings
            api = api_client(settings)
            wait_for(lambda: api.get("/api/v2/dags/nightly_retrain"), "the DAG to be parsed", timeout_s=180)
            api.patch("/api/v2/dags/nightly_retrain", {"is_paused": False})
            yield running, api
    finally:
        for url in (metadata, registry):
            drop_database(url)


def wait_for(probe: Any, what: str, timeout_s: float = RUN_TIMEOUT_S) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if found := probe():
                return found
        except AssertionError:
            raise
        except Exception:  # noqa: BLE001 - not there yet (404, connection refused while starting)
            pass
        time.sleep(2)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def trigger(api: ApiClient, night: str) -> str:
    return api.post("/api/v2/dags/nightly_retrain/dagRuns", {"logical_date": f"{night}T00:00:00Z"})["dag_run_id"]


def finished(api: ApiClient, run_id: str, cluster: Cluster) -> str | None:
    cluster.check_alive()
    state = api.get(f"/api/v2/dags/nightly_retrain/dagRuns/{run_id}")["state"]
    return state if state in ("success", "failed") else None


def finetune_running(api: ApiClient, run_id: str, cluster: Cluster) -> bool:
    assert finished(api, run_id, cluster) is None, f"the run ended before finetune ran; see {cluster.logs}"
    return task_instances(api, run_id)["finetune"]["state"] == "running"


def task_instances(api: ApiClient, run_id: str) -> dict[str, dict]:
    found = api.get(f"/api/v2/dags/nightly_retrain/dagRuns/{run_id}/taskInstances")["task_instances"]
    return {ti["task_id"]: ti for ti in found}


@pytest.mark.slow
def test_a_night_triggered_through_the_api_runs_each_task_on_a_worker_of_its_queue(cluster) -> None:
    running, api = cluster
    run_id = trigger(api, NIGHTS[0])
    assert wait_for(lambda: finished(api, run_id, running), f"night {NIGHTS[0]}") == "success"
    tasks = task_instances(api, run_id)
    assert {task: (ti["queue"], ti["hostname"]) for task, ti in tasks.items()} == {
        task: ("gpu", "worker-gpu") if task == "finetune" else ("default", "worker-default")
        for task in ("extract", "validate", "profiles", "finetune", "evaluate", "promote", "publish")}
    # the triggerer ran the deadline alert while the night was still running; the night went on
    alerts = wait_for(lambda: deadline_alerts(running.settings.project_dir, NIGHTS[0]), "the night's deadline alert",
                      timeout_s=120)
    assert alerts[0]["run_id"] == run_id and alerts[0]["summary"].startswith(
        f"night {NIGHTS[0]} is still running at its deadline"), alerts
    assert f"({DEADLINE_MINUTES:g} min after it was queued)" in alerts[0]["summary"]


def deadline_alerts(project_dir: Path, night: str) -> list[dict]:
    sink = project_dir / "state" / "notifications.jsonl"
    lines = sink.read_text().splitlines() if sink.exists() else []
    return [alert for alert in map(json.loads, lines) if alert.get("alert") == "deadline"
            and alert.get("logical_date") == night]


@pytest.mark.slow
def test_losing_the_gpu_worker_mid_finetune_is_retried_elsewhere_and_leaves_nothing_inconsistent(cluster) -> None:
    running, api = cluster
    run_id = trigger(api, NIGHTS[1])
    wait_for(lambda: finetune_running(api, run_id, running), "finetune to start")
    time.sleep(3)  # into training: the model is loading or stepping
    running.kill_worker("worker-gpu")
    running.start_worker("worker-gpu-2", ["gpu"])
    assert wait_for(lambda: finished(api, run_id, running), f"night {NIGHTS[1]}") == "success"

    finetune = task_instances(api, run_id)["finetune"]
    assert (finetune["try_number"], finetune["hostname"]) == (2, "worker-gpu-2")
    assert_stored_state_consistent(running.settings)


def tree(settings: ClusterSettings, worker: str) -> Path:
    return settings.state_dir / "workers" / worker / "project"


def assert_stored_state_consistent(settings: ClusterSettings) -> None:
    """One version per night; the champion is the second night's where the gate blessed it (a
    statistical outcome on the tiny demo), else the first's; its artifact intact and the one served
    on the second night; one set of lists per night; each worker's tree holds what it ran and pulled, and the
    tree that ran publish is what DVC recorded."""
    root = settings.project_dir
    with Registry(settings.registry_url.replace("postgresql://", "postgresql+psycopg2://"),
                  Path(settings.extra_env["RETRAIN_ARTIFACT_STORE"])) as registry:
        versions = registry.list_versions()
        champion = registry.champion()
        assert [v.run_date for v in versions] == list(NIGHTS)
        expected = versions[1] if versions[1].blessed else versions[0]
        assert champion is not None and champion.version == expected.version
        registry.artifact_path(champion.version)  # raises if the stored bytes no longer hash to the record
    engine = sa.create_engine(f"sqlite:///{root / 'warehouse' / 'demo.db'}")
    recs = pd.read_sql("SELECT run_date, user_id, rank, model_version FROM recommendations", engine)
    engine.dispose()
    per_night = recs.groupby("run_date")["model_version"].agg(["min", "max", "size"])
    assert list(per_night.index) == list(NIGHTS)
    assert per_night.loc[NIGHTS[1], "min"] == per_night.loc[NIGHTS[1], "max"] == champion.version
    assert not recs.duplicated(["run_date", "user_id", "rank"]).any()
    default, gpu = tree(settings, "worker-default"), tree(settings, "worker-gpu-2")
    assert (gpu / "data" / "profiles").is_dir() and not (gpu / "data" / "evaluate").exists()  # pulled, not made
    assert (default / "models" / "candidate").is_dir()  # pulled from the gpu worker's push
    assert not (root / "data").exists() and not (root / "models").exists(), "nothing ran in the shared checkout"
    status = subprocess.run([sys.executable, "-m", "dvc", "status"], cwd=default, capture_output=True, text=True)
    assert status.returncode == 0 and "Data and pipelines are up to date." in status.stdout, status.stdout
    # Every output of the night in the tree's DVC cache is in the remote too, hashes checked by DVC.
    cloud = subprocess.run([sys.executable, "-m", "dvc", "status", "--cloud"], cwd=default, capture_output=True,
                           text=True, env={**os.environ, **settings.extra_env})
    assert cloud.returncode == 0 and "Cache and remote 'nightly' are in sync." in cloud.stdout, cloud.stdout + cloud.stderr
