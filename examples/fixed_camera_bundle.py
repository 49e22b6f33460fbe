"""Turn the frames of a video filmed from a fixed camera into a scene bundle for `twin splat --dynamic`.

    python examples/fixed_camera_bundle.py ../shared/data/bedroom /tmp/bedroom [--hfov 60 --depth 3]

Structure from motion has no baseline to work with when the camera does not move, so every frame gets the
same pose (identity) and a pinhole camera of the given horizontal field of view; the seed points are the
first frame's pixels pushed out to random depths around `--depth` metres. Frames keep their file-name order
as the time axis (no timestamps). What the splats can then learn is the scene over time from one viewpoint:
held-out frames (every 8th) test interpolation in time, which is what separates 4D from static Gaussians.
"""
from __future__ import annotations

import argparse
import math
import shutil
from pathlib import Path

import cv2
import numpy as np

from spatial import BundlePaths, Camera, finalize_manifest, new_manifest, staged_bundle, write_cameras, write_points


def build(frames_dir: Path, out: Path, hfov_deg: float, depth: float, points: int, seed: int) -> Path:
    files = sorted(p for p in frames_dir.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not files:
        raise SystemExit(f"{frames_dir}: no .jpg/.png frames")
    first = cv2.imread(str(files[0]))[:, :, ::-1]
    h, w = first.shape[:2]
    f = 0.5 * w / math.tan(math.radians(hfov_deg) / 2)
    with staged_bundle(out, overwrite=True) as tmp:
        (tmp / "images").mkdir()
        cams = []
        for p in files:
            shutil.copyfile(p, tmp / "images" / p.name)
            cams.append(Camera(p.stem, w, h, f, f, (w - 1) / 2, (h - 1) / 2, image=f"images/{p.name}"))
        write_cameras(tmp, cams)
        rng = np.random.default_rng(seed)
        u, v = rng.uniform(0, w - 1, points), rng.uniform(0, h - 1, points)
        z = depth * rng.uniform(0.8, 1.2, points)
        xyz = np.stack([(u - (w - 1) / 2) / f * z, (v - (h - 1) / 2) / f * z, z], 1)
        write_points(BundlePaths(tmp).points, xyz, first[v.round().astype(int), u.round().astype(int)])
        m = new_manifest(input=str(frames_dir), input_kind="fixed-camera video frames")
        m["scale"] = {"metric": False, "source": "assumed fixed camera", "metres_per_unit": 1.0}
        finalize_manifest(tmp, m)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("frames", type=Path, help="folder of frames, in time order by file name")
    ap.add_argument("out", type=Path, help="bundle directory to write (replaced)")
    ap.add_argument("--hfov", type=float, default=60.0, help="assumed horizontal field of view, degrees")
    ap.add_argument("--depth", type=float, default=3.0, help="typical scene depth of the seed points, metres")
    ap.add_argument("--points", type=int, default=20_000, help="seed points")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    print(build(a.frames, a.out, a.hfov, a.depth, a.points, a.seed))


if __name__ == "__main__":
    main()
