"""`retrain reproduce V` on a real git + DVC project: a night, then its restoration and rerun."""

from __future__ import annotations

import importlib
import shutil
from pathlib import Path

import pytest
import yaml

from pipelines.registry.store import Registry
from pipelines.datasets.synthetic import generate_warehouse
from tasks.cli import main as retrain
from tests.e2e.helpers import NIGHTS, STAGES, project_copy

NIGHT = NIGHTS[0]


@pytest.fixture(scope="module")
def night(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One night through promote in a DVC project; the working directory is the project."""
    root = project_copy(tmp_path_factory.mktemp("project"))
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        params = yaml.safe_load(Path("params.yaml").read_text())
        Path("warehouse").mkdir()
        generate_warehouse(params["paths"]["warehouse_url"], **params["demo_data"])
        for stage in STAGES[:STAGES.index("promote") + 1]:
            module = importlib.import_module(f"tasks.{stage}")
            assert module.main(["--params", "params.yaml", "--logical-date", NIGHT]) == 0, stage
    return root


@pytest.mark.slow
def test_promote_records_the_night_in_dvc(night: Path) -> None:
    with Registry(f"sqlite:///{night}/state/registry.db", night / "state/artifacts") as registry:
        version = registry.get(1)
    assert version.lineage["dvc_lock"] == (night / "dvc.lock").read_text()
    assert len(version.lineage["dvc_lock_sha256"]) == 64
    assert any((night / ".dvcstore").rglob("*")), "the night was not pushed to the remote"


@pytest.mark.slow
def test_reproduce_restores_from_the_remote_and_every_hash_matches(
        night: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(night)
    shutil.rmtree(night / ".dvc" / "cache")  # only the remote has the night now
    shutil.rmtree(night / "models")  # and the workspace has moved on

    code = retrain(["reproduce", "1", "--from", "extract"])

    out = capsys.readouterr().out
    assert code == 0, out
    for what in ("restored model vs registered artifact", "extract rerun", "validate rerun", "profiles rerun",
                 "finetune rerun"):
        assert f"{what}" in out
    assert "DIFFERS" not in out and "reproduced: every hash matches" in out
    assert not (night / "state" / "reproduce" / "v1").exists(), "the scratch worktree was left behind"


@pytest.mark.slow
def test_reproduce_without_the_data_fails_clearly(
        night: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(night)
    shutil.rmtree(night / ".dvc" / "cache", ignore_errors=True)
    shutil.move(night / ".dvcstore", night / "dvcstore-moved")
    try:
        code = retrain(["reproduce", "1"])
    finally:
        shutil.move(night / "dvcstore-moved", night / ".dvcstore")
    assert code != 0
    assert "version 1's outputs could not be restored from the DVC cache or the remote" in capsys.readouterr().err


@pytest.mark.slow
def test_reproduce_an_unknown_version_is_a_clear_error(
        night: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(night)
    assert retrain(["reproduce", "99"]) != 0
    assert "99" in capsys.readouterr().err
