"""Shared fixtures.

Tests that need a real service (PostgreSQL) skip with a reason where it is missing, unless
RETRAIN_REQUIRE_SERVICES=1 (set by .ci/run), which turns that skip into a failure.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
MOVIELENS_100K = PROJECT_ROOT.parent / "shared" / "data" / "ml-100k"
POSTGRES_ADMIN_URL = os.environ.get("RETRAIN_TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")


# What extract_window's unit tests fix unless they say otherwise: a one-day night, the whole history,
# no lookback, the identity mapping, one stream and one connection attempt.
PLAIN_EXTRACT = {"interval_days": 1, "window_days": 0, "lookback_days": 0, "read_workers": 1, "mapping": None,
                 "connect_attempts": 1, "backoff_s": 1.0, "max_backoff_s": 30.0}


def project_params(root: Path, **sections: dict) -> dict:
    """The shipped params.yaml with every path under ``root`` (each ``*_url`` a SQLite file there)
    and each given section's keys laid over its own."""
    import yaml

    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    params["paths"] = {key: f"sqlite:///{root}/{key.removesuffix('_url')}.db" if key.endswith("_url")
                       else str(root / value) for key, value in params["paths"].items()}
    for section, values in sections.items():
        params[section] = {**params[section], **values}
    return params


def write_params(root: Path, **sections: dict) -> Path:
    """``project_params`` written to ``root/params.yaml``; returns the file."""
    import yaml

    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(project_params(root, **sections)))
    return path


def shipped_params():
    """params.yaml as shipped, typed (connection URLs from the environment ignored)."""
    from pipelines.config import load_params

    return load_params(PROJECT_ROOT / "params.yaml", environ={})


def skip_or_fail(reason: str) -> None:
    if os.environ.get("RETRAIN_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason} (RETRAIN_REQUIRE_SERVICES=1 forbids skipping)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def movielens_100k() -> Path:
    if not (MOVIELENS_100K / "u.data").is_file():
        pytest.skip(f"MovieLens 100K not found at {MOVIELENS_100K} (it cannot be shipped; see README)")
    return MOVIELENS_100K


@pytest.fixture
def postgres_url() -> str:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    sqlalchemy = pytest.importorskip("sqlalchemy")
    try:
        admin = sqlalchemy.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except Exception as exc:  # noqa: BLE001 - any connection failure means "no server here"
        skip_or_fail(f"PostgreSQL not reachable at {POSTGRES_ADMIN_URL}: {exc.__class__.__name__}")
    name = f"retrain_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    yield url
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database, once as a SQLite file and once on the local PostgreSQL (``postgres_url``)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'database.db'}"
    return request.getfixturevalue("postgres_url")
