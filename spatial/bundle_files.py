"""Readers and writers of the bundle's individual files: points, depth maps, collision mesh and its convex
pieces, dynamic splats; each write atomic (temporary sibling, then rename). Where the files live: spatial.bundle."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from spatial.bundle import (
    DYNAMIC_CANONICAL,
    DYNAMIC_DEFORMATION,
    DYNAMIC_VERSION,
    PIECES_VERSION,
    BundleError,
    BundlePaths,
    _json_default,
)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write a single file atomically (temporary sibling, then rename)."""
    from twin_kit import atomic_write_file

    atomic_write_file(path, data)


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
