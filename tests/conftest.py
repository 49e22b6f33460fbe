"""Shared test fixtures: paths to the real captures in ../shared/data."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("TWIN_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    assert SHARED_DATA.exists(), f"real captures expected at {SHARED_DATA} (../shared/data beside the clone)"
    return SHARED_DATA


@pytest.fixture(scope="session")
def bird_dir(shared_data) -> Path:
    return shared_data / "bird"
