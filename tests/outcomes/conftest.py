from __future__ import annotations

from pathlib import Path

import pytest

from outcomes.outcome_library import OutcomeLibrary, build_outcome_library


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> OutcomeLibrary:
    """One published library per test module (building it is the slow part)."""
    return build_outcome_library(tmp_path_factory.mktemp("outcome-lib"))


@pytest.fixture
def home_dir(tmp_path: Path) -> Path:
    return tmp_path / "home"
