"""The scene bundle: a versioned directory that every stage reads and writes atomically."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from .cameras import Camera
from .errors import InputError

FORMAT_VERSION = 1
SUPPORTED_VERSIONS = (1,)
MANIFEST = "scene.json"
CAMERAS = "cameras.json"


class BundleError(InputError):
    """A bundle that is missing, damaged, or of a version this Twin cannot read."""


@dataclass
class Bundle:
    """An opened bundle: its root, manifest and cameras."""

    root: Path
    manifest: dict
    cameras: list[Camera] = field(default_factory=list)

    def path(self, rel: str) -> Path:
        return self.root / rel

    def has(self, rel: str) -> bool:
        return (self.root / rel).exists()

    @property
    def metric(self) -> bool:
        return bool(self.manifest.get("scale", {}).get("metric", False))


def new_manifest(**provenance) -> dict:
    """A fresh manifest with Twin's fixed conventions filled in."""
    from . import __version__

    return {
        "format": "twin-scene",
        "version": FORMAT_VERSION,
        "twin_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "units": "metres",
        "up_axis": "+Z",
        "camera_convention": "opencv, world_to_camera",
        "scale": {"metric": False, "source": "arbitrary", "metres_per_unit": None},
        "provenance": dict(provenance),
        "timings": {},
        "metrics": {},
        "files": [],
    }


def write_cameras(root: Path, cameras: list[Camera]) -> None:
    data = {"version": FORMAT_VERSION, "frames": [c.to_json() for c in cameras]}
    (root / CAMERAS).write_text(json.dumps(data, indent=1))


def read_cameras(root: Path) -> list[Camera]:
    p = root / CAMERAS
    if not p.exists():
        raise BundleError(f"{root}: bundle has no {CAMERAS}")
    try:
        data = json.loads(p.read_text())
        return [Camera.from_json(f) for f in data["frames"]]
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise BundleError(f"{p}: damaged camera file ({e})") from None


def _list_files(root: Path) -> list[str]:
    out = []
    for p in sorted(root.iterdir()):
        if p.name == MANIFEST:
            continue
        out.append(p.name + ("/" if p.is_dir() else ""))
    return out


def finalize_manifest(root: Path, manifest: dict) -> None:
    """Write scene.json listing what the bundle directory holds."""
    manifest["files"] = _list_files(root)
    (root / MANIFEST).write_text(json.dumps(manifest, indent=1, default=_json_default))


def _json_default(o):
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def read_bundle(path: str | os.PathLike) -> Bundle:
    """Open a bundle, refusing missing, damaged or unknown-version ones with a message naming the problem."""
    root = Path(path)
    if not root.exists():
        raise BundleError(f"{root}: no such bundle")
    if not root.is_dir():
        raise BundleError(f"{root}: a bundle is a directory, this is a file")
    mp = root / MANIFEST
    if not mp.exists():
        raise BundleError(f"{root}: not a Twin bundle ({MANIFEST} missing)")
    try:
        manifest = json.loads(mp.read_text())
    except json.JSONDecodeError as e:
        raise BundleError(f"{mp}: damaged manifest ({e.msg} at line {e.lineno})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != "twin-scene":
        raise BundleError(f"{mp}: not a Twin scene manifest")
    version = manifest.get("version")
    if version not in SUPPORTED_VERSIONS:
        raise BundleError(f"{mp}: bundle format version {version!r} is not supported by this Twin "
                          f"(reads {', '.join(map(str, SUPPORTED_VERSIONS))}); upgrade Twin")
    missing = [f for f in manifest.get("files", []) if not (root / f.rstrip("/")).exists()]
    if missing:
        raise BundleError(f"{root}: damaged bundle, listed files missing: {', '.join(missing[:5])}")
    cameras = read_cameras(root) if (root / CAMERAS).exists() else []
    return Bundle(root=root, manifest=manifest, cameras=cameras)


def swap_in(tmp: Path, dest: Path) -> None:
    """Rename tmp to dest; an existing dest is moved aside first and removed only after success."""
    old = None
    if dest.exists():
        old = dest.with_name(f".{dest.name}.old-{os.getpid()}-{int(time.time() * 1e3)}")
        os.replace(dest, old)
    try:
        os.replace(tmp, dest)
    except BaseException:
        if old is not None:
            os.replace(old, dest)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def staged_bundle(dest: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Build a new bundle in a temporary sibling of `dest` and rename it into place on success.

    On any error the temporary directory is removed and an existing `dest` is left untouched.
    """
    dest = Path(dest)
    if dest.exists() and not overwrite:
        raise BundleError(f"{dest}: already exists (pass --overwrite to replace it)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; a bundle is an ordinary directory
    try:
        yield tmp
        swap_in(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def updating_bundle(path: str | os.PathLike) -> Iterator[tuple[Path, dict]]:
    """Change an existing bundle atomically: yields (staging dir, manifest) holding hard links of its files.

    Write new or replacement files into the staging dir (unlink a file before rewriting it in place, so
    that the original's hard link is not modified); the manifest is re-listed and the bundle swapped in.
    """
    b = read_bundle(path)
    root = b.root
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
    os.chmod(tmp, 0o755)
    try:
        shutil.copytree(root, tmp, copy_function=_link_or_copy, dirs_exist_ok=True)
        manifest = dict(b.manifest)
        yield tmp, manifest
        finalize_manifest(tmp, manifest)
        swap_in(tmp, root)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write a single file atomically (temporary sibling, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
