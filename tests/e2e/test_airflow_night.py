"""The DAG runs the real stages through Airflow (`airflow dags test`), and bad data stops it cold."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
import yaml

from pipelines.core import schema
from pipelines.registry.store import Registry
from tests.conftest import PROJECT_ROOT
from tests.e2e.helpers import NIGHTS, tiny_project

AIRFLOW = str(Path(sys.executable).with_name("airflow"))


def airflow_env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "airflow-home"
    home.mkdir(exist_ok=True)
    return {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "RETRAIN_PROJECT_DIR": str(tmp_path),
        "RETRAIN_PYTHON": sys.executable,
        "HF_HUB_OFFLINE": "1",
        "RETRAIN_NIGHT_DEADLINE_MINUTES": "0",  # dags test fails a run with a deadline (apache/airflow#73428)
    }


def dags_test(env: dict[str, str], night: str) -> subprocess.CompletedProcess:
    return subprocess.run([AIRFLOW, "dags", "test", "nightly_retrain", night], env=env, capture_output=True,
                          text=True, timeout=600)


def corrupt_night(url: str, night: str) -> None:
    """A rating far outside the scale inside the night's data interval."""
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        next_id = conn.execute(sa.select(sa.func.max(schema.interactions.c.event_id))).scalar() + 1
        user, item = conn.execute(sa.select(schema.interactions.c.user_id, schema.interactions.c.item_id)).first()
        conn.execute(schema.interactions.insert(), [{
            "event_id": next_id, "user_id": user, "item_id": item, "event_type": "rating", "rating": 99.0,
            "ts": pd.Timestamp(night) - pd.Timedelta(hours=3),
        }])
    engine.dispose()


@pytest.mark.slow
def test_nightly_dag_runs_real_stages_and_stops_on_bad_data(tmp_path):
    params, _ = tiny_project(tmp_path)
    env = airflow_env(tmp_path)
    subprocess.run([AIRFLOW, "db", "migrate"], env=env, capture_output=True, text=True, check=True, timeout=300)

    good = dags_test(env, NIGHTS[0])
    assert good.returncode == 0, good.stdout[-4000:] + good.stderr[-4000:]
    assert "state=success" in good.stdout + good.stderr
    with Registry(params["paths"]["registry_url"], tmp_path / "state/artifacts") as registry:
        assert registry.champion().version == 1
    recs = pd.read_sql("SELECT run_date, count(*) AS n FROM recommendations GROUP BY run_date",
                       params["paths"]["warehouse_url"])
    assert recs["run_date"].tolist() == [NIGHTS[0]]

    corrupt_night(params["paths"]["warehouse_url"], NIGHTS[1])
    bad = dags_test(env, NIGHTS[1])
    log = bad.stdout + bad.stderr
    assert bad.returncode != 0 and "DagRun failed" in log
    assert "rating" in log and "expect_column_values_to_be_between" in log  # the reason reaches the log
    assert "AirflowFailException" in log and "new_state=up_for_retry" not in log  # final, no retry
    assert "-m tasks.profiles" not in log  # the run stopped before profiles
    with Registry(params["paths"]["registry_url"], tmp_path / "state/artifacts") as registry:
        assert [v.version for v in registry.list_versions()] == [1]
    assert set(pd.read_sql("SELECT run_date FROM recommendations", params["paths"]["warehouse_url"])["run_date"]) \
        == {NIGHTS[0]}


@pytest.mark.slow
def test_a_warehouse_connection_kept_only_in_the_metadata_database_serves_the_night(tmp_path):
    params, params_file = tiny_project(tmp_path)
    warehouse = sa.make_url(params["paths"]["warehouse_url"]).database
    # params.yaml names a warehouse that does not exist: only the connection can make the night work
    params["paths"]["warehouse_url"] = f"sqlite:///{tmp_path}/nowhere/warehouse.db"
    params_file.write_text(yaml.safe_dump(params))
    env = {k: v for k, v in airflow_env(tmp_path).items()
           if k not in ("AIRFLOW_CONN_WAREHOUSE", "RETRAIN_WAREHOUSE_URL")}
    subprocess.run([AIRFLOW, "db", "migrate"], env=env, capture_output=True, text=True, check=True, timeout=300)
    secret = "pw-only-in-the-metadata-db"  # SQLite ignores it; it must still never be shown
    connection = json.dumps({"conn_type": "sqlite", "host": str(warehouse), "login": "etl", "password": secret})
    subprocess.run([AIRFLOW, "connections", "add", "warehouse", "--conn-json", connection], env=env,
                   capture_output=True, text=True, check=True, timeout=120)

    night = dags_test(env, NIGHTS[0])
    log = night.stdout + night.stderr
    assert night.returncode == 0 and "state=success" in log, log[-4000:]
    assert "Airflow connection 'warehouse' handed to the stage as AIRFLOW_CONN_WAREHOUSE" in log
    assert secret not in log
    recs = pd.read_sql("SELECT DISTINCT run_date FROM recommendations", f"sqlite:///{warehouse}")
    assert recs["run_date"].tolist() == [NIGHTS[0]]  # published to the connection's warehouse
    assert not (tmp_path / "nowhere").exists()
