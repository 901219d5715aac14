"""Airflow settings for the DAG tests: a throwaway AIRFLOW_HOME, no examples, SQLite metadata.

Airflow reads its configuration once, on first import, so this runs at conftest import time,
before any test module imports airflow. Nothing here needs `airflow db migrate`: parsing a DAG
file must not touch the metadata database (a test proves it).
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DAGS_FOLDER = PROJECT_ROOT / "dags"

if "airflow" in sys.modules:  # too late to point it elsewhere; the tests still run, on its config
    warnings.warn("airflow was imported before tests/dags/conftest.py; AIRFLOW_HOME not isolated", stacklevel=1)

_AIRFLOW_HOME = tempfile.mkdtemp(prefix="retrain-airflow-home-")
atexit.register(shutil.rmtree, _AIRFLOW_HOME, ignore_errors=True)
os.environ.update(
    {
        "AIRFLOW_HOME": _AIRFLOW_HOME,
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_AIRFLOW_HOME}/airflow.db",
    }
)


@pytest.fixture(scope="session")
def dagbag():
    """The DAG folder parsed the way the dag-processor does: dags/ (the bundle) on sys.path."""
    from airflow.dag_processing.dagbag import BundleDagBag

    return BundleDagBag(dag_folder=DAGS_FOLDER, bundle_path=DAGS_FOLDER)


@pytest.fixture(scope="session")
def retrain_dag(dagbag):
    assert not dagbag.import_errors, dagbag.import_errors
    return dagbag.dags["nightly_retrain"]
