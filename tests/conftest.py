"""Shared test fixtures: paths to the real captures in ../shared/data."""
from __future__ import annotations

from pathlib import Path

import pytest
from support.data import SHARED_DATA


@pytest.fixture(scope="session")
def shared_data() -> Path:
    assert SHARED_DATA.exists(), f"real captures expected at {SHARED_DATA} (../shared/data beside the clone)"
    return SHARED_DATA


@pytest.fixture(scope="session")
def bird_dir(shared_data) -> Path:
    return shared_data / "bird"
