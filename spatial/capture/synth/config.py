"""Configuration of the synthetic capture generator (light: no heavy imports, so the CLI can build options)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from twin_kit import opt, validate_config


@dataclass
class SynthConfig:
    """A rendered hand-held phone orbit around a table in a textured room, with exact ground truth."""

    out: Path = opt(Path("synth_capture"), "output directory (replaced if it holds an earlier synthetic capture)",
                    flag="--out", metavar="DIR")
    frames: int = opt(48, "number of frames rendered", low=1, high=100_000)
    width: int = opt(480, "image width in pixels (even, for yuv420p video)", low=16, high=8192,
                      multiple_of=2)
    height: int = opt(360, "image height in pixels (even, for yuv420p video)", low=16, high=8192,
                      multiple_of=2)
    seed: int = opt(0, "random seed: textures, trajectory, shake, exposure and sensor noise all follow from it",
                    low=0)
    fps: float = opt(10.0, "frame rate of the video and of the frame timestamps", low=0, low_open=True, high=1000)
    hfov_deg: float = opt(67.0, "horizontal field of view in degrees (a phone main camera is 65-70)",
                          low=10, high=150)
    marker_size_m: float = opt(0.15, "side of the ArUco marker's black square in metres (DICT_4X4_50 id 0)",
                               low=0, low_open=True, high=1.0)
    orbit_radius_m: float = opt(1.3, "mean horizontal distance from the table centre to the phone (table to walls)",
                                low=0.7, high=1.6)
    orbit_height_m: float = opt(1.45, "mean height of the phone above the floor (table to ceiling)",
                                low=0.9, high=2.2)
    arc_deg: float = opt(270.0, "how far around the table the phone walks, in degrees", low=0, high=360)
    shake: float = opt(1.0, "scale of the hand shake (translation + rotation jitter); 0 = tripod-smooth", low=0,
                       high=10)
    exposure_s: float = opt(0.008, "exposure time in seconds (1/125), sets the motion blur; 0 = none", low=0,
                            high=1)
    max_blur_px: float = opt(2.5, "cap on the motion-blur streak (95th percentile, pixels), keeps blur mild "
                             "when few frames make the orbit fast", low=0)
    noise: float = opt(1.0, "scale of the sensor noise; 0 = none", low=0, high=100)
    exposure_drift: float = opt(0.12, "std of the smooth log-gain drift (auto exposure); 0 = constant", low=0,
                                high=2)
    shadows: bool = opt(True, "cast shadow rays towards the light")
    jpeg_quality: int = opt(92, "JPEG quality of frames/*.jpg", low=1, high=100)
    video_crf: int = opt(18, "x264 constant rate factor of capture.mp4 (lower = better)", low=0, high=51)
    texture_scale: float = opt(1.0, "size of the surface patterns (noise cells, speckles) relative to the default: "
                                    "> 1 gives smoother surfaces (fewer details finer than a few pixels)", low=0.1,
                               high=20)
    dynamic: bool = opt(False, "a moving scene: on the table a box slides, a box spins and a chest's lid opens "
                               "while the phone films (per-pixel moving-part masks and part poses in the ground "
                               "truth)")
    bundle: Path | None = opt(None, "also write a scene bundle from the ground truth (true cameras, the frames, "
                                    "true depth, points fused from it; no SfM), ready for `twin splat` "
                                    "(replaced if it holds an earlier ground-truth bundle)", metavar="DIR")

    def __post_init__(self):
        validate_config(self)
