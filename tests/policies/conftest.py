"""Fixtures the policy tests share: the folder `twin eval`'s tests (test_eval.py, test_eval_flow.py) work in."""
from __future__ import annotations

from pathlib import Path

import pytest
from support.eval_work import record_demos


@pytest.fixture(scope="module")
def eval_dir(tmp_path_factory) -> Path:
    """The small splat bundle and two push demonstrations recorded in it (32 px front and wrist cameras), in a
    folder of the test module's own: the ACT and flow modules run on different workers, each records its own."""
    return record_demos(tmp_path_factory.mktemp("eval"))
