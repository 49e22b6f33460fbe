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


TESTS = Path(__file__).resolve().parent
# The slowest test files, slowest first (module set-up included; measured with `pytest -n 2 --durations`). `make
# test`'s two workers take whole files in collection order (--dist loadfile --no-loadscope-reorder), so these
# start first rather than finishing the run alone on one worker while the other idles.
SLOW_FIRST = ("policies/test_eval_flow.py", "policies/test_eval.py", "policies/test_record.py", "spatial/test_bird.py",
              "sim/test_robot_visuals.py", "spatial/test_reconstruct.py", "twin_cli/test_probe.py",
              "policies/test_delta_actions.py", "policies/test_train.py", "sim/test_convex_pieces.py",
              "policies/test_export_policy.py", "spatial/test_feedforward_reconstruct.py")

HANG_GRACE = 180.0  # seconds past pytest-timeout's limit before a test that it could not interrupt ends the run


def pytest_collection_modifyitems(config, items):
    """Run the slowest files first (SLOW_FIRST); every other file keeps its place, every test its order."""
    def rank(item) -> int:
        rel = item.path.relative_to(TESTS).as_posix()
        return SLOW_FIRST.index(rel) if rel in SLOW_FIRST else len(SLOW_FIRST)

    items.sort(key=rank)


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
