"""Score trained geometry weights on held-out synthetic captures, beside the structure-from-motion path.

Each capture's frames go through `twin reconstruct --method vggt --weights W` and (unless sfm=False) the
default SfM path; both bundles are scored against the capture's ground truth by the evaluation module
(spatial.evaluation: relative-pose AUC@30 as `twin eval-poses` reports it, camera-centre ATE, depth AbsRel
after the similarity that best aligns the camera centres; and, judging the depth maps by themselves, AbsRel
after one median scale per capture). A path that fails is reported as failed, not fatal.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from rich.table import Table

from twin_kit import InputError, atomic_output, console, info

KEYS = ("auc30", "rra_auc30", "rta_auc30", "ate_rel", "depth_absrel", "depth_absrel_median", "registered",
        "n_reference")
RESULT = "heldout.json"


def median_scaled_absrel(bundle_dir: Path, capture: Path) -> float | None:
    """Depth AbsRel after one scale per capture, the median ratio of true to bundle depth over every valid
    pixel (the depth maps judged by their shape, not through the cameras' scale as `depth_absrel` is)."""
    import cv2
    import numpy as np

    from spatial.bundle import read_bundle
    from spatial.bundle_files import read_depth
    from spatial.capture.synth import load_ground_truth
    from spatial.evaluation.demo import frame_index

    gt = load_ground_truth(capture)
    b = read_bundle(bundle_dir)
    preds, truths = [], []
    for c in b.cameras:
        i, p = frame_index(c.name), b.paths.depth_map(Path(c.name).stem)
        if i is None or i >= len(gt.cameras) or not p.exists():
            continue
        pred = read_depth(p)["depth"]
        g = cv2.resize(gt.depth(i), (pred.shape[1], pred.shape[0]), interpolation=cv2.INTER_NEAREST)
        ok = (pred > 0) & (g > 0) & np.isfinite(pred)
        preds.append(pred[ok])
        truths.append(g[ok])
    if not preds or not sum(len(p) for p in preds):
        return None
    pred, g = np.concatenate(preds).astype(np.float64), np.concatenate(truths).astype(np.float64)
    s = float(np.median(g / pred))
    return float(np.mean(np.abs(s * pred - g) / g))


def score_bundle_run(capture: Path, out: Path, method: str, weights: Path | None, quiet: bool = True) -> dict:
    """Reconstruct `capture`/frames into `out` by `method` and score it; {"error": ...} if it fails."""
    from spatial.commands import ReconstructConfig
    from spatial.evaluation.demo import score_against_ground_truth
    from spatial.reconstruct import reconstruct
    from spatial.sfm.colmap_log import quiet_colmap

    quiet_colmap()
    frames = capture / "frames"
    t0 = time.perf_counter()
    try:
        reconstruct(ReconstructConfig(input=frames, out=out, overwrite=True, method=method, weights=weights,
                                      quiet=quiet))
        m = score_against_ground_truth(out, capture)
        m["depth_absrel_median"] = median_scaled_absrel(out, capture)
    except InputError as e:
        return {"error": str(e), "seconds": round(time.perf_counter() - t0, 1)}
    row = {k: (round(m[k], 5) if isinstance(m.get(k), float) else m.get(k)) for k in KEYS}
    row["seconds"] = round(time.perf_counter() - t0, 1)
    return row


def score_heldout(captures: list[Path], weights: Path, run: Path, sfm: bool = True, quiet: bool = True) -> dict:
    """Per capture {"vggt": metrics, "sfm": metrics}, plus their means; written to run/heldout.json."""
    results: dict = {}
    for cap in captures:
        name = cap.name
        results[name] = {"vggt": score_bundle_run(cap, run / "heldout" / f"{name}-vggt", "vggt", weights, quiet)}
        if sfm:
            results[name]["sfm"] = score_bundle_run(cap, run / "heldout" / f"{name}-sfm", "sfm", None, quiet)
    summary = {"captures": results, "mean": _means(results)}
    with atomic_output(run / RESULT) as tmp:
        tmp.write_text(json.dumps(summary, indent=1))
    show_heldout(summary)
    return summary


def _means(results: dict) -> dict:
    out = {}
    for method in ("vggt", "sfm"):
        rows = [r[method] for r in results.values() if method in r and "error" not in r[method]]
        if rows:
            out[method] = {k: round(sum(r[k] for r in rows if r.get(k) is not None) /
                                    max(1, sum(r.get(k) is not None for r in rows)), 5)
                           for k in ("auc30", "rra_auc30", "rta_auc30", "ate_rel", "depth_absrel",
                                     "depth_absrel_median")}
            out[method]["captures"] = len(rows)
    return out


def show_heldout(summary: dict) -> None:
    t = Table(title="held-out synthetic captures")
    for col in ("capture", "method", "AUC@30", "RRA/RTA@30", "ATE/extent", "depth AbsRel", "(median-scaled)",
                "seconds"):
        t.add_column(col, no_wrap=True)
    for name, methods in summary["captures"].items():
        for method, r in methods.items():
            if "error" in r:
                t.add_row(name, method, "failed", r["error"][:60], "", "", "", str(r["seconds"]))
                continue
            f = (lambda v, fmt: "n/a" if v is None else format(v, fmt))
            t.add_row(name, method, f(r["auc30"], ".1f"), f"{f(r['rra_auc30'], '.1f')}/{f(r['rta_auc30'], '.1f')}",
                      "n/a" if r["ate_rel"] is None else f"{r['ate_rel'] * 100:.2f} %", f(r["depth_absrel"], ".3f"),
                      f(r["depth_absrel_median"], ".3f"), str(r["seconds"]))
    console.print(t)
    for method, m in summary["mean"].items():
        info(f"{method}: mean AUC@30 {m['auc30']:.1f}, depth AbsRel {m['depth_absrel']:.3f} "
             f"({m['depth_absrel_median']:.3f} median-scaled) over {m['captures']} capture(s)")
