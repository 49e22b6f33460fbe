"""Shared test fixtures: paths to the real captures in ../shared/data."""
from __future__ import annotations

import faulthandler
import os
import sys
from pathlib import Path

import pytest
from support.data import SHARED_DATA

# Tests never touch the network: Hugging Face loaders (diffusers, transformers, datasets) stay offline.
for _var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ.setdefault(_var, "1")


HANG_GRACE = 180.0  # seconds past pytest-timeout's limit before a test that it could not interrupt ends the run


@pytest.fixture(autouse=True)
def _hang_guard(request):
    """The last line of defence against a hung test: pytest-timeout interrupts with SIGALRM, which a call blocked
    in C (or inside Playwright's greenlets) may never notice; then every thread's stack is printed and the run
    exits non-zero, instead of silently using up CI's whole time budget."""
    limit = float(request.config.getoption("timeout", None) or 0)
    if limit > 0:
        faulthandler.dump_traceback_later(limit + HANG_GRACE, exit=True, file=sys.__stderr__)
    yield
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    assert SHARED_DATA.exists(), f"real captures expected at {SHARED_DATA} (../shared/data beside the clone)"
    return SHARED_DATA


@pytest.fixture(scope="session")
def bird_dir(shared_data) -> Path:
    return shared_data / "bird"
