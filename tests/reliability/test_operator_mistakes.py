"""A catalogue of operator mistakes: bad configuration and environment, not bad data.

One tiny project (warehouse, a registry holding a champion, and the night's extract, validation and
profiles) is built per module; each case copies it, makes one mistake (a params value, an
environment variable, a command-line argument), and runs the real stage or ``retrain`` command. A
mistake no retry can fix must exit 3 (Airflow does not retry) with one line naming the setting or
resource and what to do, print no traceback, and leave everything stored as it was. The transient
cases (a server that refuses connections) must exit 1, so that Airflow retries them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipelines.config import laid_over
from pipelines.core.drivers import installed
from pipelines.core.io import sha256_dir
from tasks import cli
from tasks.common import EXIT_NON_RETRYABLE, EXIT_RETRYABLE
from tests.conftest import POSTGRES_ADMIN_URL, skip_or_fail
from tests.e2e.helpers import tiny_project
from tests.reliability.night import run_task
from tests.reliability.test_corrupted_warehouses import NIGHT, Project, _seed_champion, copy_project

POSTGRES = POSTGRES_ADMIN_URL.split("://", 1)[1].rsplit("/", 1)[0]  # user@host:port of the local server


@dataclass(frozen=True)
class Mistake:
    """One operator mistake: what is set wrong, what runs, and what it must say."""

    run: tuple[str, ...]  # ("stage", name) or ("retrain", *arguments)
    expect: str  # text the one-line message must contain
    params: dict[str, dict[str, Any]] = field(default_factory=dict)  # section -> keys laid over params.yaml
    env: dict[str, str] = field(default_factory=dict)
    logical_date: str = NIGHT
    params_text: str | None = None  # replaces params.yaml's text (after ``params``)
    plant: Callable[[Path], None] | None = None  # writes what the mistake needs under the project's root
    code: int = EXIT_NON_RETRYABLE
    needs: str = ""  # "postgres": the local PostgreSQL server; "no-gpu": a machine without CUDA


PG_DRIVER_MISSING = "postgresql+pg8000://etl:Zq8x3-secret@db.example/wh"


def corrupt_base_model(root: Path) -> None:
    """A copy of the shipped base model whose weights file was cut short (a broken download or disk)."""
    from pipelines.model.recommender import resolve_base_model

    copy = root / "corrupt-model"
    shutil.copytree(resolve_base_model("auto"), copy)
    weights = copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])

MISTAKES: dict[str, Mistake] = {
    "warehouse_driver_not_installed": Mistake(
        ("stage", "extract"), "RETRAIN_WAREHOUSE_URL: the database driver 'pg8000'",
        env={"RETRAIN_WAREHOUSE_URL": PG_DRIVER_MISSING}),
    "warehouse_dialect_unknown": Mistake(
        ("stage", "extract"), "no SQLAlchemy dialect installed for 'nosuchdb'",
        env={"RETRAIN_WAREHOUSE_URL": "nosuchdb://etl@db.example/wh"}),
    "warehouse_url_malformed": Mistake(
        ("stage", "extract"), "RETRAIN_WAREHOUSE_URL is not a valid SQLAlchemy URL",
        env={"RETRAIN_WAREHOUSE_URL": "db.example:5432/wh"}),
    "warehouse_connection_type_unsupported": Mistake(
        ("stage", "extract"), "AIRFLOW_CONN_WAREHOUSE: unsupported connection type 'ftp'",
        env={"AIRFLOW_CONN_WAREHOUSE": "ftp://etl@db.example/wh"}),
    "warehouse_host_unknown": Mistake(
        ("stage", "extract"), "the host name does not resolve",
        env={"RETRAIN_WAREHOUSE_URL": "postgresql://etl@no-such-host.invalid:5432/wh"}),
    "warehouse_user_unknown": Mistake(
        ("stage", "extract"), "the user does not exist on the server",
        env={"RETRAIN_WAREHOUSE_URL": f"postgresql://no_such_etl_role@{POSTGRES.split('@', 1)[1]}/postgres"},
        needs="postgres"),
    "warehouse_database_missing": Mistake(
        ("stage", "extract"), "the database does not exist",
        env={"RETRAIN_WAREHOUSE_URL": f"postgresql://{POSTGRES}/no_such_warehouse_db"}, needs="postgres"),
    "warehouse_server_down_is_transient": Mistake(
        ("stage", "extract"), "unreachable after 1 attempt(s)",
        env={"RETRAIN_WAREHOUSE_URL": "postgresql://etl@127.0.0.1:1/wh"},
        params={"extract": {"connect_attempts": 1}}, code=EXIT_RETRYABLE),
    "registry_driver_not_installed": Mistake(
        ("retrain", "registry", "list"), "the registry URL (paths.registry_url or RETRAIN_REGISTRY_URL): "
        "the database driver 'pg8000'", env={"RETRAIN_REGISTRY_URL": PG_DRIVER_MISSING}),
    "registry_database_missing": Mistake(
        ("retrain", "registry", "list"), "(paths.registry_url or RETRAIN_REGISTRY_URL): the database does not exist",
        env={"RETRAIN_REGISTRY_URL": f"postgresql://{POSTGRES}/no_such_registry_db"}, needs="postgres"),
    "registry_database_missing_at_finetune": Mistake(
        ("stage", "finetune"), "(paths.registry_url or RETRAIN_REGISTRY_URL): the database does not exist",
        env={"RETRAIN_REGISTRY_URL": f"postgresql://{POSTGRES}/no_such_registry_db"}, needs="postgres"),
    "gpu_requested_without_one": Mistake(
        ("stage", "finetune"), "finetune.device is 'cuda' but torch", params={"finetune": {"device": "cuda"}},
        needs="no-gpu"),
    "base_model_corrupt": Mistake(
        ("stage", "finetune"), "cannot be loaded (Error while deserializing header",
        params={"finetune": {"base_model": "{root}/corrupt-model", "warm_start": False}}, plant=corrupt_base_model),
    "logical_date_far_in_the_future": Mistake(
        ("stage", "extract"), "the night 2099-01-01 covers [2098-12-31 00:00, 2099-01-01 00:00) UTC, which has not ended",
        logical_date="2099-01-01"),
    "base_model_missing": Mistake(
        ("stage", "finetune"), "is not a local Hugging Face model directory",
        params={"finetune": {"base_model": "/nonexistent/all-MiniLM-L6-v2", "warm_start": False}}),
    # The module's champion is registered bytes, not a model: a night cannot start from it.
    "champion_artifact_not_a_model": Mistake(
        ("stage", "finetune"), "cannot be loaded to start from", params={"finetune": {"warm_start": True}}),
    "params_wrong_type": Mistake(
        ("stage", "finetune"), "finetune.epochs", params={"finetune": {"epochs": "many"}}),
    "params_impossible_value": Mistake(
        ("stage", "finetune"), "finetune.learning_rate", params={"finetune": {"learning_rate": -0.001}}),
    "params_unknown_key": Mistake(
        ("stage", "extract"), "extract.interval_dayz", params={"extract": {"interval_dayz": 1}}),
    "params_file_missing": Mistake(
        ("retrain", "--params", "/nonexistent/params.yaml", "registry", "list"), "/nonexistent/params.yaml"),
    "params_file_not_yaml": Mistake(
        ("stage", "extract"), "params.yaml", params_text="finetune: [epochs: 3\n  learning_rate: {"),
    "params_connect_attempts_zero": Mistake(
        ("stage", "extract"), "extract.connect_attempts", params={"extract": {"connect_attempts": 0}}),
    "warehouse_table_missing": Mistake(
        ("stage", "extract"), "catalog_items",
        params={"extract": {"mapping": {"items": {"table": "catalog_items"}}}}),
    "warehouse_column_missing": Mistake(
        ("stage", "extract"), "item_name",
        params={"extract": {"mapping": {"items": {"columns": {"title": "item_name"}}}}}),
    "logical_date_impossible": Mistake(
        ("stage", "extract"), "--logical-date must be YYYY-MM-DD, got '2026-13-45'", logical_date="2026-13-45"),
}


@pytest.fixture(scope="module")
def night_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny project with a champion and the night's extract, validation and profiles."""
    root = tmp_path_factory.mktemp("operator-base")
    params, params_file = tiny_project(root)
    _seed_champion(params, root)
    for stage in ("extract", "validate", "profiles"):
        assert run_task(stage, params_file, NIGHT) == 0, stage
    return root


def stored(project: Project) -> dict[str, Any]:
    """Digests of everything a failed run must leave as it was."""
    paths = project.paths
    return {**project.stored(), "snapshot": project.snapshot_files(),
            "extract": sha256_dir(Path(paths["extract"])), "profiles": sha256_dir(Path(paths["profiles"]))}


def with_mistake(project: Project, mistake: Mistake) -> None:
    params = laid_over(project.params, mistake.params)
    text = mistake.params_text if mistake.params_text is not None else yaml.safe_dump(params)
    project.params_file.write_text(text.replace("{root}", str(project.root)))
    if mistake.plant is not None:
        mistake.plant(project.root)


def run(mistake: Mistake, project: Project) -> int:
    if mistake.run[0] == "stage":
        return run_task(mistake.run[1], project.params_file, mistake.logical_date)
    arguments = list(mistake.run[1:])
    return cli.main(arguments if arguments[0] == "--params" else ["--params", str(project.params_file), *arguments])


def check_preconditions(mistake: Mistake) -> None:
    if mistake.needs == "postgres":
        import sqlalchemy as sa

        try:
            with sa.create_engine(POSTGRES_ADMIN_URL).connect():
                pass
        except Exception as exc:  # noqa: BLE001 - any failure means "no server here"
            skip_or_fail(f"PostgreSQL not reachable at {POSTGRES_ADMIN_URL}: {type(exc).__name__}")
    if mistake.needs == "no-gpu":
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has a CUDA device: asking for one is no mistake here")
    if "pg8000" in str(mistake.env) and installed("pg8000"):
        pytest.skip("pg8000 is installed here: the case needs a driver that is not")


@pytest.mark.parametrize("case", sorted(MISTAKES))
def test_a_mistake_is_named_once_and_changes_nothing(case, night_base, tmp_path, monkeypatch, capsys, caplog):
    mistake = MISTAKES[case]
    check_preconditions(mistake)
    project = copy_project(night_base, tmp_path / "project")
    with_mistake(project, mistake)
    for name in ("AIRFLOW_CONN_WAREHOUSE", "AIRFLOW_CONN_REGISTRY", "RETRAIN_WAREHOUSE_URL", "RETRAIN_REGISTRY_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in mistake.env.items():
        monkeypatch.setenv(name, value)
    before = stored(project)
    caplog.clear()
    capsys.readouterr()

    code = run(mistake, project)

    said = "\n".join(record.getMessage() for record in caplog.records) + "\n" + capsys.readouterr().err
    assert code == mistake.code, said[-3000:]
    assert mistake.expect in said, said[-3000:]
    if mistake.code == EXIT_NON_RETRYABLE:
        assert "Traceback" not in said, said[-3000:]
    assert "Zq8x3-secret" not in said
    assert stored(project) == before


def start_stage(stage: str, params_file: Path, night: str) -> subprocess.Popen[str]:
    """The stage as Airflow starts it: its own process, in the project's directory."""
    return subprocess.Popen([sys.executable, "-m", f"tasks.{stage}", "--params", str(params_file),
                             "--logical-date", night], cwd=params_file.parent, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "HF_HUB_OFFLINE": "1"})


def test_two_nights_started_at_once_share_the_snapshot_safely_and_a_mixed_up_stage_stops(night_base, tmp_path):
    """Two nights' extracts in the same project at once (the DAG allows one active run; a shell or
    ``dvc repro`` does not): the snapshot lock serialises them, so the snapshot is what two nights
    run one after the other leave; the next stage of the night whose extract was overwritten
    stops (exit 3) naming both nights, and changes nothing."""
    earlier = "2026-02-09"
    reference = copy_project(night_base, tmp_path / "reference")
    assert run_task("extract", reference.params_file, earlier) == 0
    assert run_task("extract", reference.params_file, NIGHT) == 0
    project = copy_project(night_base, tmp_path / "project")

    running = [start_stage("extract", project.params_file, night) for night in (earlier, NIGHT)]
    outputs = [process.communicate(timeout=300)[0] for process in running]

    assert [process.returncode for process in running] == [0, 0], "\n".join(outputs)[-3000:]
    assert project.snapshot_files() == reference.snapshot_files()
    extracted = json.loads((Path(project.paths["extract"]) / "manifest.json").read_text())["logical_date"]
    other = earlier if extracted == NIGHT else NIGHT
    before = stored(project)
    validate = start_stage("validate", project.params_file, other)
    said = validate.communicate(timeout=300)[0]
    assert validate.returncode == EXIT_NON_RETRYABLE, said[-3000:]
    assert extracted in said and other in said and "Traceback" not in said, said[-3000:]
    assert stored(project) == before
