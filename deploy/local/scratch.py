"""A scratch copy of the project with tiny params: what the cluster's tests and bench run nights in.

The copy holds the project's files (tracked and new, not ignored) in a fresh git repository with
one commit, so that DVC and the ``nights`` branch work there as in a deployment's checkout, and a
synthetic warehouse small enough for a night to take about a minute on two CPU cores.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

PROJECT_DIR = Path(__file__).resolve().parents[2]
GIT = ["git", "-c", "user.name=retrain", "-c", "user.email=retrain@localhost"]
TINY = {"demo_data": {"n_users": 120, "n_items": 80, "days": 40, "events_per_user_per_day": 0.5},
        "validate": {"min_rows": 200},
        "finetune": {"epochs": 2, "batch_size": 32, "text_refresh_steps": 10}}
TINY_NIGHTS = ("2026-02-08", "2026-02-09")  # the last two days of the tiny warehouse


def project_copy(root: Path) -> Path:
    """The project's files in a fresh git repository at ``root``, params.yaml made tiny; returns ``root``."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                            cwd=PROJECT_DIR, capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = PROJECT_DIR / name
        if source.is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, root / name)
    params = yaml.safe_load((root / "params.yaml").read_text())
    for section, values in TINY.items():
        params[section].update(values)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    subprocess.run([*GIT, "init", "-q"], cwd=root, check=True)
    subprocess.run([*GIT, "add", "-A"], cwd=root, check=True)
    subprocess.run([*GIT, "commit", "-q", "-m", "project"], cwd=root, check=True)
    return root
