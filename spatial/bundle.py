"""The scene bundle: a versioned directory that every stage reads and writes atomically. Where each file lives,
the manifest, cameras and staging are here; the readers and writers of the other files are in spatial.bundle_files."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from spatial.cameras import Camera
from twin_kit import InputError

FORMAT_VERSION = 1
SUPPORTED_VERSIONS = (1,)

# Every file name of the bundle, here and nowhere else (a test reads the source tree to hold that).
MANIFEST = "scene.json"
CAMERAS = "cameras.json"
IMAGES = "images"
DEPTH = "depth"
POINTS = "points.ply"
SPLATS = "splats.ply"
COLLISION_STEM = "collision"
COLLISION = COLLISION_STEM + ".ply"
# Mesh formats a collision mesh may come in (a user may drop in their own); the first found wins.
COLLISION_SUFFIXES = (".ply", ".obj", ".glb", ".gltf", ".stl", ".off", ".usd", ".usda", ".usdc", ".usdz")
COLMAP_MODEL = "colmap/sparse/0"
TRANSFORMS = "transforms.json"
USD_STAGE = "scene.usda"
USDZ = "scene.usdz"
COLLISION_GLB = COLLISION_STEM + ".glb"
COLLISION_PIECES = COLLISION_STEM + "_pieces.npz"  # convex pieces of the collision mesh (computed once, reused)
PIECES_VERSION = 1  # layout of COLLISION_PIECES; another version is recomputed, not read
DYNAMIC = "dynamic"  # 4D Gaussians: the three files below
DYNAMIC_CANONICAL = DYNAMIC + "/canonical.ply"  # canonical Gaussians, standard 3DGS PLY layout
DYNAMIC_DEFORMATION = DYNAMIC + "/deformation.safetensors"  # the deformation field's weights
DYNAMIC_CONFIG = DYNAMIC + "/dynamic.json"  # version, field architecture, time axis, metrics
DYNAMIC_VERSION = 1  # layout of DYNAMIC_CONFIG + DYNAMIC_DEFORMATION; another version is refused with a reason
CAMERA_PATHS = "paths"  # keyframed camera paths saved from the viewer
SPLAT_CHECKPOINTS = "splat_checkpoints"  # beside the bundle, named <bundle>.splat_checkpoints


@dataclass(frozen=True)
class BundlePaths:
    """Where each bundle file lives under `root`: for finished bundles, staging directories and export folders."""

    root: Path

    @property
    def manifest(self) -> Path:
        return self.root / MANIFEST

    @property
    def cameras(self) -> Path:
        return self.root / CAMERAS

    @property
    def images(self) -> Path:
        return self.root / IMAGES

    def image(self, stem: str) -> Path:
        return self.root / self.image_rel(stem)

    @staticmethod
    def image_rel(stem: str) -> str:
        """The image path a camera stores (relative to the bundle root)."""
        return f"{IMAGES}/{stem}.jpg"

    @property
    def depth(self) -> Path:
        return self.root / DEPTH

    def depth_map(self, stem: str) -> Path:
        return self.root / DEPTH / f"{stem}.npz"

    @property
    def points(self) -> Path:
        return self.root / POINTS

    @property
    def splats(self) -> Path:
        return self.root / SPLATS

    @property
    def collision(self) -> Path:
        """Where Twin writes the collision mesh (PLY)."""
        return self.root / COLLISION

    def find_collision(self) -> Path | None:
        """The collision mesh present (collision.ply preferred, else any collision.<mesh format>), or None."""
        for suf in COLLISION_SUFFIXES:
            p = self.root / (COLLISION_STEM + suf)
            if p.exists():
                return p
        return None

    @property
    def collision_glb(self) -> Path:
        return self.root / COLLISION_GLB

    @property
    def collision_pieces(self) -> Path:
        """Convex pieces of the collision mesh, for engines that collide convex shapes only (see CollisionPieces)."""
        return self.root / COLLISION_PIECES

    @property
    def colmap(self) -> Path:
        """The COLMAP model directory (sparse/0)."""
        return self.root / COLMAP_MODEL

    @property
    def colmap_root(self) -> Path:
        return self.root / COLMAP_MODEL.split("/")[0]

    @property
    def transforms(self) -> Path:
        return self.root / TRANSFORMS

    @property
    def usd_stage(self) -> Path:
        return self.root / USD_STAGE

    @property
    def usdz(self) -> Path:
        return self.root / USDZ

    @property
    def camera_paths(self) -> Path:
        return self.root / CAMERA_PATHS

    @property
    def dynamic(self) -> Path:
        return self.root / DYNAMIC

    @property
    def dynamic_canonical(self) -> Path:
        return self.root / DYNAMIC_CANONICAL

    @property
    def dynamic_deformation(self) -> Path:
        return self.root / DYNAMIC_DEFORMATION

    @property
    def dynamic_config(self) -> Path:
        return self.root / DYNAMIC_CONFIG

    @property
    def splat_checkpoints(self) -> Path:
        """Training checkpoints live beside the bundle (not inside it), so a bundle swap keeps them."""
        return self.root.parent / f".{self.root.name}.{SPLAT_CHECKPOINTS}"


class BundleError(InputError):
    """A bundle that is missing, damaged, or of a version this Twin cannot read."""


@dataclass
class Bundle:
    """An opened bundle: its root, manifest and cameras."""

    root: Path
    manifest: dict
    cameras: list[Camera] = field(default_factory=list)

    @property
    def paths(self) -> BundlePaths:
        return BundlePaths(self.root)

    def path(self, rel: str) -> Path:
        return self.root / rel

    def has(self, rel: str) -> bool:
        return (self.root / rel).exists()

    @property
    def metric(self) -> bool:
        return bool(self.manifest.get("scale", {}).get("metric", False))


def new_manifest(**provenance) -> dict:
    """A fresh manifest with Twin's fixed conventions filled in."""
    from spatial import __version__

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


def _read_manifest(root: Path) -> dict:
    """The parsed scene.json of `root`, checked field by field; BundleError says what is wrong, on one line."""
    mp = root / MANIFEST
    if not mp.exists():
        raise BundleError(f"{root}: not a Twin bundle ({MANIFEST} missing)")
    try:
        manifest = json.loads(mp.read_text())
    except json.JSONDecodeError as e:
        raise BundleError(f"{mp}: damaged manifest ({e.msg} at line {e.lineno})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise BundleError(f"{mp}: unreadable manifest ({type(e).__name__})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != "twin-scene":
        raise BundleError(f"{mp}: not a Twin scene manifest")
    version = manifest.get("version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise BundleError(f"{mp}: manifest 'version' must be an integer, got {json.dumps(version)}")
    if version not in SUPPORTED_VERSIONS:
        raise BundleError(f"{mp}: bundle format version {version!r} is not supported by this Twin "
                          f"(reads {', '.join(map(str, SUPPORTED_VERSIONS))}); upgrade Twin")
    files = manifest.get("files", [])
    if not isinstance(files, list) or not all(isinstance(f, str) and f.strip("/") for f in files):
        raise BundleError(f"{mp}: manifest 'files' must be a list of file names, got {_short_json(files)}")
    for key in ("scale", "provenance", "timings", "metrics"):
        if key in manifest and not isinstance(manifest[key], dict):
            raise BundleError(f"{mp}: manifest '{key}' must be an object, got {_short_json(manifest[key])}")
    bad = [f for f in files if Path(f).is_absolute() or ".." in Path(f).parts]
    if bad:
        raise BundleError(f"{mp}: manifest 'files' must name files inside the bundle, got {bad[0]!r}")
    return manifest


def _short_json(v) -> str:
    text = json.dumps(v, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def is_bundle(path: str | os.PathLike) -> bool:
    """Whether `path` is a directory with a Twin scene manifest (of any version, damaged files or not): what
    --overwrite may replace."""
    mp = Path(path) / MANIFEST
    try:
        manifest = json.loads(mp.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return Path(path).is_dir() and isinstance(manifest, dict) and manifest.get("format") == "twin-scene"


def read_bundle(path: str | os.PathLike) -> Bundle:
    """Open a bundle, refusing missing, damaged or unknown-version ones with a message naming the problem."""
    root = Path(path)
    if not root.exists():
        raise BundleError(f"{root}: no such bundle")
    if not root.is_dir():
        raise BundleError(f"{root}: a bundle is a directory, this is a file")
    manifest = _read_manifest(root)
    missing = [f for f in manifest.get("files", []) if not (root / f.rstrip("/")).exists()]
    if missing:
        raise BundleError(f"{root}: damaged bundle, listed files missing: {', '.join(missing[:5])}")
    cameras = read_cameras(root) if (root / CAMERAS).exists() else []
    return Bundle(root=root, manifest=manifest, cameras=cameras)


def _check_destination(dest: Path, overwrite: bool) -> None:
    """What staged_bundle may replace: nothing, or (with overwrite) a Twin bundle; never the working folder."""
    from twin_kit import check_output_dir

    try:
        check_output_dir(dest, overwrite=overwrite, replaceable=is_bundle, what="")
    except BundleError:
        raise
    except InputError as e:
        raise BundleError(str(e)) from None


def swap_in(tmp: Path, dest: Path) -> None:
    """Rename tmp to dest; an existing dest is moved aside first and removed only after success."""
    from twin_kit import replace_path

    replace_path(tmp, dest)


@contextlib.contextmanager
def staged_bundle(dest: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Build a new bundle in a temporary sibling of `dest` and rename it into place on success.

    Refuses a `dest` that exists (unless `overwrite`) or that is not a Twin bundle, before and again at the
    swap; holds the destination lock meanwhile, so a second writer fails at once. On any error (and on
    Ctrl-C) the temporary directory is removed and an existing `dest` is left untouched.
    """
    from twin_kit import destination_lock, make_parents, remove_empty, staging_dir, sweep_stale

    dest = Path(dest)
    _check_destination(dest, overwrite)
    made = make_parents(dest)
    ok = False
    try:
        with destination_lock(dest):
            sweep_stale(dest)
            _check_destination(dest, overwrite)
            with staging_dir(dest) as tmp:
                yield tmp
                _check_destination(dest, overwrite)  # a non-Twin writer may have put something there meanwhile
                swap_in(tmp, dest)
        ok = True
    finally:
        if not ok:
            remove_empty(made)


@contextlib.contextmanager
def updating_bundle(path: str | os.PathLike) -> Iterator[tuple[Path, dict]]:
    """Change an existing bundle atomically: yields (staging dir, manifest) holding hard links of its files.

    Write new or replacement files into the staging dir (unlink a file before rewriting it in place, so
    that the original's hard link is not modified); the manifest is re-listed and the bundle swapped in.
    The bundle is locked meanwhile (a second writer fails at once) and read again under the lock.
    """
    from twin_kit import check_parent_writable, destination_lock, staging_dir, sweep_stale

    root = read_bundle(path).root
    check_parent_writable(root)
    with destination_lock(root):
        sweep_stale(root)
        b = read_bundle(root)
        with staging_dir(root) as tmp:
            shutil.copytree(root, tmp, copy_function=_link_or_copy, dirs_exist_ok=True)
            manifest = dict(b.manifest)
            yield tmp, manifest
            finalize_manifest(tmp, manifest)
            if not is_bundle(root):
                raise BundleError(f"{root}: the bundle was replaced while this run changed it; nothing written")
            swap_in(tmp, root)


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
