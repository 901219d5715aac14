"""The night's record: params.yaml moved to the night, the params that ran swapped in while DVC reads
them, and the night as a commit on the `nights` branch that touches neither HEAD, index nor tree."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from pipelines.core.io import NonRetryableError
from pipelines.registry.nights import (NIGHTLY_IDENTITY, SAVED_PARAMS, commit_night, params_in_place,
                                       restore_operator_params, set_night_date, uncached_outputs)
from tests.conftest import PROJECT_ROOT

PARAMS = """# the project's params
run:
  # the night dvc repro reproduces
  logical_date: "2026-03-02"  # kept comment
paths:
  logical_date: not-this-one
"""


def test_set_night_date_edits_one_line_and_keeps_comments(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(PARAMS)
    assert set_night_date(params, "2026-02-09") is True
    assert params.read_text() == PARAMS.replace('"2026-03-02"', '"2026-02-09"')
    assert set_night_date(params, "2026-02-09") is False  # already the night: nothing written


@pytest.mark.parametrize("value", ["2026-03-02", "'2026-03-02'"])
def test_set_night_date_reads_any_yaml_scalar(tmp_path: Path, value: str) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(f"run:\n  logical_date: {value}\nextract: {{}}\n")
    set_night_date(params, "2026-01-05")
    assert yaml.safe_load(params.read_text()) == {"run": {"logical_date": "2026-01-05"}, "extract": {}}


@pytest.mark.parametrize("text", ["extract: {}\n", "run:\n  other: 1\nextract:\n  logical_date: x\n",
                                  "run: {logical_date: '2026-03-02'}\n"])
def test_set_night_date_without_an_editable_line_names_what_to_add(tmp_path: Path, text: str) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(text)
    with pytest.raises(NonRetryableError, match=r"params.yaml needs a top-level `run:` section"):
        set_night_date(params, "2026-01-05")
    assert params.read_text() == text


def test_params_that_ran_are_in_place_only_while_dvc_reads_them(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text(PARAMS)
    with params_in_place(tmp_path, {"run": {"logical_date": "2026-02-10"}, "finetune": {"epochs": 1}}):
        assert yaml.safe_load((tmp_path / "params.yaml").read_text())["finetune"] == {"epochs": 1}
    assert (tmp_path / "params.yaml").read_text() == PARAMS
    assert not (tmp_path / SAVED_PARAMS).exists()


def test_a_swap_left_by_a_killed_recording_is_put_back(tmp_path: Path) -> None:
    (tmp_path / SAVED_PARAMS).parent.mkdir(parents=True)
    (tmp_path / SAVED_PARAMS).write_text(PARAMS)  # what the killed process had saved
    (tmp_path / "params.yaml").write_text("finetune: {epochs: 1}\n")  # and had swapped in
    restore_operator_params(tmp_path)
    assert (tmp_path / "params.yaml").read_text() == PARAMS
    with params_in_place(tmp_path, {"run": {}}):  # the next recording restores first, then swaps
        pass
    assert (tmp_path / "params.yaml").read_text() == PARAMS


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A git project with one commit, a dvc.yaml with a `cache: false` metric, and no git identity."""
    monkeypatch.setenv("HOME", str(tmp_path))  # no user config
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for name in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL", "EMAIL"):
        monkeypatch.delenv(name, raising=False)
    root = tmp_path / "project"
    root.mkdir()
    (root / "dvc.yaml").write_text("stages:\n  evaluate:\n    cmd: x\n    metrics:\n"
                                   "      - reports/metrics.json:\n          cache: false\n")
    (root / "params.yaml").write_text(PARAMS)
    git(root, "init", "-q")
    git(root, "config", "user.useConfigOnly", "true")  # as on a worker without a configured identity
    git(root, "add", "-A")
    subprocess.run(["git", "-c", "user.name=dev", "-c", "user.email=dev@example.invalid", "commit", "-q", "-m", "code"],
                   cwd=root, check=True)
    return root


def night_files(root: Path, ndcg: float) -> None:
    (root / "reports").mkdir(exist_ok=True)
    (root / "reports" / "metrics.json").write_text(f'{{"ndcg@10": {ndcg}}}')
    (root / "dvc.lock").write_text(f"schema: '2.0'\nstages: {{}}  # {ndcg}\n")


def test_each_night_is_a_commit_on_nights_and_nothing_else_moves(repo: Path) -> None:
    head, status = git(repo, "rev-parse", "HEAD"), git(repo, "status", "--porcelain")
    night_files(repo, 0.1)
    first = commit_night(repo, "2026-02-08", "run: {logical_date: '2026-02-08'}\n", "night 2026-02-08: PROMOTED")
    night_files(repo, 0.2)
    second = commit_night(repo, "2026-02-09", "run: {logical_date: '2026-02-09'}\n", "night 2026-02-09: REFUSED")

    assert git(repo, "rev-parse", "nights") == second
    assert git(repo, "rev-parse", f"{second}^1", f"{second}^2").split() == [first, head]
    assert git(repo, "rev-parse", "HEAD") == head and git(repo, "branch", "--show-current") in ("master", "main")
    assert git(repo, "show", "nights~1:reports/metrics.json") == '{"ndcg@10": 0.1}'
    assert git(repo, "show", "nights:params.yaml") == "run: {logical_date: '2026-02-09'}"
    assert git(repo, "show", "nights:dvc.yaml") == git(repo, "show", "HEAD:dvc.yaml")  # the code's tree
    assert git(repo, "log", "-1", "--format=%an <%ae>", "nights") == (
        f"{NIGHTLY_IDENTITY['GIT_AUTHOR_NAME']} <{NIGHTLY_IDENTITY['GIT_AUTHOR_EMAIL']}>")
    night_files(repo, 0.0)  # the files written above are the workspace's own, untracked
    assert git(repo, "status", "--porcelain") == "\n".join(filter(None, [status, "?? dvc.lock", "?? reports/"]))


def test_outside_git_the_night_is_not_committed(tmp_path: Path) -> None:
    night_files(tmp_path, 0.1)
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    assert commit_night(tmp_path, "2026-02-08", "", "night") is None


def test_the_uncached_outputs_are_every_cache_false_file_of_the_project() -> None:
    outputs = set(uncached_outputs(PROJECT_ROOT))
    assert {"reports/evaluate/metrics.json", "reports/finetune/training.json", "reports/finetune/curve.csv",
            "reports/validate/history.csv", "reports/evaluate/report.html"} <= outputs
    assert not any(path.startswith(("data/", "models/")) for path in outputs)
