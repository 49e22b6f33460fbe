"""The scene bundle: a versioned directory that every stage reads and writes atomically."""
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


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write a single file atomically (temporary sibling, then rename)."""
    from twin_kit import atomic_write_file

    atomic_write_file(path, data)


# ------------------------------------------------------------------------------------------- file readers

def write_points(path: str | os.PathLike, points, colors=None) -> None:
    """Binary little-endian PLY of points (N, 3) with optional uint8 colours (N, 3): the bundle's points.ply."""
    import numpy as np

    P = np.asarray(points, dtype=np.float32).reshape(-1, 3)
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {len(P)}",
              "property float x", "property float y", "property float z"]
    if colors is not None:
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
        header += ["property uchar red", "property uchar green", "property uchar blue"]
    rec = np.empty(len(P), dtype=fields)
    rec["x"], rec["y"], rec["z"] = P[:, 0], P[:, 1], P[:, 2]
    if colors is not None:
        C = np.asarray(colors, dtype=np.uint8).reshape(-1, 3)
        rec["red"], rec["green"], rec["blue"] = C[:, 0], C[:, 1], C[:, 2]
    header.append("end_header")
    atomic_write_bytes(path, ("\n".join(header) + "\n").encode("ascii") + rec.tobytes())


def read_points(path: str | os.PathLike):
    """A coloured point cloud PLY as (N,3) float32 positions and (N,3) uint8 colours, non-finite points dropped.

    Colours stored as floats in [0, 1] are scaled to 0..255; a cloud without colours reads as grey (160).
    """
    import numpy as np
    from plyfile import PlyData

    path = Path(path)
    if not path.exists():
        raise BundleError(f"{path}: no fused point cloud (run `twin reconstruct` first)")
    try:
        v = PlyData.read(str(path))["vertex"].data
    except Exception as e:  # noqa: BLE001 - plyfile raises many types on damaged files
        raise BundleError(f"{path}: damaged or unreadable point cloud ({type(e).__name__}: {e})") from None
    names = set(v.dtype.names or ())
    if not {"x", "y", "z"} <= names:
        raise BundleError(f"{path}: point cloud has no x, y, z properties")
    xyz = np.stack([np.asarray(v[c], np.float32) for c in "xyz"], axis=1)
    if {"red", "green", "blue"} <= names:
        rgb = np.stack([np.asarray(v[c]) for c in ("red", "green", "blue")], axis=1)
        if rgb.dtype != np.uint8:
            rgb = rgb.astype(np.float64)
            rgb = np.clip(rgb * (255.0 if rgb.max(initial=0) <= 1.0 else 1.0), 0, 255)
        rgb = rgb.astype(np.uint8)
    else:
        rgb = np.full((len(xyz), 3), 160, np.uint8)
    keep = np.isfinite(xyz).all(axis=1)
    return xyz[keep], rgb[keep]


def read_collision_mesh(path: str | os.PathLike):
    """A triangle mesh (trimesh) in the file's units, refusing unreadable, empty or non-finite meshes."""
    import numpy as np
    import trimesh

    path = Path(path)
    try:
        m = trimesh.load(str(path), force="mesh", process=False)
    except Exception as e:  # noqa: BLE001 - trimesh raises many types on damaged files
        raise BundleError(f"{path}: damaged or unreadable mesh ({type(e).__name__}: {e})") from None
    if not isinstance(m, trimesh.Trimesh) or len(m.faces) == 0:
        raise BundleError(f"{path}: mesh has no triangles")
    if not np.isfinite(np.asarray(m.vertices)).all():
        raise BundleError(f"{path}: collision mesh has non-finite (NaN or inf) vertices")
    return m


def write_depth(path: str | os.PathLike, depth, confidence, K, size) -> None:
    """One view's float32 depth and confidence with the intrinsics they were computed at."""
    import io

    import numpy as np

    buf = io.BytesIO()
    np.savez_compressed(buf, depth=np.asarray(depth, np.float32), confidence=np.asarray(confidence, np.float32),
                        K=np.asarray(K, np.float64), size=np.asarray(size))
    atomic_write_bytes(path, buf.getvalue())


def read_depth(path: str | os.PathLike) -> dict:
    """A view's depth file as a dict: depth, confidence (float32 HxW), K (3x3), size (w, h)."""
    import numpy as np

    path = Path(path)
    try:
        with np.load(path) as d:
            return {k: d[k] for k in d.files}
    except FileNotFoundError:
        raise BundleError(f"{path}: no depth map") from None
    except Exception as e:  # noqa: BLE001 - zip/pickle errors on damaged files
        raise BundleError(f"{path}: damaged depth map ({type(e).__name__}: {e})") from None


@dataclass
class CollisionPieces:
    """Convex pieces of a collision mesh, in the mesh's own units and frame, and what they were made from.

    `mesh_sha256` (of the mesh's vertices and faces as read) and `params` name the mesh and the settings they
    belong to, so a reader tells current pieces from stale ones by comparing both.
    """

    pieces: list                # one (k, 3) float64 array of hull vertices per piece
    mesh_sha256: str
    params: dict                # the decomposition's settings (method, threshold, ...)
    method_version: str = ""    # e.g. CoACD's version: recorded, not compared (pieces stay valid across versions)
    seconds: float = 0.0        # what computing them took
    version: int = PIECES_VERSION


def write_collision_pieces(path: str | os.PathLike, cp: CollisionPieces) -> None:
    """Store convex pieces as one .npz (all vertices, per-piece counts, a JSON header), written atomically."""
    import io

    import numpy as np

    arrays = [np.asarray(p, np.float64).reshape(-1, 3) for p in cp.pieces]
    meta = {"version": cp.version, "mesh_sha256": cp.mesh_sha256, "params": cp.params,
            "method_version": cp.method_version, "seconds": round(float(cp.seconds), 3)}
    buf = io.BytesIO()
    np.savez_compressed(buf, vertices=np.concatenate(arrays) if arrays else np.zeros((0, 3)),
                        counts=np.array([len(a) for a in arrays], np.int64),
                        meta=np.array(json.dumps(meta, default=_json_default)))
    atomic_write_bytes(path, buf.getvalue())


def read_collision_pieces(path: str | os.PathLike) -> CollisionPieces:
    """Convex pieces stored by write_collision_pieces; BundleError if missing, damaged or of another layout."""
    import numpy as np

    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as d:
            verts, counts, meta = d["vertices"], d["counts"], json.loads(str(d["meta"]))
    except FileNotFoundError:
        raise BundleError(f"{path}: no convex pieces") from None
    except Exception as e:  # noqa: BLE001 - zip, key and JSON errors on damaged files
        raise BundleError(f"{path}: damaged convex pieces ({type(e).__name__}: {e})") from None
    version = meta.get("version") if isinstance(meta, dict) else None
    if version != PIECES_VERSION:
        raise BundleError(f"{path}: convex pieces of layout version {version!r} (this Twin reads {PIECES_VERSION})")
    counts = np.asarray(counts, np.int64).ravel()
    if (verts.ndim != 2 or verts.shape[1] != 3 or counts.sum() != len(verts) or (counts < 4).any()
            or not np.isfinite(verts).all()):
        raise BundleError(f"{path}: damaged convex pieces (vertex counts do not add up, or non-finite vertices)")
    pieces = np.split(verts.astype(np.float64), np.cumsum(counts)[:-1]) if len(counts) else []
    return CollisionPieces(pieces=pieces, mesh_sha256=str(meta.get("mesh_sha256", "")),
                           params=dict(meta.get("params") or {}), method_version=str(meta.get("method_version", "")),
                           seconds=float(meta.get("seconds", 0.0)), version=PIECES_VERSION)


@dataclass
class DynamicRecord:
    """The bundle's dynamic/ description. `deformation`: the field's architecture (kind, resolutions, widths), as
    its writer defines it; `time` maps capture timestamps (seconds) to the field's normalised time t = (timestamp
    - start) / (end - start), 0 at the first frame and 1 at the last; `metrics`: what training measured."""

    deformation: dict
    time: dict
    metrics: dict = field(default_factory=dict)
    version: int = DYNAMIC_VERSION


def write_dynamic(root: str | os.PathLike, record: DynamicRecord, weights: dict) -> None:
    """Write dynamic.json and the deformation weights (name -> float32 array, safetensors) under bundle `root`
    (usually a staging copy); each file atomically. The canonical PLY is written beside them by its owner."""
    import numpy as np
    from safetensors.numpy import save

    paths = BundlePaths(Path(root))
    paths.dynamic.mkdir(exist_ok=True)
    arrays = {k: np.ascontiguousarray(np.asarray(v, dtype=np.float32)) for k, v in weights.items()}
    bad = [k for k, v in arrays.items() if not np.isfinite(v).all()]
    if bad:
        raise ValueError(f"refusing to write non-finite deformation weights ({', '.join(bad[:3])})")
    meta = {"format": "twin-deformation", "version": str(record.version)}
    atomic_write_bytes(paths.dynamic_deformation, save(arrays, metadata=meta))
    doc = {"format": "twin-dynamic", "version": record.version, "deformation": record.deformation, "time": record.time,
           "metrics": record.metrics}
    atomic_write_bytes(paths.dynamic_config, json.dumps(doc, indent=1, default=_json_default).encode())


def read_dynamic(root: str | os.PathLike) -> tuple[DynamicRecord, dict]:
    """The dynamic/ record and weights (name -> float32 array) of bundle `root`; BundleError names what is
    missing, damaged or of a version this Twin does not read."""
    from safetensors import SafetensorError
    from safetensors.numpy import load

    paths = BundlePaths(Path(root))
    if not paths.dynamic_config.exists():
        raise BundleError(f"{root}: bundle has no dynamic splats (run `twin splat --dynamic` first)")
    try:
        doc = json.loads(paths.dynamic_config.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BundleError(f"{paths.dynamic_config}: damaged ({type(e).__name__})") from None
    if not isinstance(doc, dict) or doc.get("format") != "twin-dynamic":
        raise BundleError(f"{paths.dynamic_config}: not a Twin dynamic-splat description")
    if doc.get("version") != DYNAMIC_VERSION:
        raise BundleError(f"{paths.dynamic_config}: dynamic splats of layout version {doc.get('version')!r}; this "
                          f"Twin reads version {DYNAMIC_VERSION} (retrain with `twin splat --dynamic`)")
    t = doc.get("time")
    if (not isinstance(doc.get("deformation"), dict) or not isinstance(t, dict)
            or not all(isinstance(t.get(k), (int, float)) for k in ("start", "end"))):
        raise BundleError(f"{paths.dynamic_config}: 'deformation' or 'time' (start, end) missing or malformed")
    if not paths.dynamic_canonical.exists():
        raise BundleError(f"{root}: dynamic splats lack their canonical Gaussians ({DYNAMIC_CANONICAL})")
    try:
        weights = load(paths.dynamic_deformation.read_bytes())
    except FileNotFoundError:
        raise BundleError(f"{root}: dynamic splats lack their deformation weights ({DYNAMIC_DEFORMATION})") from None
    except (SafetensorError, OSError, ValueError) as e:
        raise BundleError(f"{paths.dynamic_deformation}: damaged deformation weights ({type(e).__name__})") from None
    return DynamicRecord(deformation=doc["deformation"], time=t, metrics=dict(doc.get("metrics") or {}),
                         version=DYNAMIC_VERSION), weights
