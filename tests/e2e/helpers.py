"""A tiny embedded default: params pointing every path into a temp dir, and a small warehouse."""

from __future__ import annotations

from pathlib import Path

import yaml

from pipelines.datasets.synthetic import generate_warehouse
from deploy.local.scratch import project_copy  # noqa: F401 - shared by the e2e tests
from tests.conftest import project_params

STAGES = ("extract", "validate", "profiles", "finetune", "evaluate", "promote", "publish")
NIGHTS = ("2026-02-08", "2026-02-09")


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

