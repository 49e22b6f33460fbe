"""scenes' verbs: `twin splat`, `twin render`, `twin export` (configs only; each imports its heavy parts lazily).

`twin view` is registered by sim (it adds --sim); its static part is scenes.viewer.cli.run_view.
"""
from __future__ import annotations

from scenes.export.cli import VERBS as _EXPORT
from scenes.splats.cli import VERBS as _SPLATS

VERBS = [*_SPLATS, *_EXPORT]
