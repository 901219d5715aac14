"""Stage outputs travel between two working trees through a real S3-compatible DVC remote."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipelines.core.io import NonRetryableError
from pipelines.registry.transfer import pull_stages, push_stage
from deploy.local.s3 import S3Remote, s3_server

DVC_YAML = """stages:
  make:
    cmd: python make.py
    deps: [make.py]
    outs: [data]
    metrics:
      - report.json:
          cache: false
  use:
    cmd: python use.py
    deps: [use.py, data]
    outs: [used.txt]
"""
PARAMS = 'run:\n  logical_date: "2026-01-01"\n'


@pytest.fixture
def remote(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Remote]:
    with s3_server(tmp_path) as server:
        for name, value in server.environment().items():
            monkeypatch.setenv(name, value)
        yield server


def worker_tree(root: Path) -> Path:
    """A DVC project as a worker checks it out: code, dvc.yaml and params, no outputs."""
    root.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=root, check=True)
    (root / "dvc.yaml").write_text(DVC_YAML)
    (root / "params.yaml").write_text(PARAMS)
    (root / "make.py").write_text("import pathlib\npathlib.Path('data').mkdir()\n")
    (root / "use.py").write_text("")
    return root


def run_make(root: Path) -> None:
    (root / "data").mkdir()
    (root / "data" / "rows.csv").write_text("user,item\nu1,i1\n")
    (root / "report.json").write_text(json.dumps({"rows": 1}))


def test_outputs_pushed_by_one_worker_are_pulled_by_another(tmp_path: Path, remote: S3Remote) -> None:
    first, second = worker_tree(tmp_path / "first"), worker_tree(tmp_path / "second")
    run_make(first)
    record = push_stage(first, "make", "2026-02-08", first / "params.yaml")
    assert record["files"] == {"report.json": '{"rows": 1}'} and record["lock"]["outs"][0]["path"] == "data"

    pull_stages(second, json.loads(json.dumps({"make": record})), "2026-02-08")  # as through XCom

    assert (second / "data" / "rows.csv").read_text() == "user,item\nu1,i1\n"
    assert (second / "report.json").read_text() == '{"rows": 1}'
    assert 'logical_date: "2026-02-08"' in (second / "params.yaml").read_text()
    status = subprocess.run([sys.executable, "-m", "dvc", "status", "make"], cwd=second, capture_output=True, text=True)
    assert "up to date" in status.stdout, status.stdout
    local_config = (second / ".dvc" / "config.local").read_text()
    assert remote.endpoint in local_config and "testing" not in local_config, "credentials stay in the environment"


def test_an_input_the_remote_lacks_is_named(tmp_path: Path, remote: S3Remote) -> None:
    first, second = worker_tree(tmp_path / "first"), worker_tree(tmp_path / "second")
    run_make(first)
    record = push_stage(first, "make", "2026-02-08", first / "params.yaml")
    record["lock"]["outs"][0]["md5"] = "0" * 32 + ".dir"  # an output nobody pushed
    with pytest.raises(NonRetryableError, match=r"an input of this stage is missing: data \(from stage make\)"):
        pull_stages(second, {"make": record}, "2026-02-08")


def test_a_record_of_another_night_is_refused(tmp_path: Path, remote: S3Remote) -> None:
    first, second = worker_tree(tmp_path / "first"), worker_tree(tmp_path / "second")
    run_make(first)
    record = push_stage(first, "make", "2026-02-08", first / "params.yaml")
    with pytest.raises(NonRetryableError, match="the record of stage make is for night 2026-02-08, not 2026-02-09"):
        pull_stages(second, {"make": record}, "2026-02-09")


def test_without_a_remote_the_stage_says_how_to_set_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RETRAIN_DVC_REMOTE_URL", raising=False)
    tree = worker_tree(tmp_path / "only")
    run_make(tree)
    with pytest.raises(NonRetryableError, match="set RETRAIN_DVC_REMOTE_URL"):
        push_stage(tree, "make", "2026-02-08", tree / "params.yaml")


def test_the_remote_from_the_environment_is_written_once(tmp_path: Path, remote: S3Remote,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from pipelines.registry import transfer

    tree = worker_tree(tmp_path / "only")
    assert transfer.configure_remote(tree) == "nightly"
    assert transfer.local_remote(tree) == (remote.url, remote.endpoint)
    calls = []
    monkeypatch.setattr(transfer, "run_dvc", lambda *args: calls.append(args))
    assert transfer.configure_remote(tree) == "nightly" and calls == []  # already set: no DVC process
    monkeypatch.setenv("RETRAIN_DVC_REMOTE_URL", "s3://another/bucket")
    transfer.configure_remote(tree)
    assert calls[0][1:] == ("remote", "add", "--local", "--force", "--default", "nightly", "s3://another/bucket")
