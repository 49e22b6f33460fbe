"""The `twin capture synth` verb: render a synthetic capture with a progress bar (heavy imports happen inside)."""
from __future__ import annotations

import time

from spatial.capture.synth.config import SynthConfig
from twin_kit import Verb, emit_json, info, progress


def run_synth(cfg: SynthConfig, json_out: bool = False) -> int:
    """Render cfg.frames frames into cfg.out (and with cfg.bundle a ground-truth bundle); with json_out print
    {frames, seconds, per_frame_s, path, bundle, dynamic}."""
    from spatial.capture.synth.capture import synthesize_capture
    from spatial.capture.synth.gt_bundle import check_bundle_destination, write_ground_truth_bundle

    t0 = time.perf_counter()
    if cfg.bundle is not None:
        check_bundle_destination(cfg.bundle, cfg.out)
    with progress() as bar:
        task = bar.add_task("synth", total=cfg.frames, status="")
        path = synthesize_capture(
            cfg, cfg.out, on_frame=lambda i, s: bar.update(task, advance=1, status=f"{s:.2f} s/frame"))
    kind = "moving scene" if cfg.dynamic else "static scene"
    info(f"wrote {cfg.frames} frames ({cfg.width}x{cfg.height}, {kind}) and ground truth to {path} in "
         f"{time.perf_counter() - t0:.1f} s")
    if cfg.bundle is not None:
        write_ground_truth_bundle(path, cfg.bundle)
        info(f"wrote the ground-truth bundle {cfg.bundle} (true cameras and depth, no SfM)")
    secs = time.perf_counter() - t0
    if json_out:
        emit_json({"frames": cfg.frames, "seconds": round(secs, 3), "per_frame_s": round(secs / cfg.frames, 4),
                   "path": str(path), "bundle": str(cfg.bundle) if cfg.bundle is not None else None,
                   "dynamic": cfg.dynamic})
    return 0


VERBS = [Verb("capture synth", SynthConfig, run_synth,
              "render a synthetic phone capture of a textured room with exact ground truth")]
