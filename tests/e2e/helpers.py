"""A tiny embedded default: params pointing every path into a temp dir, and a small warehouse."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

from pipelines.datasets.synthetic import generate_warehouse
from tests.conftest import PROJECT_ROOT, project_params

STAGES = ("extract", "validate", "profiles", "finetune", "evaluate", "promote", "publish")
NIGHTS = ("2026-02-08", "2026-02-09")
GIT = ["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid"]


def rebased_params(root: Path) -> dict:
    """params.yaml with every path under ``root``; each ``*_url`` becomes a SQLite file there."""
    return project_params(root)


def tiny_project(tmp_path: Path) -> tuple[dict, Path]:
    """Writes params.yaml and a small synthetic warehouse under tmp_path; returns (params, file)."""
    params = rebased_params(tmp_path)
    paths = params["paths"]
    params["demo_data"].update(n_users=120, n_items=80, days=40, events_per_user_per_day=0.5, n_households=15)
    params["validate"]["min_rows"] = 200
    # 4 epochs: with the learning rate decaying over the run, 2 epochs of 4 steps leave the model short of MostPop
    params["finetune"].update(epochs=4, batch_size=32, text_refresh_steps=10)
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(params))
    generate_warehouse(paths["warehouse_url"], **params["demo_data"])
    return params, params_file


def project_copy(root: Path) -> Path:
    """The project's files (tracked and new, not ignored) in a fresh git repository, tiny params."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                            cwd=PROJECT_ROOT, capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = PROJECT_ROOT / name
        if source.is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, root / name)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["demo_data"].update(n_users=120, n_items=80, days=40, events_per_user_per_day=0.5)
    params["validate"]["min_rows"] = 200
    params["finetune"].update(epochs=2, batch_size=32, text_refresh_steps=10)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    subprocess.run([*GIT, "init", "-q"], cwd=root, check=True)
    subprocess.run([*GIT, "add", "-A"], cwd=root, check=True)
    subprocess.run([*GIT, "commit", "-q", "-m", "project"], cwd=root, check=True)
    return root
