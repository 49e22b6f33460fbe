"""`twin splat` (train 3D Gaussian splats into a bundle) and `twin render` (video fly-through / frame check)."""
from __future__ import annotations

from pathlib import Path

from scenes.splats.train_config import RenderConfig, SplatConfig
from spatial import BundlePaths
from twin_kit import Verb


def run_splat(cfg: SplatConfig, json_out: bool = False) -> int:
    """Train, write splats.ply and metrics into the bundle, print a summary (and JSON).

    Checks first (a readable bundle, a writable folder beside it for the staging copy and the checkpoints, a
    checkpoint to resume from); the checkpoints are locked for the run and removed after a successful one
    unless --keep-checkpoints.
    """
    if cfg.dynamic:
        from scenes.dynamic.cli import run_splat_dynamic

        return run_splat_dynamic(cfg, json_out)
    from scenes.splats.train import train, write_result
    from spatial import read_bundle
    from twin_kit import (
        InputError,
        check_parent_writable,
        destination_lock,
        emit_json,
        info,
        remove_tree,
        torch_threads,
    )

    root = read_bundle(cfg.bundle).root
    check_parent_writable(root, "bundle")
    if not BundlePaths(root).images.is_dir():
        raise InputError(f"{root}: bundle has no images to train on")
    ck_dir = cfg.checkpoint_path().parent
    if cfg.resume and not cfg.checkpoint_path().exists():
        raise InputError(f"nothing to resume: no checkpoint at {cfg.checkpoint_path()}")
    with destination_lock(ck_dir, label=f"{root} (splat training)"):
        with torch_threads(cfg.threads):
            result = train(cfg)
        write_result(root, result, cfg)
        if not cfg.keep_checkpoints:
            remove_tree(ck_dir)
    kept = f"; checkpoints kept in {ck_dir}" if cfg.keep_checkpoints else ""
    info(f"splats: {result.num_gaussians} Gaussians, held-out PSNR {result.psnr:.2f} dB, SSIM {result.ssim:.4f}, "
         f"{result.steps} steps at {result.resolution} in {result.seconds:.0f} s -> {BundlePaths(root).splats}"
         f"{kept}")
    if json_out:
        emit_json({"psnr": result.psnr, "ssim": result.ssim, "num_gaussians": result.num_gaussians,
                   "seconds": result.seconds, "cpu_seconds": result.cpu_seconds, "steps": result.steps,
                   "resolution": result.resolution,
                   "splats": str(BundlePaths(root).splats),
                   "checkpoints": str(ck_dir) if cfg.keep_checkpoints else None})
    return 0


def render_output(cfg: RenderConfig, bundle_root: Path) -> Path:
    """The file `twin render` writes, checked before any rendering: an .mp4 for a camera path (default
    render.mp4), a .png for --frame (default BUNDLE_FRAME.png in the working folder)."""
    from twin_kit import check_output_file

    if cfg.frame is not None:
        default = Path(f"{Path(bundle_root).resolve().name}_{Path(cfg.frame).stem}.png")
        return check_output_file(cfg.out or default, (".png",), "--out")
    return check_output_file(cfg.out or Path("render.mp4"), (".mp4",), "--out")


def run_render(cfg: RenderConfig, json_out: bool = False) -> int:
    """Render a camera path to mp4, or with --frame one capture view beside its photo to PNG."""
    import time

    from spatial import read_bundle
    from twin_kit import InputError, destination_lock, emit_json, info, progress

    t0 = time.perf_counter()
    bundle = read_bundle(cfg.bundle)
    if cfg.time and not bundle.paths.dynamic_config.exists():
        raise InputError(f"{bundle.root}: bundle has no dynamic splats (run `twin splat --dynamic` first)")
    if not cfg.time and not bundle.paths.splats.exists():
        raise InputError(f"{bundle.root}: bundle has no splats.ply (run `twin splat` first)")
    if cfg.frame is not None and not any(cfg.frame in (c.name, Path(c.image or "").name) for c in bundle.cameras):
        names = ", ".join(c.name for c in bundle.cameras[:5])
        raise InputError(f"{bundle.root}: no capture frame named {cfg.frame!r} (e.g. {names})")
    if cfg.camera_path not in ("orbit", "frames") and not Path(cfg.camera_path).is_file():
        raise InputError(f"--camera-path {cfg.camera_path}: not orbit, frames or an existing JSON file")
    out = render_output(cfg, bundle.root)
    from scenes.rendering.camera_paths import path_for
    from scenes.rendering.render_video import render_frame_comparison, render_path_video

    with destination_lock(out):
        if cfg.frame is not None:
            res = render_frame_comparison(bundle.root, cfg.frame, out, cfg.resolution, cfg.device, cfg.backend,
                                          cfg.background, timed=cfg.time)
            info(f"frame {res['frame']}: real (left) vs splats (right), PSNR {res['psnr']:.2f} dB -> {out}")
            if json_out:
                emit_json({**res, "seconds": time.perf_counter() - t0})
            return 0
        cams, fps = path_for(bundle, cfg.camera_path, cfg.num_frames, cfg.resolution)
        fps = float(fps or cfg.fps)
        with progress(cfg.quiet) as bar:
            task = bar.add_task("render", total=len(cams), status="")
            n = render_path_video(bundle.root, cams, out, fps=fps, device=cfg.device, backend=cfg.backend,
                                  background=cfg.background, timed=cfg.time,
                                  progress=lambda done, total: bar.update(task, completed=done))
    secs = time.perf_counter() - t0
    info(f"rendered {n} frames ({cams[0].width}x{cams[0].height}, {fps:g} fps) in {secs:.1f} s -> {out}")
    if json_out:
        emit_json({"frames": n, "width": cams[0].width, "height": cams[0].height, "fps": fps, "seconds": secs,
                   "out": str(out)})
    return 0


VERBS = [
    Verb("splat", SplatConfig, run_splat, "train 3D Gaussian splats on a bundle's images (writes splats.ply)",
         "Train 3D Gaussian splats on a bundle's images and cameras; writes splats.ply into the bundle. "
         "Checkpoints go beside the bundle, in .NAME.splat_checkpoints/ (about 70 MB for 100k Gaussians): they "
         "are removed when training succeeds (kept with --keep-checkpoints) and kept after a failed or "
         "interrupted run, so that --resume can continue it."),
    Verb("render", RenderConfig, run_render, "render a bundle's splats along a camera path to mp4, or one "
                                             "capture frame beside its photo (--frame, PNG)"),
]
