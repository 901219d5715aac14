"""``retrain registry ...``: list, show, diff, promote, rollback, audit, and their errors."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from pipelines.registry.store import ACTION_FORCE_PROMOTE, ACTION_ROLLBACK, Registry
from tasks import cli
from tasks.common import EXIT_NON_RETRYABLE
from tests.conftest import write_params


@pytest.fixture
def registry_url(database_url: str) -> str:
    return database_url


@pytest.fixture
def params_file(registry_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A registry with v1 blessed, v2 refused by the gate, v3 blessed and champion."""
    monkeypatch.delenv("RETRAIN_REGISTRY_URL", raising=False)
    monkeypatch.setenv("USER", "alice")
    store = tmp_path / "artifacts"
    path = write_params(tmp_path, paths={"registry_url": registry_url, "artifact_store": str(store)})
    with Registry(registry_url, store) as reg:
        for version, blessed in ((1, True), (2, False), (3, True)):
            model_dir = tmp_path / f"m{version}"
            model_dir.mkdir()
            (model_dir / "adapter.safetensors").write_text(f"weights-{version}")
            reg.register(
                model_dir=model_dir, run_date=f"2026-03-0{version}", blessed=blessed,
                reason="passed the gate" if blessed else "ndcg@10 gain -0.020 < 0.0", base_model="minilm-l6",
                data_interval=(f"2026-03-0{version}", f"2026-03-0{version + 1}"),
                params={"lora_rank": 4 * version}, metrics={"candidate": {"ndcg@10": 0.1 + version / 100}},
                lineage={}, git_commit="0123abcd", report_path="reports/evaluate/report.html",
                parent_version=None if version == 1 else version - 1,
            )
    yield path


def run(params: Path, *args: str) -> int:
    return cli.main(["--params", str(params), "registry", *args])


def champion(params: Path) -> int:
    paths = yaml.safe_load(params.read_text())["paths"]
    with Registry(paths["registry_url"], Path(paths["artifact_store"])) as reg:
        return reg.champion().version


def error_lines(err: str) -> list[str]:
    """What the command printed about the failure (log records, if any, are not its message)."""
    assert "Traceback" not in err
    return [line for line in err.splitlines() if line.startswith("retrain registry")]


def test_list_marks_the_champion(params_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(params_file, "list") == 0
    lines = capsys.readouterr().out.splitlines()
    assert re.match(r"\s+3\*\s+2026-03-03\s+blessed\s+0\.1300\s+2\s+passed the gate", lines[3])
    assert re.match(r"\s+2 \s+2026-03-02\s+rejected", lines[2])
    assert lines[-1] == "(* = champion)"


def test_show_prints_the_lineage(params_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(params_file, "show", "2") == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["version"], shown["status"], shown["parent_version"], shown["champion"]) == (2, "rejected", 1, False)
    assert shown["data_interval_start"] == "2026-03-02" and shown["git_commit"] == "0123abcd"


def test_diff_prints_what_changed(params_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(params_file, "diff", "1", "3") == 0
    out = capsys.readouterr().out
    assert "version 1 -> version 3" in out
    assert "  params   lora_rank: 4 -> 12" in out
    assert "  status   champion: false -> true" in out
    assert "  lineage  parent_version: null -> 2" in out

    assert run(params_file, "diff", "1", "3", "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["metrics"]["candidate.ndcg@10"] == {"v1": 0.11, "v2": 0.13}


def test_promote_without_force_explains_the_gate(params_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(params_file, "promote", "1", "--reason", "go back") == 2
    [line] = error_lines(capsys.readouterr().err)
    assert "promote stage promotes blessed candidates" in line and "--force and --reason" in line
    assert champion(params_file) == 3


@pytest.mark.parametrize("reason", [None, "  "])
def test_promote_without_a_reason_is_refused(
    params_file: Path, capsys: pytest.CaptureFixture[str], reason: str | None
) -> None:
    args = ["promote", "2", "--force"] + ([] if reason is None else ["--reason", reason])
    assert run(params_file, *args) == 2
    assert error_lines(capsys.readouterr().err) == [
        "retrain registry promote: --reason is required and must not be empty"
    ]
    assert champion(params_file) == 3


def test_force_promote_then_audit(params_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(params_file, "promote", "2", "--force", "--reason", "v3 breaks cold users") == 0
    assert "version 2 (rejected) is champion; was 3" in capsys.readouterr().out
    assert champion(params_file) == 2

    assert run(params_file, "audit", "--limit", "2") == 0
    rows = capsys.readouterr().out.splitlines()
    assert len(rows) == 3  # header and two entries, newest first
    assert re.search(rf"{ACTION_FORCE_PROMOTE}\s+2\s+3\s+alice\s+v3 breaks cold users$", rows[1])
    assert re.search(r"promote\s+3\s+1\s+pipeline\s+passed the gate$", rows[2])


def test_actor_option_and_fallback(
    params_file: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("USER")
    assert run(params_file, "rollback", "--reason", "nobody logged in") == 0
    assert run(params_file, "promote", "3", "--force", "--reason", "back", "--actor", "oncall-bot") == 0
    capsys.readouterr()

    assert run(params_file, "audit", "--limit", "2") == 0
    rows = capsys.readouterr().out.splitlines()
    assert re.search(r"promote\s+3\s+1\s+oncall-bot\s+back$", rows[1])
    assert re.search(rf"{ACTION_ROLLBACK}\s+1\s+3\s+unknown\s+nobody logged in$", rows[2])


def test_rollback_prints_the_move_and_its_time(params_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(params_file, "rollback", "--reason", "v3 doubles latency") == 0
    out = capsys.readouterr().out
    assert re.fullmatch(r"rolled back: champion 3 -> 1 \(audit entry \d+\) in \d+\.\d ms\n", out)
    assert champion(params_file) == 1

    assert run(params_file, "rollback", "--reason", "again") == EXIT_NON_RETRYABLE
    assert error_lines(capsys.readouterr().err) == [
        "retrain registry rollback: nothing to roll back to: version 1 is the first champion on record"
    ]
    assert champion(params_file) == 1


def test_rollback_to_an_earlier_champion(params_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(params_file, "promote", "2", "--force", "--reason", "try it") == 0
    assert run(params_file, "rollback", "--to", "1", "--reason", "neither 2 nor 3") == 0
    assert "champion 2 -> 1" in capsys.readouterr().out
    assert champion(params_file) == 1


def test_rollback_without_a_reason_is_refused(params_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(params_file, "rollback") == 2
    assert error_lines(capsys.readouterr().err) == [
        "retrain registry rollback: --reason is required and must not be empty"
    ]
    assert champion(params_file) == 3


@pytest.mark.parametrize(
    "args",
    [("show", "42"), ("diff", "1", "42"), ("promote", "42", "--force", "--reason", "typo"),
     ("rollback", "--to", "42", "--reason", "typo")],
)
def test_unknown_version_is_one_clear_line(
    params_file: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...]
) -> None:
    assert run(params_file, *args) == EXIT_NON_RETRYABLE
    assert error_lines(capsys.readouterr().err) == [
        f"retrain registry {args[0]}: model version 42 is not in the registry"
    ]
    assert champion(params_file) == 3


def test_bad_audit_limit_is_one_clear_line(params_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(params_file, "audit", "--limit", "0") == EXIT_NON_RETRYABLE
    assert error_lines(capsys.readouterr().err) == [
        "retrain registry audit: audit log limit must be at least 1, got 0"
    ]


def test_init_creates_the_registry_database_from_the_airflow_connection_and_migrates_it(
        postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    import sqlalchemy as sa

    from tests.conftest import POSTGRES_ADMIN_URL

    name = sa.make_url(postgres_url).database
    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:  # start from no database at all, as a fresh deployment does
        conn.exec_driver_sql(f'DROP DATABASE "{name}"')
    admin.dispose()
    server = sa.make_url(postgres_url)
    monkeypatch.setenv("AIRFLOW_CONN_REGISTRY", json.dumps(
        {"conn_type": "postgres", "host": server.host, "port": server.port, "login": server.username, "schema": name}))
    params = write_params(tmp_path, paths={"registry_url": "sqlite:///unused.db", "artifact_store": str(tmp_path / "a")})

    assert run(params, "init") == 0
    assert f"registry created and ready at postgresql+psycopg2://{server.username}@" in capsys.readouterr().out
    assert run(params, "init") == 0  # again: nothing to create, nothing to migrate
    assert "registry ready at" in capsys.readouterr().out
    with Registry(postgres_url, tmp_path / "a") as registry:
        assert registry.list_versions() == [] and registry.champion() is None
    assert not (tmp_path / "unused.db").exists()
