"""Trigger to success on the production topology, and what scheduling costs per task.

    python bench/cluster.py [--nights 2] [--worker-trees] [--out bench/results]

In a scratch copy of the project with the tiny warehouse (``deploy/local/scratch.py``), the cluster
of ``deploy/local/cluster.py`` (api-server, scheduler, dag-processor, a Celery worker for ``default``
and one for ``gpu``, on the local PostgreSQL and Redis) runs nights triggered through the REST API.
Side by side, night for night, a second copy runs the same nights with ``airflow dags test``: one
process, no scheduler, broker or workers, the baseline with no scheduling at all.

With ``--worker-trees`` no worker shares a working tree: each runs the stages in its own clone and
the outputs travel through a DVC remote on a local S3-compatible server (``deploy/local/s3.py``).

Per night: the wall time from trigger to success for both; for the cluster, per task, the time from
queued to running (scheduler, broker and worker pick-up), and the overhead, wall time minus the sum
of the tasks' own run times. Prints a table of medians and writes ``<out>/cluster.json``
(``cluster-worker-trees.json``).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(PROJECT_ROOT))

from bench.databases import temporary_postgres  # noqa: E402
from deploy.local.cluster import ApiClient, Cluster, ClusterSettings, api_client  # noqa: E402
from deploy.local.s3 import s3_server  # noqa: E402
from deploy.local.scratch import TINY_NIGHTS, project_copy  # noqa: E402

POSTGRES_ADMIN_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
BROKER_URL = "redis://127.0.0.1:6379/0"
RUN_TIMEOUT_S = 900


def parse_time(text: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def wait(what: str, probe: Any, timeout_s: float = RUN_TIMEOUT_S) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if found := probe():
                return found
        except Exception:  # noqa: BLE001 - not there yet
            pass
        time.sleep(1)
    raise RuntimeError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def cluster_night(api: ApiClient, cluster: Cluster, night: str) -> dict[str, Any]:
    """Triggers ``night`` through the REST API and times it from the trigger to the run's end."""
    triggered = dt.datetime.now(dt.timezone.utc)
    run_id = api.post("/api/v2/dags/nightly_retrain/dagRuns", {"logical_date": f"{night}T00:00:00Z"})["dag_run_id"]

    def finished() -> dict | None:
        cluster.check_alive()
        run = api.get(f"/api/v2/dags/nightly_retrain/dagRuns/{run_id}")
        return run if run["state"] in ("success", "failed") else None

    run = wait(f"night {night}", finished)
    if run["state"] != "success":
        raise RuntimeError(f"night {night} failed on the cluster; see {cluster.logs}")
    tasks = api.get(f"/api/v2/dags/nightly_retrain/dagRuns/{run_id}/taskInstances")["task_instances"]
    per_task = {ti["task_id"]: {
        "queued_to_running_s": round((parse_time(ti["start_date"]) - parse_time(ti["queued_when"])).total_seconds(), 3),
        "run_s": round(ti["duration"], 3), "worker": ti["hostname"], "queue": ti["queue"]} for ti in tasks}
    wall = (parse_time(run["end_date"]) - triggered).total_seconds()
    return {"night": night, "trigger_to_success_s": round(wall, 2), "tasks": per_task,
            "overhead_s": round(wall - sum(t["run_s"] for t in per_task.values()), 2)}


def dags_test_night(root: Path, night: str) -> float:
    """``airflow dags test`` of ``night`` in ``root`` (SQLite metadata, no scheduler): wall seconds."""
    home = root / ".airflow"
    env = {**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__DAGS_FOLDER": str(root / "dags"),
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
           "RETRAIN_PROJECT_DIR": str(root), "RETRAIN_PYTHON": sys.executable, "HF_HUB_OFFLINE": "1",
           "RETRAIN_NIGHT_DEADLINE_MINUTES": "0"}  # dags test fails a run with a deadline (apache/airflow#73428)
    airflow = str(Path(sys.executable).with_name("airflow"))
    if not (home / "airflow.db").exists():
        home.mkdir(parents=True, exist_ok=True)
        subprocess.run([airflow, "db", "migrate"], env=env, check=True, capture_output=True)
    started = time.perf_counter()
    done = subprocess.run([airflow, "dags", "test", "nightly_retrain", night], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"airflow dags test {night} failed: {done.stdout[-2000:]}")
    return round(time.perf_counter() - started, 2)


def median(values: list[float]) -> float:
    return round(statistics.median(values), 2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nights", type=int, default=len(TINY_NIGHTS), choices=range(1, len(TINY_NIGHTS) + 1))
    parser.add_argument("--worker-trees", action="store_true",
                        help="each worker in its own clone; outputs through a local S3-compatible DVC remote")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    nights = TINY_NIGHTS[:args.nights]
    metadata, drop_metadata, why_not = temporary_postgres(POSTGRES_ADMIN_URL)
    if metadata is None:
        print(f"needs the local PostgreSQL: {why_not}", file=sys.stderr)
        return 1
    registry, drop_registry, _ = temporary_postgres(POSTGRES_ADMIN_URL)
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-cluster-") as scratch:
            on_cluster, in_process = (project_copy(Path(scratch) / name) for name in ("cluster", "dags-test"))
            for root in (on_cluster, in_process):
                subprocess.run([sys.executable, "-m", "tasks.cli", "demo-data"], cwd=root, check=True,
                               capture_output=True)
            with contextlib.ExitStack() as services:
                shared = {}
                if args.worker_trees:  # the services the workers share; none shares a working tree
                    remote = services.enter_context(s3_server(Path(scratch)))
                    shared = {**remote.environment(), "RETRAIN_ARTIFACT_STORE": str(Path(scratch) / "artifacts"),
                              "RETRAIN_WAREHOUSE_URL": f"sqlite:///{on_cluster / 'warehouse' / 'demo.db'}"}
                settings = ClusterSettings(
                    project_dir=on_cluster, state_dir=Path(scratch) / "state", metadata_url=metadata,
                    broker_url=BROKER_URL, broker_prefix=f"bench-{Path(scratch).name}",
                    registry_url=registry.replace("+psycopg2", ""), scheduled=False,
                    worker_trees=args.worker_trees, extra_env=shared)
                cluster = services.enter_context(Cluster(settings))
                api = api_client(settings)
                wait("the DAG to be parsed", lambda: api.get("/api/v2/dags/nightly_retrain"))
                api.patch("/api/v2/dags/nightly_retrain", {"is_paused": False})
                for night in nights:
                    row = cluster_night(api, cluster, night)
                    row["dags_test_s"] = dags_test_night(in_process, night)
                    print(f"night {night}: cluster {row['trigger_to_success_s']} s, dags test {row['dags_test_s']} s",
                          flush=True)
                    rows.append(row)
    finally:
        drop_metadata()
        drop_registry()
    queued = [t["queued_to_running_s"] for row in rows for t in row["tasks"].values()]
    summary = {
        "trigger_to_success_s": median([r["trigger_to_success_s"] for r in rows]),
        "dags_test_s": median([r["dags_test_s"] for r in rows]),
        "cluster_vs_dags_test": round(median([r["trigger_to_success_s"] / r["dags_test_s"] for r in rows]), 2),
        "queued_to_running_s_median": median(queued), "queued_to_running_s_max": round(max(queued), 2),
        "overhead_s": median([r["overhead_s"] for r in rows]),
        "overhead_per_task_s": median([r["overhead_s"] / len(r["tasks"]) for r in rows]),
    }
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    mode = "each worker its own clone, outputs through an S3-compatible DVC remote" if args.worker_trees else \
        "one shared project directory"
    print(f"\nnightly_retrain on the tiny warehouse, {len(rows)} night(s), {mode}, medians ({machine})")
    print(f"{'':34} {'seconds':>8}")
    for label, key in (("trigger -> success, cluster", "trigger_to_success_s"),
                       ("airflow dags test, same night", "dags_test_s"),
                       ("cluster / dags test", "cluster_vs_dags_test"),
                       ("queued -> running, per task", "queued_to_running_s_median"),
                       ("queued -> running, worst task", "queued_to_running_s_max"),
                       ("overhead (wall - task run time)", "overhead_s"),
                       ("overhead per task", "overhead_per_task_s")):
        print(f"{label:34} {summary[key]:>8}")
    args.out.mkdir(parents=True, exist_ok=True)
    result = {"machine": machine, "warehouse": "tiny (deploy/local/scratch.py)", "workers": mode, "summary": summary,
              "nights": rows}
    out = args.out / ("cluster-worker-trees.json" if args.worker_trees else "cluster.json")
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
