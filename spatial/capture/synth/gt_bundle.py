"""A scene bundle straight from a synthetic capture's ground truth: the true cameras, the frames, the true
depth, points fused from that depth and the scene mesh as the collision mesh. No SfM: splats trained on it
are scored on the splats alone (and a dynamic capture gets cameras that moving objects cannot fool).
"""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np

from spatial.bundle import BundlePaths, finalize_manifest, is_bundle, new_manifest, staged_bundle, write_cameras
from spatial.bundle_files import write_depth, write_points
from spatial.capture.synth.capture import load_ground_truth
from spatial.capture.synth.geometry import unproject

GT_KIND = "synthetic ground truth"
POINTS_PER_FRAME = 20_000  # depth pixels sampled per frame before the voxel grid thins them


def is_ground_truth_bundle(path: str | Path) -> bool:
    """Whether `path` is a bundle that this module wrote (so that --bundle may replace it)."""
    if not is_bundle(path):
        return False
    try:
        manifest = json.loads(BundlePaths(Path(path)).manifest.read_text())
    except (OSError, ValueError):
        return False
    return (manifest.get("provenance") or {}).get("input_kind") == GT_KIND


def check_bundle_destination(dest: Path, capture_out: Path) -> None:
    """Refuse, before rendering, a --bundle that is the capture itself, a file, or a folder we did not write."""
    from twin_kit import check_output_dir

    check_output_dir(dest, inputs=[capture_out], overwrite=True, replaceable=is_ground_truth_bundle,
                     kind="ground-truth bundle (written by --bundle)", what="--bundle")


def fused_points(gt, voxel: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """World points (N, 3) and uint8 colours (N, 3) back-projected from every frame's true depth, one per
    `voxel`-sized cell (the first sample that lands in it, in a seeded random order)."""
    pts, cols = [], []
    for i, cam in enumerate(gt.cameras):
        depth = gt.depth(i)
        stride = max(1, int(round(np.sqrt(depth.size / POINTS_PER_FRAME))))
        X = unproject(depth, cam)[::stride, ::stride]
        rgb = gt.image(i)[::stride, ::stride]
        valid = depth[::stride, ::stride] > 0
        pts.append(X[valid])
        cols.append(rgb[valid])
    P, C = np.concatenate(pts), np.concatenate(cols)
    order = np.random.default_rng(seed).permutation(len(P))
    P, C = P[order], C[order]
    _, first = np.unique(np.floor(P / voxel).astype(np.int64), axis=0, return_index=True)
    first.sort()
    return P[first], C[first]


def write_ground_truth_bundle(capture: str | Path, dest: str | Path, voxel: float = 0.02) -> Path:
    """Write the bundle of the capture at `capture` into `dest` atomically (replacing an earlier one)."""
    gt = load_ground_truth(capture)
    dest = Path(dest)
    with staged_bundle(dest, overwrite=True) as tmp:
        paths = BundlePaths(tmp)
        paths.images.mkdir()
        paths.depth.mkdir()
        cams = []
        for i, cam in enumerate(gt.cameras):
            rel = paths.image_rel(cam.name)
            shutil.copyfile(gt.image_path(i), tmp / rel)
            d = gt.depth(i)
            write_depth(paths.depth_map(cam.name), d, (d > 0).astype(np.float32), cam.K, (cam.width, cam.height))
            cams.append(dataclasses.replace(cam, image=rel))
        write_cameras(tmp, cams)
        P, C = fused_points(gt, voxel, seed=int(gt.meta.get("seed", 0)))
        write_points(paths.points, P, C)
        shutil.copyfile(gt.mesh_path, paths.collision)
        manifest = new_manifest(input=str(Path(capture)), input_kind=GT_KIND, generator=gt.meta.get("generator"),
                                seed=gt.meta.get("seed"), dynamic=gt.dynamic)
        manifest["scale"] = {"metric": True, "source": "ground truth", "metres_per_unit": 1.0}
        manifest["metrics"]["reconstruct"] = {"frames": len(cams), "registered": len(cams), "points": len(P),
                                              "points_source": f"true depth, one per {voxel * 100:g} cm voxel",
                                              "collision_mesh": True, "dynamic_parts": gt.meta.get("dynamic", [])}
        finalize_manifest(tmp, manifest)
    return dest
