"""The `twin capture synth` verb: render a synthetic capture with a progress bar (heavy imports happen inside)."""
from __future__ import annotations

import time

from spatial.capture.synth.config import SynthConfig
from twin_kit import Verb, emit_json, info, progress


def run_synth(cfg: SynthConfig, json_out: bool = False) -> int:
    """Render cfg.frames frames into cfg.out; with json_out print {frames, seconds, per_frame_s, path}."""
    from spatial.capture.synth.capture import synthesize_capture

    t0 = time.perf_counter()
    with progress() as bar:
        task = bar.add_task("synth", total=cfg.frames, status="")
        path = synthesize_capture(
            cfg, cfg.out, on_frame=lambda i, s: bar.update(task, advance=1, status=f"{s:.2f} s/frame"))
    secs = time.perf_counter() - t0
    info(f"wrote {cfg.frames} frames ({cfg.width}x{cfg.height}) and ground truth to {path} in {secs:.1f} s")
    if json_out:
        emit_json({"frames": cfg.frames, "seconds": round(secs, 3), "per_frame_s": round(secs / cfg.frames, 4),
                   "path": str(path)})
    return 0


VERBS = [Verb("capture synth", SynthConfig, run_synth,
              "render a synthetic phone capture of a textured room with exact ground truth")]
