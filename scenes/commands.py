"""scenes' verbs, gathered from the per-area CLI modules (each imports its heavy parts lazily)."""
from __future__ import annotations

import importlib

VERBS = []
for _mod in ("scenes.cli_splat", "scenes.cli_view", "scenes.cli_export"):
    try:
        VERBS.extend(importlib.import_module(_mod).VERBS)
    except ModuleNotFoundError as _e:
        if _e.name != _mod:
            raise
