"""``retrain doctor``: passes on a working project, and names each planted mistake."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from pipelines.config import laid_over
from pipelines.core.io import sha256_file
from tasks.doctor import run_checks
from tasks import cli
from tests.e2e.helpers import tiny_project
from tests.reliability.test_operator_mistakes import corrupt_base_model

CHECKS = ["params", "warehouse", "registry", "artifact store", "DVC cache", "DVC remote", "base model", "device",
          "Airflow connections"]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    """A tiny project whose warehouse exists and whose registry was initialised."""
    root = tmp_path_factory.mktemp("doctor")
    params, params_file = tiny_project(root)
    assert cli.main(["--params", str(params_file), "registry", "init"]) == 0
    return params, params_file


def connections(params: dict) -> dict[str, str]:
    """The Airflow connections as a deployment hands them over (no Airflow lookup needed)."""
    return {"AIRFLOW_CONN_WAREHOUSE": params["paths"]["warehouse_url"],
            "AIRFLOW_CONN_REGISTRY": params["paths"]["registry_url"], "PATH": "/usr/bin:/bin"}


def by_name(checks) -> dict:
    return {check.name: check for check in checks}


def test_a_working_project_passes_every_check_and_nothing_changes(project, capsys, monkeypatch):
    params, params_file = project
    stored = {"warehouse": sha256_file(Path(params["paths"]["warehouse_url"].removeprefix("sqlite:///"))),
              "registry": sha256_file(Path(params["paths"]["registry_url"].removeprefix("sqlite:///")))}
    checks = run_checks(params_file, params_file.parent, connections(params))
    assert [check.name for check in checks] == CHECKS
    assert all(check.ok for check in checks), [check.line() for check in checks if not check.ok]
    assert "interactions, items, users" in by_name(checks)["warehouse"].detail
    assert "schema revision" in by_name(checks)["registry"].detail
    assert stored == {"warehouse": sha256_file(Path(params["paths"]["warehouse_url"].removeprefix("sqlite:///"))),
                      "registry": sha256_file(Path(params["paths"]["registry_url"].removeprefix("sqlite:///")))}
    assert not list(params_file.parent.rglob(".retrain-doctor-*"))  # every probe file removed

    for name, value in connections(params).items():
        monkeypatch.setenv(name, value)
    assert cli.main(["--params", str(params_file), "doctor"]) == 0
    out = capsys.readouterr().out
    assert out.count("\nOK   ") + out.startswith("OK   ") == len(CHECKS) and "9 of 9 checks passed" in out


NOT_CHECKED = {name: "not checked" for name in CHECKS if name not in ("params", "Airflow connections")}
PLANTED: dict[str, tuple[dict, dict, dict[str, str]]] = {
    # case: (params laid over, environment laid over, each check that must fail: what its line says)
    "params": ({"finetune": {"epochs": 0}}, {}, {"params": "finetune.epochs", **NOT_CHECKED}),
    "warehouse_missing": ({}, {"AIRFLOW_CONN_WAREHOUSE": "sqlite:////nonexistent/warehouse.db"},
                          {"warehouse": "no such SQLite file"}),
    "warehouse_table": ({"extract": {"mapping": {"items": {"table": "catalog_items"}}}}, {},
                        {"warehouse": "table 'catalog_items' not found"}),
    "registry": ({}, {"AIRFLOW_CONN_REGISTRY": "sqlite:////nonexistent/registry.db"},
                 {"registry": "does not exist yet: run `retrain registry init`"}),
    "artifact_store": ({"paths": {"artifact_store": "/proc/version/artifacts"}}, {},
                       {"artifact store": "is not a directory"}),
    "base_model": ({"finetune": {"base_model": "/nonexistent/model"}}, {},
                   {"base model": "not a local Hugging Face model directory"}),
    "base_model_corrupt": ({"finetune": {"base_model": "{root}/corrupt-model"}}, {},
                           {"base model": "Error while deserializing header"}),
    "device": ({"finetune": {"device": "cuda"}}, {}, {"device": "sees no CUDA device"}),
    "connection": ({}, {"AIRFLOW_CONN_WAREHOUSE": "ftp://warehouse.example/db"},
                   {"warehouse": "unsupported connection type 'ftp'",
                    "Airflow connections": "unsupported connection type 'ftp'"}),
}


@pytest.mark.parametrize("case", sorted(PLANTED))
def test_each_planted_mistake_is_named(case, project, tmp_path):
    import torch

    params, _ = project
    changes, env, expected = PLANTED[case]
    if case == "device" and torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    planted = laid_over(params, changes)
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(planted).replace("{root}", str(tmp_path)))
    if case == "base_model_corrupt":
        corrupt_base_model(tmp_path)
    checks = by_name(run_checks(params_file, project[1].parent, {**connections(params), **env}))
    failed = {name: check.detail for name, check in checks.items() if not check.ok}
    assert sorted(failed) == sorted(expected), [check.line() for check in checks.values()]
    for name, says in expected.items():
        assert says in failed[name], checks[name].line()


def test_connections_kept_by_airflow_are_found_through_its_own_lookup(project, tmp_path):
    """No AIRFLOW_CONN_* variable: the check asks ``airflow connections get``, which reads Airflow's
    secrets backend (here its local-file backend) before the metadata database."""
    import sys

    from tasks.doctor import check_airflow_connections

    bin_dir = Path(sys.executable).parent
    if not (bin_dir / "airflow").is_file():
        pytest.skip(f"no airflow command beside {sys.executable}")
    params, _ = project
    warehouse = Path(params["paths"]["warehouse_url"].removeprefix("sqlite:///"))
    kept = tmp_path / "connections.json"
    environ = {"PATH": f"{bin_dir}:/usr/bin:/bin", "AIRFLOW_HOME": str(tmp_path / "airflow-home"),
               "AIRFLOW__SECRETS__BACKEND": "airflow.secrets.local_filesystem.LocalFilesystemBackend",
               "AIRFLOW__SECRETS__BACKEND_KWARGS": json.dumps({"connections_file_path": str(kept)}),
               "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}

    kept.write_text(json.dumps({"warehouse": f"sqlite:///{warehouse}"}))
    check = check_airflow_connections(environ)
    assert check.ok, check.line()
    assert f"warehouse from Airflow (sqlite:///{warehouse})" in check.detail
    assert "registry not defined" in check.detail

    kept.write_text(json.dumps({"warehouse": "ftp://etl:Zq8x3-secret@warehouse.example/db"}))
    check = check_airflow_connections(environ)
    assert not check.ok and "unsupported connection type 'ftp'" in check.detail, check.line()
    assert "Zq8x3-secret" not in check.line()
