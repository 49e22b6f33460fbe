"""spatial's verbs: capture synth, capture marker, reconstruct, eval-poses, train-geometry, demo.

Configs here; heavy imports inside runners."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from spatial.capture.marker_sheet import MarkerConfig, run_marker
from spatial.capture.synth import SynthConfig, run_synth
from twin_kit import Verb, opt, validate_config


@dataclass
class ReconstructConfig:
    """Options of `twin reconstruct`."""

    input: Path = opt(help="video (mp4/mov), folder of photos, COLMAP model or transforms.json", positional=True)
    out: Path = opt(help="bundle directory to write, e.g. twins/NAME")
    overwrite: bool = opt(False, "replace an existing bundle at --out")
    poses: Path | None = opt(None, "use these poses (COLMAP model or transforms.json) instead of running SfM")
    method: Literal["sfm", "vggt"] = opt("sfm", "cameras and depth from structure from motion + plane sweep, "
                                                "or from one pass of a VGGT network (needs --weights)")
    weights: Path | None = opt(None, "VGGT checkpoint (model.pt / model.safetensors) for --method vggt; "
                                     "a local file, never downloaded")
    chunk: int = opt(0, "--method vggt on long videos: frames per network window (windows overlap and are "
                        "joined by a similarity transform); 0 = every frame in one pass", low=2, also=(0,))
    overlap: int = opt(8, "frames two consecutive windows share (with --chunk)", low=1)
    refine: bool = opt(False, "--method vggt: bundle-adjust the network's cameras on image tracks (pycolmap)")
    marker_size: float | None = opt(None, "side length in metres of a printed ArUco/AprilTag marker in the scene",
                                    low=0, low_open=True)
    known_distance: str | None = opt(None, "metric scale from the distance between two frames' cameras: "
                                           "'FRAME_A,FRAME_B,METRES'", metavar="A,B,M",
                                    pattern=r"[^,]+,[^,]+,[^,]+", pattern_help="'FRAME_A,FRAME_B,METRES'")
    max_side: int = opt(960, "working resolution: longest image side in pixels", low=64, high=16384)
    max_frames: int = opt(240, "most keyframes taken from a video", low=3)
    matching: Literal["auto", "sequential", "exhaustive"] = opt("auto", "feature matching strategy")
    mapper: Literal["global", "incremental"] = opt("global", "COLMAP mapper")
    max_features: int = opt(4096, "SIFT features per image", low=64)
    motion_masks: Literal["auto", "on", "off"] = opt(
        "auto", "keep SfM's features off moving parts (people, doors): auto = for videos; on = also for "
                "photos taken in order")
    depth_frames: int = opt(32, "most keyframes that get dense depth (spread over the capture)", low=1)
    depth_max_side: int = opt(320, "dense depth working resolution (longest side)", low=32, high=4096)
    mesh_triangles: int = opt(200_000, "collision mesh triangle budget after simplification", low=100)
    quiet: bool = opt(False, "no progress bars")

    def __post_init__(self):
        validate_config(self)


@dataclass
class EvalPosesConfig:
    """Options of `twin eval-poses`."""

    bundle: Path = opt(help="bundle (or COLMAP model / transforms.json) with the estimated poses", positional=True)
    reference: Path = opt(help="reference poses: COLMAP model directory or transforms.json")

    def __post_init__(self):
        validate_config(self)


@dataclass
class TrainGeometryConfig:
    """Options of `twin train-geometry`."""

    captures: list[Path] = opt(help="synthetic captures to train on (`twin capture synth` folders)", metavar="DIR")
    out: Path = opt(help="run folder to write, e.g. runs/geometry/NAME (model.safetensors, train.json)")
    steps: int = opt(2000, "optimiser steps", low=1)
    config: Literal["tiny"] = opt("tiny", "network size (the tiny VGGT configuration trains on a CPU)")
    size: int = opt(112, "network image size: longest side in pixels (a multiple of 14)", low=28, high=518,
                    multiple_of=14)
    frames: int = opt(6, "frames per training sequence", low=2, high=64)
    batch: int = opt(2, "sequences per step", low=1)
    max_stride: int = opt(3, "largest frame step inside a sequence (wider baselines)", low=1)
    lr: float = opt(1e-3, "peak learning rate (AdamW; warm-up, then cosine decay)", low=0, low_open=True)
    seed: int = opt(0, "random seed of the network and the sequence sampling", low=0)
    log_every: int = opt(10, "steps averaged per loss-history entry", low=1)
    save_every: int = opt(200, "steps between checkpoints", low=1)
    resume: bool = opt(False, "continue the run in --out from its last checkpoint")
    overwrite: bool = opt(False, "replace an existing run folder at --out")
    holdout: list[Path] = opt([], "held-out synthetic captures: after training, reconstruct them with the trained "
                                  "weights (and by SfM) and score poses and depth against their ground truth",
                              metavar="DIR")
    sfm: bool = opt(True, "also score the SfM path on the held-out captures, for comparison")
    threads: int = opt(0, "torch CPU threads (0 = torch's default)", low=0)
    quiet: bool = opt(False, "no progress bars")

    def __post_init__(self):
        validate_config(self)


@dataclass
class DemoConfig:
    """Options of `twin demo`."""

    out: Path = opt(Path("twins/demo"), "bundle directory for the reconstructed demo scene")
    capture: Path = opt(Path("captures/demo"), "where the synthetic capture is written")
    frames: int = opt(90, "frames in the synthetic video", low=3)
    width: int = opt(480, "synthetic video width (even)", low=64, high=4096, multiple_of=2)
    height: int = opt(360, "synthetic video height (even)", low=64, high=4096, multiple_of=2)
    seed: int = opt(0, "random seed of the synthetic scene and trajectory", low=0)
    quiet: bool = opt(False, "no progress bars")

    def __post_init__(self):
        validate_config(self)


def _run_reconstruct(cfg: ReconstructConfig, json_out: bool = False) -> int:
    from spatial.reconstruct import run_reconstruct

    return run_reconstruct(cfg, json_out=json_out)


def _run_eval(cfg: EvalPosesConfig, json_out: bool = False) -> int:
    from spatial.evaluation.evaluate import run_eval_poses

    return run_eval_poses(cfg, json_out=json_out)


def _run_train_geometry(cfg: TrainGeometryConfig, json_out: bool = False) -> int:
    from spatial.feedforward.train import run_train_geometry

    return run_train_geometry(cfg, json_out=json_out)


def _run_demo(cfg: DemoConfig, json_out: bool = False) -> int:
    from spatial.bundle import is_bundle
    from spatial.evaluation.demo import run_demo
    from spatial.sfm.colmap_log import quiet_colmap
    from twin_kit import check_output_dir

    # the demo replaces its own earlier results, never a folder that is not a bundle
    check_output_dir(cfg.out, inputs=[cfg.capture], overwrite=True, replaceable=is_bundle, what="--out")
    quiet_colmap()

    return run_demo(cfg, json_out=json_out)


VERBS = [
    Verb("reconstruct", ReconstructConfig, _run_reconstruct,
         "phone video or photos -> cameras, depth, points and collision mesh in a scene bundle"),
    Verb("eval-poses", EvalPosesConfig, _run_eval,
         "compare a bundle's cameras with reference poses (AUC@5/15/30, ATE)"),
    Verb("train-geometry", TrainGeometryConfig, _run_train_geometry,
         "train the small feed-forward geometry network on synthetic captures; score it on held-out ones"),
    Verb("demo", DemoConfig, _run_demo,
         "synthesise a capture, reconstruct it and report pose and depth error against ground truth"),
    Verb("capture synth", SynthConfig, run_synth,
         "write a synthetic phone capture (mp4 + JPEG frames + ground truth) of a textured room"),
    Verb("capture marker", MarkerConfig, run_marker,
         "write a printable ArUco marker sheet (PDF or PNG) whose black square is exactly --size metres"),
]
