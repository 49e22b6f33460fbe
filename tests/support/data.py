"""Where the real captures live: ../shared/data beside the clone, or $TWIN_SHARED_DATA."""
from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = Path(os.environ.get("TWIN_SHARED_DATA", REPO.parent / "shared" / "data"))
BIRD = SHARED_DATA / "bird"
