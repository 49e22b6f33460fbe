"""`twin splat BUNDLE --dynamic`: train 4D Gaussians, write them into the bundle's dynamic/, report both scores."""
from __future__ import annotations

import dataclasses
import math
import shutil
import time
from pathlib import Path

from scenes.splats.train_config import SplatConfig
from spatial import BundlePaths


def _num(v: float, digits: int = 3):
    return None if v is None or not math.isfinite(v) else round(float(v), digits)


def result_metrics(res, cfg: SplatConfig) -> dict:
    """The figures of a dynamic run, as printed with --json and kept in the bundle."""
    return {"psnr": _num(res.psnr), "ssim": _num(res.ssim, 4), "psnr_static": _num(res.psnr_static),
            "ssim_static": _num(res.ssim_static, 4), "seconds": _num(res.seconds, 1),
            "seconds_static": _num(res.seconds_static, 1), "render_fps": _num(res.render_fps, 2),
            "render_fps_static": _num(res.render_fps_static, 2), "render_fps_side": 480,
            "num_gaussians": res.num_gaussians, "num_gaussians_static": res.num_gaussians_static,
            "steps": res.steps, "warmup_steps": res.warmup_steps, "resolution": res.resolution,
            "held_out": f"every {cfg.eval_every_n}th frame", "exposure": cfg.exposure,
            "exposure_log_gain_std": None if res.log_gains is None else _num(float(res.log_gains.mean(1).std()), 4)}


def write_dynamic_result(bundle_root: Path, res, cfg: SplatConfig) -> dict:
    """Replace the bundle's dynamic/ atomically and record the figures in scene.json; returns the metrics."""
    from scenes.dynamic.model import save_dynamic
    from spatial import updating_bundle

    metrics = result_metrics(res, cfg)
    with updating_bundle(bundle_root) as (tmp, manifest):
        old = BundlePaths(tmp).dynamic
        if old.exists():
            shutil.rmtree(old)  # hard links of the live bundle's files: unlinking leaves the originals intact
        gains = None if res.log_gains is None else [[round(float(x), 4) for x in row] for row in res.log_gains]
        save_dynamic(tmp, res.dyn, {**metrics, "exposure_log_gains": gains,  # per frame, in name order (RGB)
                                    "config": {k: (str(v) if isinstance(v, Path) else v)
                                               for k, v in dataclasses.asdict(cfg).items()}})
        manifest["metrics"] = {**(manifest.get("metrics") or {}), "splat_dynamic": metrics}
        manifest["timings"] = {**(manifest.get("timings") or {}), "splat_dynamic": metrics["seconds"]}
    return metrics


def run_splat_dynamic(cfg: SplatConfig, json_out: bool = False) -> int:
    """Check the bundle, train (warm-up, joint, static baseline), write dynamic/, print a summary (and JSON)."""
    from scenes.dynamic.train import train_dynamic
    from spatial import read_bundle
    from twin_kit import InputError, check_parent_writable, emit_json, info, torch_threads

    t0 = time.perf_counter()
    root = read_bundle(cfg.bundle).root
    check_parent_writable(root, "bundle")
    if not BundlePaths(root).images.is_dir():
        raise InputError(f"{root}: bundle has no images to train on")
    with torch_threads(cfg.threads):
        res = train_dynamic(cfg)
    m = write_dynamic_result(root, res, cfg)
    m["seconds_total"] = _num(time.perf_counter() - t0, 1)
    base = (f"; static baseline {m['psnr_static']:.2f} dB" if m["psnr_static"] is not None else "")
    info(f"dynamic splats: {m['num_gaussians']} Gaussians, held-out PSNR {m['psnr']:.2f} dB{base}; {m['steps']} "
         f"steps ({m['warmup_steps']} warm-up) at {m['resolution']} in {m['seconds']:.0f} s; renders "
         f"{m['render_fps']:.1f} fps at 480 px -> {BundlePaths(root).dynamic}")
    if json_out:
        emit_json({**m, "dynamic": str(BundlePaths(root).dynamic)})
    return 0
