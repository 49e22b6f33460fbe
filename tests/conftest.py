"""Shared test fixtures: paths to the real captures in ../shared/data."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from support.data import SHARED_DATA

# Tests never touch the network: Hugging Face loaders (diffusers, transformers, datasets) stay offline.
for _var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ.setdefault(_var, "1")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    assert SHARED_DATA.exists(), f"real captures expected at {SHARED_DATA} (../shared/data beside the clone)"
    return SHARED_DATA


@pytest.fixture(scope="session")
def bird_dir(shared_data) -> Path:
    return shared_data / "bird"
