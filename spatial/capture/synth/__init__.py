"""Synthetic captures: a ray-cast hand-held phone orbit around a table, with exact cameras, depth and mesh.

The default input of `make demo` and the ground truth of the tests. Public API:
`SynthConfig`, `synthesize_capture(cfg, out) -> Path`, `load_ground_truth(out) -> GroundTruth`,
`run_synth(cfg, json_out=False) -> int` (the `twin capture synth` verb). Heavy modules load lazily.
"""
from __future__ import annotations

from spatial.capture.synth.config import SynthConfig

__all__ = ["GroundTruth", "SynthConfig", "load_ground_truth", "run_synth", "synthesize_capture"]


def __getattr__(name: str):
    if name in ("synthesize_capture", "load_ground_truth", "GroundTruth"):
        from spatial.capture.synth import capture

        return getattr(capture, name)
    if name == "run_synth":
        from spatial.capture.synth.cli import run_synth

        return run_synth
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
