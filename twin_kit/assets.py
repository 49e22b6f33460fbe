"""Where Twin's top-level `assets/` folder (task objects, the printable marker sheet) is on this machine.

Looked up in order: the folder named by $TWIN_ASSETS; `assets/` beside the packages (a clone or an editable
install); `<prefix>/share/twin/assets` (a wheel that ships them as data files). No imports beyond the stdlib.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from twin_kit.errors import InputError

ENV = "TWIN_ASSETS"


def asset_roots() -> list[Path]:
    """Candidate `assets/` folders, most specific first (an unset variable contributes nothing)."""
    roots = [Path(os.environ[ENV]).expanduser()] if os.environ.get(ENV) else []
    roots.append(Path(__file__).resolve().parents[1] / "assets")
    roots.append(Path(sys.prefix) / "share" / "twin" / "assets")
    return roots


def asset_path(name: str) -> Path:
    """The path of asset `name` (e.g. "objects/cube/cube.urdf"); InputError (one line) when it is nowhere."""
    rel = Path(name)
    if rel.is_absolute() or ".." in rel.parts:
        raise InputError(f"asset name must be relative to assets/, got {name!r}")
    roots = asset_roots()
    for root in roots:
        if (root / rel).exists():
            return root / rel
    raise InputError(f"asset {name} not found in {', '.join(str(r) for r in roots)} "
                     f"(set ${ENV} to the folder holding Twin's assets/)")
