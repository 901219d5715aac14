"""Database URLs without a driver take an installed one; a missing driver is named, never retried."""

from __future__ import annotations

import json
import sys

import pytest
import sqlalchemy as sa

from pipelines.core import drivers
from pipelines.core.io import NonRetryableError
from pipelines.registry.store import Registry
from tasks import cli
from tests.conftest import write_params
from tests.pipelines.core.test_warehouse import run_stage, seed_canonical

SECRET = "Zq8x3-not-for-logs"


def bare(url: str) -> str:
    """``postgresql+psycopg2://...`` as a user would write it: ``postgresql://...``."""
    parsed = sa.make_url(url)
    return parsed.set(drivername=parsed.get_backend_name()).render_as_string(hide_password=False)


def test_a_bare_dialect_takes_the_installed_driver_and_a_named_one_is_kept():
    assert drivers.with_installed_driver(sa.make_url("postgresql://etl@db/wh")).drivername == "postgresql+psycopg2"
    assert drivers.with_installed_driver(sa.make_url("postgresql+asyncpg://etl@db/wh")).drivername == \
        "postgresql+asyncpg"
    assert drivers.with_installed_driver(sa.make_url("sqlite:///x.db")).drivername == "sqlite"


def test_a_missing_driver_names_the_setting_the_module_and_the_package(monkeypatch):
    monkeypatch.setattr(drivers, "installed", lambda module: False)  # neither psycopg2 nor psycopg
    monkeypatch.setitem(sys.modules, "psycopg", None)  # importing it now fails as if absent
    with pytest.raises(NonRetryableError) as info:
        drivers.require_driver(sa.make_url(f"postgresql://etl:{SECRET}@db/wh"), "RETRAIN_WAREHOUSE_URL")
    message = str(info.value)
    assert message.startswith("RETRAIN_WAREHOUSE_URL: the database driver 'psycopg' for 'postgresql'")
    assert "install 'psycopg[binary]'" in message and SECRET not in message


def test_an_unknown_dialect_is_named():
    with pytest.raises(NonRetryableError, match="no SQLAlchemy dialect installed for 'nosuchdb'"):
        drivers.require_driver(sa.make_url("nosuchdb://h/x"), "paths.warehouse_url")


@pytest.mark.postgres
def test_the_extract_stage_reads_a_bare_postgresql_url(postgres_url, tmp_path):
    seed_canonical(postgres_url)
    done = run_stage(tmp_path, {"RETRAIN_WAREHOUSE_URL": bare(postgres_url)})
    assert done.returncode == 0, done.stderr[-2000:]
    manifest = json.loads((tmp_path / "data" / "extract" / "manifest.json").read_text())
    assert manifest["rows"]["interactions"] == 1


def test_a_stage_whose_driver_is_missing_exits_3_with_one_line(tmp_path):
    if drivers.installed("pg8000"):
        pytest.skip("pg8000 is installed here: this case needs a driver that is not")
    done = run_stage(tmp_path, {"RETRAIN_WAREHOUSE_URL": f"postgresql+pg8000://etl:{SECRET}@db.example/wh"})
    assert done.returncode == 3  # a configuration error: Airflow does not retry it
    assert "RETRAIN_WAREHOUSE_URL: the database driver 'pg8000' for 'postgresql+pg8000' is not installed" \
        in done.stderr
    assert "Traceback" not in done.stderr and SECRET not in done.stdout + done.stderr


@pytest.mark.postgres
def test_the_registry_opens_on_a_bare_postgresql_url(postgres_url, tmp_path):
    with Registry(bare(postgres_url), tmp_path / "artifacts") as registry:
        assert registry.list_versions() == []
        assert repr(registry).startswith("Registry('postgresql+psycopg2://")


@pytest.mark.postgres
def test_demo_data_never_prints_the_password(postgres_url, tmp_path, capsys):
    url = sa.make_url(bare(postgres_url)).set(password=SECRET)  # trust auth: any password is accepted
    params = tmp_path / "params.yaml"
    write_params(tmp_path)
    code = cli.main(["--params", str(params), "demo-data", "--url", url.render_as_string(hide_password=False),
                     "--n-users", "30", "--n-items", "20", "--days", "3"])
    out = capsys.readouterr().out
    assert code == 0
    assert "demo warehouse written to postgresql+psycopg2://postgres:***@" in out and SECRET not in out
