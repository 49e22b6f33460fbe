"""SfM on moving scenes: Twin's motion masks (spatial.sfm.motion_masks) against the same COLMAP pipeline
without them (the peer), in one run, on three captures:

- passer-by: a synthetic orbit (true cameras) with a large textured panel crossing the view;
- moving table: `twin capture synth --dynamic` (boxes slide and spin, a lid opens; true cameras and true
  moving-part masks), also mapped with the true masks (the oracle) for reference;
- bedroom: ../shared/data/bedroom, a real video of children jumping (no true cameras: masked share and
  points only).

    python benches/motion_masks.py [--json] [--out benches/results/motion_masks.json]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _on_mask(res, frames, truth) -> float:
    """Share of the sparse points' observations that fall on the true moving pixels."""
    names = [f.name for f in frames.frames]
    on = total = 0
    for c in res.cameras:
        m = truth[names.index(c.name)]
        uv, _ = res.sparse_depths(c.name)
        u = np.clip(uv[:, 0].astype(int), 0, m.shape[1] - 1)
        v = np.clip(uv[:, 1].astype(int), 0, m.shape[0] - 1)
        on += int(m[v, u].sum())
        total += len(uv)
    return on / max(total, 1)


def _sfm(frames, work: Path, mode: str, ref, truth, masks=None) -> dict:
    from spatial import SfmConfig, evaluate_poses, run_sfm
    from twin_kit import InputError

    t0 = time.perf_counter()
    try:
        res = run_sfm(frames, work, SfmConfig(motion_masks=mode), masks=masks)
    except InputError as e:
        return {"error": str(e), "seconds": round(time.perf_counter() - t0, 1)}
    out = {"seconds": round(time.perf_counter() - t0, 1), "registered": len(res.cameras),
           "frames": len(frames.frames), "points": len(res.points), "attempt": res.attempt, **res.moving}
    if truth is not None:
        out["observations_on_movers"] = round(_on_mask(res, frames, truth), 4)
    if ref is not None:
        m = evaluate_poses(res.cameras, ref, n_total=len(frames.frames))
        out.update({k: round(float(m[k]), 5) for k in ("auc5", "auc30", "rot_err_median_deg", "ate_rel")
                    if m.get(k) is not None})
    return out


def _mask_scores(images, truth) -> dict:
    from spatial import motion_masks

    t0 = time.perf_counter()
    mm = motion_masks(images)
    sec = time.perf_counter() - t0
    ms = [m if m is not None else np.zeros_like(t) for m, t in zip(mm.masks, truth)]
    moving = [t.any() for t in truth]
    cov = [m[t].mean() for m, t, k in zip(ms, truth, moving) if k]
    return {"mask_seconds": round(sec, 2), "mover_covered": round(float(np.mean(cov)), 3) if cov else None,
            "static_masked": round(float(np.mean([m[~t].mean() for m, t in zip(ms, truth)])), 4)}


def passer_by(tmp: Path) -> dict:
    from spatial import Frame, FrameSet, SynthConfig, add_passer_by, load_ground_truth, synthesize_capture

    gt = load_ground_truth(synthesize_capture(SynthConfig(frames=64, width=320, height=240, seed=4), tmp / "pb"))
    images, truth = add_passer_by([gt.image(i) for i in range(len(gt.cameras))])
    frames = FrameSet([Frame(c.name, im, (320, 240)) for c, im in zip(gt.cameras, images)], source="video")
    return {"capture": "synthetic orbit, 64 frames 320x240, a textured panel (19 % x 50 % of the frame) crossing",
            **_mask_scores(images, truth),
            "twin": _sfm(frames, tmp / "pb_on", "on", gt.cameras, truth),
            "peer_no_masks": _sfm(frames, tmp / "pb_off", "off", gt.cameras, truth)}


def moving_table(tmp: Path) -> dict:
    from spatial import Frame, FrameSet, SynthConfig, load_ground_truth, synthesize_capture

    gt = load_ground_truth(synthesize_capture(SynthConfig(frames=48, dynamic=True), tmp / "mt"))
    images = [gt.image(i) for i in range(len(gt.cameras))]
    truth = [gt.moving_mask(i) > 0 for i in range(len(gt.cameras))]
    frames = FrameSet([Frame(c.name, im, (im.shape[1], im.shape[0])) for c, im in zip(gt.cameras, images)],
                      source="video")
    import cv2

    oracle = {f.name: cv2.dilate(t.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
              for f, t in zip(frames.frames, truth)}
    return {"capture": "twin capture synth --dynamic --frames 48 (480x360)", **_mask_scores(images, truth),
            "twin": _sfm(frames, tmp / "mt_on", "on", gt.cameras, truth),
            "peer_no_masks": _sfm(frames, tmp / "mt_off", "off", gt.cameras, truth),
            "oracle_true_masks": _sfm(frames, tmp / "mt_gt", "off", gt.cameras, truth, masks=oracle)}


def bedroom(tmp: Path, data: Path) -> dict:
    import cv2

    from spatial import Frame, FrameSet

    paths = sorted(data.glob("*.jpg"))[::4]
    frames = FrameSet([Frame(p.name, cv2.cvtColor(cv2.resize(cv2.imread(str(p)), (480, 270),
                                                             interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB),
                             (960, 540)) for p in paths], source="video")
    return {"capture": f"{data} every 4th frame ({len(paths)}), 480x270",
            "twin": _sfm(frames, tmp / "bd_on", "on", None, None),
            "peer_no_masks": _sfm(frames, tmp / "bd_off", "off", None, None)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--json", action="store_true", help="print one JSON object on the last line")
    ap.add_argument("--out", type=Path, default=ROOT / "benches" / "results" / "motion_masks.json")
    a = ap.parse_args(argv)
    from spatial import quiet_colmap
    from twin_kit import machine

    quiet_colmap()
    with tempfile.TemporaryDirectory(prefix="twin_masks_") as tmp:
        tmp = Path(tmp)
        out = {"passer_by": passer_by(tmp), "moving_table": moving_table(tmp),
               "bedroom": bedroom(tmp, a.data / "bedroom")}
    out["host"] = machine()
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=1))
    for name, r in out.items():
        for who in ("twin", "peer_no_masks", "oracle_true_masks"):
            if who in r:
                s = r[who]
                print(f"{name:13s} {who:18s} " + " ".join(f"{k}={v}" for k, v in s.items()
                                                          if k not in ("left_unmasked",)))
    if a.json:
        print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
