"""`twin demo`: synthesise a phone capture, reconstruct it, and score poses and depth against ground truth."""
from __future__ import annotations

import dataclasses
import re
import time
from pathlib import Path

import numpy as np

from twin_kit import emit_json, info, progress


def frame_index(name: str) -> int | None:
    """The video frame number in a frame name such as '000123' or 'frame_000123.jpg'."""
    digits = re.findall(r"\d+", Path(name).stem)
    return int(digits[-1]) if digits else None


def score_against_ground_truth(bundle_dir: Path, capture_dir: Path) -> dict:
    """Pose accuracy (similarity-aligned) and depth AbsRel of a bundle against its synthetic ground truth."""
    import cv2

    from spatial.bundle import read_bundle
    from spatial.bundle_files import read_depth
    from spatial.capture.synth import load_ground_truth
    from spatial.evaluation.metrics import evaluate_poses, umeyama

    gt = load_ground_truth(capture_dir)
    b = read_bundle(bundle_dir)
    by_index = {i: c for i, c in enumerate(gt.cameras)}
    est, ref, pairs = [], [], []
    for c in b.cameras:
        i = frame_index(c.name)
        if i is None or i not in by_index:
            continue
        est.append(dataclasses.replace(c, name=f"{i:06d}"))
        ref.append(dataclasses.replace(by_index[i], name=f"{i:06d}"))
        pairs.append((c, i))
    m = evaluate_poses(est, ref)
    m["registered_fraction_of_keyframes"] = m.pop("registered_fraction")
    # Depth: bundle depth (bundle units) -> ground-truth metres through the similarity scale.
    S = umeyama(np.stack([c.center for c in est]), np.stack([c.center for c in ref]))
    s = float(np.cbrt(np.linalg.det(S[:3, :3])))
    errs, cover = [], []
    for c, i in pairs:
        p = b.paths.depth_map(Path(c.name).stem)
        if not p.exists():
            continue
        pred = read_depth(p)["depth"] * s
        h, w = pred.shape
        g = gt.depth(i)
        g_small = cv2.resize(g, (w, h), interpolation=cv2.INTER_NEAREST)
        valid = (pred > 0) & (g_small > 0)
        errs.append(np.abs(pred[valid] - g_small[valid]) / g_small[valid])
        cover.append(valid.sum() / max(1, (g_small > 0).sum()))
    allerr = np.concatenate(errs) if errs else np.array([np.nan])
    m["depth_absrel"] = float(allerr.mean())
    m["depth_coverage"] = float(np.mean(cover)) if cover else 0.0
    m["depth_frames"] = len(errs)
    m["scale_error"] = abs(s - 1.0) if b.metric else None
    m["metric"] = b.metric
    m["registered"] = len(b.cameras)
    return m


def run_demo(cfg, json_out: bool = False) -> int:
    from spatial.capture.synth import SynthConfig, synthesize_capture
    from spatial.commands import ReconstructConfig
    from spatial.reconstruct import reconstruct

    t0 = time.perf_counter()
    scfg = SynthConfig(out=Path(cfg.capture), frames=cfg.frames, width=cfg.width, height=cfg.height, seed=cfg.seed)
    with progress(cfg.quiet) as prog:
        task = prog.add_task("synthetic capture", total=scfg.frames, status="")
        synthesize_capture(scfg, Path(cfg.capture), on_frame=lambda i, s: prog.update(task, completed=i + 1))
    info(f"synthetic capture written to {cfg.capture} ({scfg.frames} frames, {scfg.width}x{scfg.height})")
    rcfg = ReconstructConfig(input=Path(cfg.capture) / "capture.mp4", out=Path(cfg.out), overwrite=True,
                             marker_size=scfg.marker_size_m, quiet=cfg.quiet)
    summary = reconstruct(rcfg)
    m = score_against_ground_truth(Path(cfg.out), Path(cfg.capture))
    m["seconds"] = round(time.perf_counter() - t0, 2)
    ok = m["ate_rel"] < 0.01 and m["depth_absrel"] < 0.05
    info(f"registered {summary['registered']}/{summary['frames']} keyframes; camera-centre error "
         f"{m['ate_rel'] * 100:.3f} % of the scene extent (goal < 1 %); depth AbsRel {m['depth_absrel']:.4f} "
         f"(goal < 0.05) over {m['depth_coverage'] * 100:.0f} % of pixels; RRA/RTA AUC@30 "
         f"{m['rra_auc30']:.1f}/{m['rta_auc30']:.1f}; "
         + (f"marker scale error {m['scale_error'] * 100:.2f} %; " if m["scale_error"] is not None else "")
         + ("[green]PASS[/green]" if ok else "[red]FAIL[/red]"))
    if json_out:
        emit_json(m)
    return 0 if ok else 1
