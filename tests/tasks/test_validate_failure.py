"""What a failed validation leaves behind: the quarantine, the notification, and the operator's override."""

from __future__ import annotations

import json
import logging
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipelines.core.io import read_json, sha256_dir, sha256_file
from pipelines.registry.store import Registry
from pipelines.validate.acceptance import ACTION_ACCEPT_ANOMALY
from pipelines.validate.validation import require_validated
from tasks.cli import main as cli_main
from tasks.common import EXIT_NON_RETRYABLE, EXIT_OK
from tasks.validate import main
from tests.conftest import PROJECT_ROOT, write_params as write_project_params
from tests.tasks.test_validate_task import LOGICAL_DATE, VALIDATE_PARAMS, write_extract

RATING = {"expectation": "expect_column_values_to_be_between", "column": "rating"}
REASON = "partner resent one rating on a 0-10 scale; fixed upstream"


def write_params(root: Path, *, accept: list[dict[str, Any]] | None = None,
                 quarantine: str | None = None) -> Path:
    """Every path under ``root``, the quarantine in ``root/quarantine`` unless given (relative or absolute)."""
    paths = {"extract": str(root / "extract"), "validate": str(root / "validate"),
             "quarantine": quarantine or str(root / "quarantine")}
    return write_project_params(root, paths=paths, validate={**VALIDATE_PARAMS, "accept": accept or []})


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A registry with a champion, a warehouse file and a bad extract (one rating of 9); the root."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "weights.bin").write_bytes(b"champion")
    with Registry(f"sqlite:///{tmp_path / 'registry.db'}", tmp_path / "artifacts") as registry:
        registry.register(model_dir=model, run_date="2026-03-01", blessed=True, reason="blessed", base_model="m",
                          data_interval=("2026-02-28T00:00:00", "2026-03-01T00:00:00"), params={}, metrics={},
                          lineage={}, git_commit="0" * 40, report_path="r")
    (tmp_path / "warehouse.db").write_bytes(b"warehouse rows")
    write_extract(tmp_path / "extract", bad_rating=True)
    write_params(tmp_path)
    return tmp_path


def run(root: Path, *extra: str) -> int:
    return main(["--logical-date", LOGICAL_DATE, "--params", str(root / "params.yaml"), *extra])


def stored(root: Path) -> dict[str, str]:
    return {"registry": sha256_file(root / "registry.db"), "artifacts": sha256_dir(root / "artifacts"),
            "warehouse": sha256_file(root / "warehouse.db"), "extract": sha256_dir(root / "extract")}


def audit(root: Path) -> list[Any]:
    with Registry(f"sqlite:///{root / 'registry.db'}", root / "artifacts") as registry:
        return [e for e in registry.audit_log() if e.action == ACTION_ACCEPT_ANOMALY]


def error_text(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)


# --- quarantine ---------------------------------------------------------------------------------


def test_failure_quarantines_the_extract_and_report_and_changes_nothing_stored(
        project: Path, caplog: pytest.LogCaptureFixture) -> None:
    before = stored(project)

    with caplog.at_level(logging.INFO):
        assert run(project) == EXIT_NON_RETRYABLE

    entry = project / "quarantine" / LOGICAL_DATE
    assert sha256_dir(entry / "extract") == sha256_dir(project / "extract")  # every file, whatever the layout
    assert sha256_dir(entry / "validate") == sha256_dir(project / "validate")
    assert (entry / "validate" / "data_docs" / "index.html").is_file()
    manifest = read_json(entry / "manifest.json")
    assert manifest["logical_date"] == LOGICAL_DATE
    assert [(f["expectation"], f["column"]) for f in manifest["failures"]] == [tuple(RATING.values())]
    assert set(manifest["files"]) >= {"extract/users.parquet", "validate/result.json"}
    assert any(name.startswith("extract/interactions") for name in manifest["files"])
    assert [p.name for p in (project / "quarantine").iterdir()] == [LOGICAL_DATE]  # no staging left over
    message = error_text(caplog)
    assert "interactions.rating" in message and "0.5 and 5.0" in message  # the one-screen summary
    assert f"quarantined: {entry.resolve()}" in message
    assert stored(project) == before
    assert audit(project) == []


def test_a_rerun_of_the_night_replaces_its_quarantine_entry(project: Path) -> None:
    assert run(project) == EXIT_NON_RETRYABLE
    entry = project / "quarantine" / LOGICAL_DATE
    (entry / "extract" / "stale.txt").write_text("from the first run")
    first = read_json(entry / "manifest.json")["quarantined_at"]

    assert run(project) == EXIT_NON_RETRYABLE

    assert not (entry / "extract" / "stale.txt").exists()
    assert read_json(entry / "manifest.json")["quarantined_at"] >= first
    assert (entry / "validate" / "result.json").is_file()
    assert sorted(p.name for p in (project / "quarantine").iterdir()) == [LOGICAL_DATE]


def test_a_relative_quarantine_sits_beside_the_params(project: Path) -> None:
    write_params(project, quarantine="state/quarantine")

    assert run(project) == EXIT_NON_RETRYABLE

    assert (project / "state" / "quarantine" / LOGICAL_DATE / "validate" / "result.json").is_file()


def test_a_passing_night_is_not_quarantined(project: Path) -> None:
    write_extract(project / "extract")

    assert run(project) == EXIT_OK

    assert not (project / "quarantine").exists()


def test_the_shipped_params_name_the_quarantine_and_an_empty_accept_list() -> None:
    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    assert params["paths"]["quarantine"] == "state/quarantine"
    assert params["validate"]["accept"] == []


# --- the operator's override ----------------------------------------------------------------------


def test_an_accepted_anomaly_lets_the_night_go_on_and_is_recorded_and_audited(project: Path) -> None:
    write_params(project, accept=[{**RATING, "logical_date": LOGICAL_DATE, "reason": REASON, "actor": "alice"}])
    before = stored(project)

    assert run(project) == EXIT_OK

    out = project / "validate"
    result = read_json(out / "result.json")
    assert result["success"] is True and result["failures"] == []
    assert [(a["expectation"], a["column"], a["acceptance"]["reason"]) for a in result["accepted"]] == [
        (RATING["expectation"], "rating", REASON)]
    manifest = read_json(out / "manifest.json")
    assert manifest["success"] is True and manifest["accepted"][0]["acceptance"]["actor"] == "alice"
    require_validated(out, project / "extract")  # what the next stage checks
    [entry] = audit(project)
    assert (entry.actor, entry.reason, entry.version) == ("alice", REASON, None)
    assert entry.details["logical_date"] == LOGICAL_DATE and entry.details["column"] == "rating"
    assert not (project / "quarantine").exists()
    with Registry(f"sqlite:///{project / 'registry.db'}", project / "artifacts") as registry:
        assert registry.champion().version == 1  # the audit entry moved nothing
    assert stored(project)["artifacts"] == before["artifacts"]


def test_an_acceptance_without_a_reason_is_refused(project: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_params(project, accept=[{**RATING, "logical_date": LOGICAL_DATE, "reason": "  "}])

    with caplog.at_level(logging.ERROR):
        assert run(project) == EXIT_NON_RETRYABLE

    assert "validate.accept[0]: reason is mandatory" in error_text(caplog)
    assert not (project / "validate").exists()
    assert audit(project) == []


def test_an_acceptance_for_another_night_does_nothing(project: Path) -> None:
    write_params(project, accept=[{**RATING, "logical_date": "2026-03-01", "reason": REASON}])

    assert run(project) == EXIT_NON_RETRYABLE

    result = read_json(project / "validate" / "result.json")
    assert result["success"] is False and len(result["failures"]) == 1
    assert "accepted" not in result
    assert (project / "quarantine" / LOGICAL_DATE).is_dir()
    assert audit(project) == []


def test_an_acceptance_that_matches_nothing_is_reported_and_the_failure_stands(
        project: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_params(project, accept=[{"expectation": "expect_column_values_to_not_be_null", "column": "user_id",
                                   "logical_date": LOGICAL_DATE, "reason": REASON}])

    with caplog.at_level(logging.WARNING):
        assert run(project) == EXIT_NON_RETRYABLE

    result = read_json(project / "validate" / "result.json")
    assert result["success"] is False and result["accepted"] == []
    assert [a["column"] for a in result["unmatched_acceptances"]] == ["user_id"]
    assert any("matches no failed expectation" in r.getMessage() for r in caplog.records)
    assert audit(project) == []


@pytest.mark.parametrize("entry, complaint", [
    ({"column": "rating", "logical_date": LOGICAL_DATE, "reason": REASON}, "expectation is mandatory"),
    ({**RATING, "logical_date": "03/02/2026", "reason": REASON}, "logical_date must be YYYY-MM-DD"),
    ({**RATING, "logical_date": LOGICAL_DATE, "reason": REASON, "until": "never"}, "unknown keys ['until']"),
])
def test_a_malformed_acceptance_is_a_configuration_error(
        project: Path, caplog: pytest.LogCaptureFixture, entry: dict[str, Any], complaint: str) -> None:
    write_params(project, accept=[entry])

    with caplog.at_level(logging.ERROR):
        assert run(project) == EXIT_NON_RETRYABLE

    assert complaint in error_text(caplog)


# --- the retrain CLI ------------------------------------------------------------------------------


def test_retrain_validate_help_explains_suite_thresholds_override_and_quarantine(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli_main(["validate", "--help"])
    assert exited.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for phrase in ("Great Expectations suite", "params.yaml under validate.*", "max_user_share",
                   "--accept EXPECTATION[:COLUMN]", "--reason", "validate.accept", "audit log",
                   "paths.quarantine/<date>/", "exit code 3"):
        assert phrase in text, phrase


def test_retrain_validate_accept_needs_a_reason(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli_main(["--params", str(project / "params.yaml"), "validate", "--logical-date", LOGICAL_DATE,
                     "--accept", "expect_column_values_to_be_between:rating"])

    assert code == 2 and "--reason" in capsys.readouterr().err
    assert not (project / "validate").exists()


def test_retrain_validate_accept_with_a_reason_accepts_for_that_night(project: Path) -> None:
    code = cli_main(["--params", str(project / "params.yaml"), "validate", "--logical-date", LOGICAL_DATE,
                     "--accept", "expect_column_values_to_be_between:rating", "--reason", REASON, "--actor", "bob"])

    assert code == EXIT_OK
    assert read_json(project / "validate" / "result.json")["accepted"][0]["acceptance"]["actor"] == "bob"
    [entry] = audit(project)
    assert (entry.actor, entry.reason) == ("bob", REASON)


# --- the failure notifier -------------------------------------------------------------------------


@pytest.fixture
def notifier_module(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    if "airflow" not in sys.modules:  # importing Airflow creates $AIRFLOW_HOME/logs
        monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path_factory.mktemp("airflow-home")))
    monkeypatch.syspath_prepend(str(PROJECT_ROOT / "dags"))
    import failure_notifier

    return failure_notifier


def fake_context(message: str) -> dict[str, Any]:
    ti = types.SimpleNamespace(task_id="validate", dag_id="nightly_retrain", try_number=1)
    return {"ti": ti, "ds": LOGICAL_DATE, "run_id": "scheduled__2026-03-02", "exception": Exception(message)}


def test_the_notifier_carries_the_quarantined_summary_to_its_sink(
        project: Path, notifier_module: types.ModuleType, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR):
        assert run(project) == EXIT_NON_RETRYABLE
    # What StageOperator puts in its exception: the stage's last output lines.
    tail = "\n".join(error_text(caplog).splitlines()[-20:])
    sink = project / "notifications.jsonl"
    notifier = notifier_module.StageFailureNotifier(sink=str(sink))

    notifier(fake_context(f"validate failed, exit code 3 (not retryable):\n{tail}"))
    notifier(fake_context("validate failed, exit code 3 (not retryable):\nno result anywhere"))

    first, second = (json.loads(line) for line in sink.read_text().splitlines())
    assert first["quarantine"] == str((project / "quarantine" / LOGICAL_DATE).resolve())
    assert (first["task_id"], first["logical_date"]) == ("validate", LOGICAL_DATE)
    assert [(f["expectation"], f["column"]) for f in first["failures"]] == [tuple(RATING.values())]
    assert "interactions.rating: expect_column_values_to_be_between: observed" in first["summary"]
    assert "expected between 0.5 and 5.0" in first["summary"]
    assert "quarantine" not in second and "no result anywhere" in second["summary"]


def test_the_notifier_writes_relative_sinks_under_the_project_dir(
        tmp_path: Path, notifier_module: types.ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RETRAIN_PROJECT_DIR", str(tmp_path / "project"))
    notifier = notifier_module.StageFailureNotifier(project_dir="/nonexistent")

    notifier(fake_context("extract failed, exit code 3 (not retryable):\nwarehouse column ts missing"))

    [line] = (tmp_path / "project" / "state" / "notifications.jsonl").read_text().splitlines()
    assert "warehouse column ts missing" in json.loads(line)["summary"]


def test_registry_record_refuses_champion_actions_and_empty_reasons(project: Path) -> None:
    from pipelines.registry.store import RegistryError

    with Registry(f"sqlite:///{project / 'registry.db'}", project / "artifacts") as registry:
        with pytest.raises(RegistryError, match="written by the registry itself"):
            registry.record("promote", reason=REASON, actor="alice", details={})
        with pytest.raises(RegistryError, match="reason must be a non-empty string"):
            registry.record(ACTION_ACCEPT_ANOMALY, reason=" ", actor="alice", details={})
        assert [e.action for e in registry.audit_log()] == ["promote"]  # only the fixture's registration
