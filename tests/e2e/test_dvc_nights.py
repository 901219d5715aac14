"""`make demo` leaves a workspace DVC agrees with: the lock names each night and the params that ran,
`dvc repro` then succeeds, and two nights compare with `dvc metrics diff` on the `nights` branch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipelines.registry.store import Registry
from tests.e2e.helpers import NIGHTS, project_copy

REFUSED_NIGHT = "2026-02-10"  # the demo's degraded night, after NIGHTS
VENV = Path(sys.prefix)


def run(root: Path, *command: str, timeout: int = 900) -> subprocess.CompletedProcess:
    # The demo reads its connections from params.yaml, as a new user's does: none from this shell.
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("AIRFLOW", "RETRAIN_")) and key not in ("DVC_STAGE", "DVC_ROOT")}
    env.update(HF_HUB_OFFLINE="1", PATH=f"{root / '.venv' / 'bin'}{os.pathsep}{env['PATH']}")
    return subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`make demo` (two nights through Airflow, then the degraded night) in a copy of the project."""
    if not (VENV / ".installed").is_file():
        pytest.skip(f"`make demo` runs in the project's virtual environment (`make venv`); {VENV} is not it")
    root = project_copy(tmp_path_factory.mktemp("demo"))
    (root / ".venv").symlink_to(VENV)
    # -o: the linked environment is current; never rebuild it from the copy (it would install the copy).
    done = run(root, "make", "-o", ".venv/.installed", "demo", f"DEMO_DATES={' '.join(NIGHTS)}",
               f"DEMO_REFUSED_DATE={REFUSED_NIGHT}")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return root


@pytest.mark.slow
def test_the_lock_names_the_last_night_and_the_params_that_ran(demo: Path) -> None:
    lock = yaml.safe_load((demo / "dvc.lock").read_text())["stages"]
    assert sorted(lock) == sorted(["extract", "validate", "profiles", "finetune", "evaluate", "promote", "publish"])
    assert {name: stage["cmd"].split()[-1] for name, stage in lock.items()} == dict.fromkeys(lock, REFUSED_NIGHT)
    assert lock["extract"]["params"]["params.yaml"]["run.logical_date"] == REFUSED_NIGHT
    ran = lock["finetune"]["params"]["params.yaml"]["finetune"]
    assert (ran["epochs"], ran["warm_start"]) == (1, False), "the lock must hold the degraded params that ran"
    assert yaml.safe_load((demo / "params.yaml").read_text())["run"]["logical_date"] == REFUSED_NIGHT
    assert "params.operator" not in " ".join(os.listdir(demo / ".dvc" / "tmp")), "params.yaml was not restored"


@pytest.mark.slow
def test_status_names_only_the_params_the_workspace_no_longer_matches(demo: Path) -> None:
    done = run(demo, "dvc", "status", "--json")
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    assert sorted(status) == ["finetune", "promote"], status  # both record finetune's params
    assert status["finetune"] == [{"changed deps": {"params.yaml": {"finetune": "modified"}}}]


@pytest.mark.slow
def test_the_nights_branch_holds_each_night_and_compares_them(demo: Path) -> None:
    log = run(demo, "git", "log", "--first-parent", "--format=%s", "nights").stdout.splitlines()
    # The first night's parent is the code's commit ("project"), the next ones' the night before.
    assert [line.split(":")[0] for line in log] == [f"night {night}" for night in (REFUSED_NIGHT, *NIGHTS[::-1])] + [
        "project"]
    with Registry(f"sqlite:///{demo}/state/registry.db", demo / "state/artifacts") as registry:
        second_blessed = registry.get(2).blessed  # the gate's call on the tiny demo's second night
    served = 2 if second_blessed else 1
    assert log[2].endswith("PROMOTED, served v1")
    assert log[1].endswith(f"{'PROMOTED' if second_blessed else 'REFUSED'}, served v{served}")
    assert log[0].endswith(f"REFUSED, served v{served}")
    assert run(demo, "git", "status", "--porcelain", "--untracked-files=no").stdout.split() == ["M", "params.yaml"]
    assert yaml.safe_load(run(demo, "git", "show", "nights~1:params.yaml").stdout)["run"]["logical_date"] == NIGHTS[1]

    done = run(demo, "dvc", "metrics", "diff", "nights~2", "nights~1", "--json")
    assert done.returncode == 0, done.stderr
    ndcg = json.loads(done.stdout)["reports/evaluate/metrics.json"]["candidate.ndcg@10"]
    assert ndcg["old"] != ndcg["new"] and 0 < ndcg["old"] < 1 and 0 < ndcg["new"] < 1
    plots = run(demo, "dvc", "plots", "diff", "nights~1", "nights", "--json")
    assert plots.returncode == 0, plots.stderr
    assert "reports/finetune/curve.csv" in plots.stdout

    with Registry(f"sqlite:///{demo}/state/registry.db", demo / "state/artifacts") as registry:
        commits = [registry.get(version).git_commit for version in (1, 2, 3)]
    assert not any(commit.endswith("-dirty") for commit in commits), "the night's date is no change of the code"


@pytest.mark.slow
def test_dvc_repro_after_the_demo_reruns_what_changed_and_leaves_status_clean(demo: Path) -> None:
    done = run(demo, "dvc", "repro")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for skipped in ("extract", "validate", "profiles"):
        assert f"Stage '{skipped}' didn't change, skipping" in done.stdout
    assert f"python -m tasks.finetune --logical-date {REFUSED_NIGHT}" in done.stdout
    assert "Data and pipelines are up to date." in run(demo, "dvc", "status").stdout
    with Registry(f"sqlite:///{demo}/state/registry.db", demo / "state/artifacts") as registry:
        rerun = registry.get(4)
    assert rerun.run_date == REFUSED_NIGHT and rerun.params["epochs"] != 1, "repro retrains with params.yaml's finetune"
