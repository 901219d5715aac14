"""The finetune stage as it runs at night: crash and resume, warm start, several processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from pipelines.core.io import sha256_file
from tests.e2e.helpers import NIGHTS, tiny_project
from tests.conftest import PROJECT_ROOT

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(PROJECT_ROOT)}


def run(stage: str, params_file: Path, cwd: Path, launcher: list[str] | None = None,
        wait: bool = True) -> subprocess.CompletedProcess | subprocess.Popen:
    cmd = (launcher or [sys.executable]) + ["-m", f"tasks.{stage}", "--params", str(params_file),
                                            "--logical-date", NIGHTS[0]]
    if not wait:
        return subprocess.Popen(cmd, cwd=cwd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A tiny project with extract, validate and profiles done, and settings for short training."""
    root = tmp_path_factory.mktemp("finetune")
    params, params_file = tiny_project(root)
    params["finetune"].update(epochs=5, checkpoint_every_steps=2, patience=10)
    params_file.write_text(yaml.safe_dump(params))
    for stage in ("extract", "validate", "profiles"):
        done = run(stage, params_file, root)
        assert done.returncode == 0, done.stderr[-3000:]
    return root, params, params_file


def trained_weights(root: Path) -> dict[str, str]:
    candidate = root / "models" / "candidate"
    return {name: sha256_file(candidate / name) for name in ("recommender.safetensors", "adapter/adapter_model.safetensors")}


def training_report(root: Path) -> dict:
    return json.loads((root / "reports" / "finetune" / "training.json").read_text())


@pytest.mark.slow
def test_sigkill_mid_training_then_rerun_resumes_and_matches_an_uninterrupted_run(project):
    root, params, params_file = project
    done = run("finetune", params_file, root)
    assert done.returncode == 0, done.stderr[-3000:]
    uninterrupted, reference = trained_weights(root), training_report(root)
    assert not any(Path(params["paths"]["checkpoints"]).glob("*/latest"))  # cleaned up after success

    process = run("finetune", params_file, root, wait=False)
    deadline = time.monotonic() + 300
    checkpoint = None
    while time.monotonic() < deadline and process.poll() is None:
        found = list(Path(params["paths"]["checkpoints"]).glob("*/latest/state.json"))
        try:
            state = json.loads(found[0].read_text()) if found else {}
        except (FileNotFoundError, json.JSONDecodeError):  # the next checkpoint was renamed into place meanwhile
            state = {}
        if state.get("steps", 0) >= 4 and state.get("top"):  # an epoch's weights are kept for averaging
            checkpoint = found[0]
            break
        time.sleep(0.05)
    assert checkpoint is not None, "no checkpoint appeared before training ended"
    os.kill(process.pid, signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL

    resumed = run("finetune", params_file, root)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    report = training_report(root)
    assert report["resumed_at_step"] >= 4
    assert report["steps"] == reference["steps"]
    assert report["best_valid_ndcg@10"] == pytest.approx(reference["best_valid_ndcg@10"], abs=1e-6)
    assert report["averaged_epochs"] == reference["averaged_epochs"]
    assert report["weight_averaging_valid_ndcg@10"] == pytest.approx(reference["weight_averaging_valid_ndcg@10"])
    assert trained_weights(root) == uninterrupted  # deterministic CPU kernels: the very same weights


@pytest.mark.slow
def test_two_processes_train_with_ddp_on_cpu(project):
    root, _, params_file = project
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29531"]
    done = run("finetune", params_file, root, launcher=launcher)
    assert done.returncode == 0, done.stderr[-3000:]
    report = training_report(root)
    assert report["processes"] == 2 and report["device"] == "cpu"
    assert (root / "models" / "candidate" / "adapter" / "adapter_model.safetensors").is_file()
    assert "2 process(es)" in done.stderr
