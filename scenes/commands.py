"""scenes' verbs: `twin splat`, `twin render` (configs only; each imports its heavy parts lazily).

`twin view` is registered by sim (it adds --sim); its static part is scenes.viewer.cli.run_view. `twin export`
is registered by policies (it adds --task); its scene part is scenes.export.cli.run_export.
"""
from __future__ import annotations

from scenes.splats.cli import VERBS as _SPLATS

VERBS = [*_SPLATS]
