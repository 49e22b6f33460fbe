"""`twin splat` (train 3D Gaussian splats into a bundle) and `twin render` (video fly-through / frame check)."""
from __future__ import annotations

from scenes.splats.train_config import RenderConfig, SplatConfig
from spatial import BundlePaths
from twin_kit import Verb


def run_splat(cfg: SplatConfig, json_out: bool = False) -> int:
    """Train, write splats.ply and metrics into the bundle, print a summary (and JSON)."""
    from scenes.splats.train import train, write_result
    from twin_kit import emit_json, info

    result = train(cfg)
    write_result(cfg.bundle, result, cfg)
    info(f"splats: {result.num_gaussians} Gaussians, held-out PSNR {result.psnr:.2f} dB, SSIM {result.ssim:.4f}, "
         f"{result.steps} steps at {result.resolution} in {result.seconds:.0f} s -> {BundlePaths(cfg.bundle).splats}")
    if json_out:
        emit_json({"psnr": result.psnr, "ssim": result.ssim, "num_gaussians": result.num_gaussians,
                   "seconds": result.seconds, "cpu_seconds": result.cpu_seconds, "steps": result.steps,
                   "resolution": result.resolution,
                   "splats": str(BundlePaths(cfg.bundle).splats)})
    return 0


def run_render(cfg: RenderConfig, json_out: bool = False) -> int:
    """Render a camera path to mp4, or with --frame one capture view beside its photo to PNG."""
    import time

    from scenes.rendering.render_video import path_for, render_frame_comparison, render_path_video
    from spatial import read_bundle
    from twin_kit import emit_json, info, progress

    t0 = time.perf_counter()
    if cfg.frame is not None:
        res = render_frame_comparison(cfg.bundle, cfg.frame, cfg.out, cfg.resolution, cfg.device, cfg.backend,
                                      cfg.background)
        info(f"frame {res['frame']}: real (left) vs splats (right), PSNR {res['psnr']:.2f} dB -> {cfg.out}")
        if json_out:
            emit_json({**res, "seconds": time.perf_counter() - t0})
        return 0
    bundle = read_bundle(cfg.bundle)
    cams, fps = path_for(bundle, cfg.camera_path, cfg.num_frames, cfg.resolution)
    fps = float(fps or cfg.fps)
    with progress(cfg.quiet) as bar:
        task = bar.add_task("render", total=len(cams), status="")
        n = render_path_video(bundle.root, cams, cfg.out, fps=fps, device=cfg.device, backend=cfg.backend,
                              background=cfg.background,
                              progress=lambda done, total: bar.update(task, completed=done))
    secs = time.perf_counter() - t0
    info(f"rendered {n} frames ({cams[0].width}x{cams[0].height}, {fps:g} fps) in {secs:.1f} s -> {cfg.out}")
    if json_out:
        emit_json({"frames": n, "width": cams[0].width, "height": cams[0].height, "fps": fps, "seconds": secs,
                   "out": str(cfg.out)})
    return 0


VERBS = [
    Verb("splat", SplatConfig, run_splat, "train 3D Gaussian splats on a bundle's images (writes splats.ply)"),
    Verb("render", RenderConfig, run_render, "render a bundle's splats along a camera path to mp4, or one "
                                             "capture frame beside its photo (--frame, PNG)"),
]
