"""Fixtures shared by the reliability tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability.night import build_model


@pytest.fixture(scope="session")
def small_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two real small models with different weights (the champion's and tonight's), built once."""
    root = tmp_path_factory.mktemp("models")
    return build_model(root / "a", seed=1), build_model(root / "b", seed=2)
