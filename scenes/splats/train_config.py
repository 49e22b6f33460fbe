"""The typed configuration of `twin splat`: one documented field per CLI option."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from spatial import BundlePaths
from twin_kit import opt, validate_config

BACKENDS = ("auto", "gsplat", "warp", "torch")  # rasterizer backends (scenes.rendering.rasterize)
LR = dict(low=0, low_open=True, high=10)  # a learning rate: positive, finite
DEVICE = dict(pattern=r"auto|cpu|cuda(:\d+)?", pattern_help="auto, cpu, cuda or cuda:N")


@dataclass
class SplatConfig:
    """Train 3D Gaussian splats on a scene bundle's images and cameras; writes splats.ply into the bundle."""

    bundle: Path = opt(help="scene bundle directory (needs cameras.json, images/ and points.ply)", positional=True)
    steps: int = opt(800, "optimisation steps (one random training view per step)", low=1)
    resolution: int = opt(480, "long side of the training images in pixels (bundle images are downscaled; "
                               "0 = full size)", low=0, high=16384)
    coarse_fraction: float = opt(0.3, "render the first fraction of the steps at half resolution (4x fewer "
                                      "pixels: a fast warm-up on the CPU)", low=0, high=1, high_open=True)
    max_gaussians: int = opt(100_000, "budget: densification never grows the set beyond this many Gaussians",
                             low=1)
    sh_degree: int = opt(3, "spherical-harmonic degree of the view-dependent colour (0-3)", low=0, high=3)
    sh_increase_every: int = opt(250, "raise the active SH degree by one every this many steps", low=1)
    strategy: str = opt("default", "densification: 'default' (3DGS adaptive density control) or 'mcmc' "
                                   "(relocate dead Gaussians, fixed budget)", choices=("default", "mcmc"))
    eval_every_n: int = opt(8, "hold out every n-th frame (sorted by name) for evaluation; 0 = train on all",
                       low=2, also=(0,))
    eval_interval: int = opt(500, "evaluate on the held-out frames every this many steps (0 = only at the end)",
                        low=0)
    checkpoint_every: int = opt(500, "write a checkpoint every this many steps (and always at the end) into "
                                     ".NAME.splat_checkpoints/ beside the bundle; removed when training succeeds "
                                     "unless --keep-checkpoints", low=1)
    keep_checkpoints: bool = opt(False, "keep the checkpoints after a successful run (a failed or interrupted "
                                        "run always keeps them, for --resume)")
    resume: bool = opt(False, "continue from the last checkpoint of this bundle instead of starting over")
    seed: int = opt(0, "random seed (view order, initialisation noise, densification sampling)",
                    low=0, high=2**32 - 1)
    device: str = opt("auto", "torch device: auto (cuda when available, else cpu), cpu or cuda", **DEVICE)
    backend: str = opt("auto", "rasterizer backend: auto (gsplat on CUDA, Warp on the CPU), gsplat, warp or torch",
                       choices=BACKENDS)
    # learning rates (3DGS defaults, means scaled by the scene extent and decayed exponentially)
    lr_means: float = opt(1.6e-4, "initial learning rate of the centres, times the scene extent", **LR)
    lr_means_final: float = opt(1.6e-6, "final learning rate of the centres, times the scene extent", **LR)
    lr_sh_dc: float = opt(2.5e-3, "learning rate of the base colour (SH band 0)", **LR)
    lr_sh_rest: float = opt(1.25e-4, "learning rate of the higher SH bands", **LR)
    lr_opacity: float = opt(5e-2, "learning rate of the opacity logits", **LR)
    lr_scales: float = opt(5e-3, "learning rate of the log scales", **LR)
    lr_quats: float = opt(1e-3, "learning rate of the rotations", **LR)
    ssim_lambda: float = opt(0.2, "weight of the D-SSIM term in the loss (the rest is L1)", low=0, high=1)
    # densification schedule (steps); defaults are compressed for short CPU runs
    refine_start: int = opt(100, "first step at which densification runs", low=0)
    refine_stop_fraction: float = opt(0.75, "densification stops after this fraction of the steps", low=0,
                                        high=1)
    refine_every: int = opt(100, "densify / relocate every this many steps", low=1)
    reset_opacity_every: int = opt(3000, "default strategy: reset opacities every this many steps",
                                  low=1)
    grad_threshold: float = opt(8e-5, "default strategy: clone/split Gaussians whose mean 2D gradient "
                                      "(normalised device coordinates) exceeds this (3DGS uses 2e-4 over 30k "
                                      "steps; lower densifies faster for short CPU runs)", low=0,
                                  low_open=True)
    init_opacity: float = opt(0.1, "opacity of the initial Gaussians", low=0, high=1, low_open=True,
                             high_open=True)
    backdrop: bool = opt(True, "also seed Gaussians on the support plane and on a far shell, coloured from the "
                               "images, where the fused points leave the background empty")
    backdrop_points: int = opt(20000, "seeds on the support plane (the shell gets half as many); together at "
                                      "most 40 %% of --max-gaussians", low=0)
    background: str = opt("black", "background colour behind the splats: black, white or random",
                          choices=("black", "white", "random"))
    quiet: bool = opt(False, "no progress bar")
    threads: int = opt(0, "torch CPU threads (0 = torch's default, one per core); 1 is several times faster when "
                          "other work shares a 2-core CPU", low=0, high=1024)
    # moving scenes: 4D Gaussians (scenes.dynamic)
    dynamic: bool = opt(False, "train 4D Gaussians (canonical Gaussians + a HexPlane deformation field over time) "
                               "into the bundle's dynamic/, and in the same run a static baseline on the same "
                               "frames and steps (on 2 CPU cores, --resolution 160 --max-gaussians 15000 --steps "
                               "2500 --threads 1 trains a 96-frame capture in 5-10 minutes)")
    warmup_fraction: float = opt(0.2, "--dynamic: the first fraction of the steps trains static Gaussians "
                                      "(4DGaussians' coarse stage) before the deformation field joins", low=0,
                                 high=1, high_open=True)
    static_baseline: bool = opt(True, "--dynamic: also continue the warm-up as static 3DGS for the remaining steps "
                                      "and report its held-out PSNR (psnr_static)")
    plane_resolution: int = opt(32, "--dynamic: cells per axis of the coarsest HexPlane level", low=2, high=1024)
    plane_levels: int = opt(4, "--dynamic: HexPlane levels, each twice as fine as the last (as 4DGaussians)",
                            low=1, high=4)
    plane_features: int = opt(16, "--dynamic: feature channels per HexPlane level", low=1, high=256)
    deform_width: int = opt(64, "--dynamic: width of the deformation MLP (trunk and the three heads)", low=4,
                            high=1024)
    time_resolution: int = opt(0, "--dynamic: cells along time of the HexPlane (0 = one per 8 frames, at least 4: "
                                  "each instant is seen from one view only, so motion must be smooth over several "
                                  "frames)", low=0, high=4096)
    exposure: bool = opt(False, "--dynamic: compensate a phone's drifting auto exposure in both models: an RGB gain "
                                "per training frame, re-fitted in closed form whenever the frame is trained on; "
                                "held-out frames take the gain interpolated in time from their neighbours. For "
                                "walk-around captures whose exposure drifts; off by default, as on a near-static "
                                "video (../shared/data/bedroom) the gains absorb the movers and cost 5 dB")
    lr_deform: float = opt(1.6e-3, "--dynamic: initial learning rate of the deformation MLP, times the scene "
                                   "extent (decays tenfold)", **LR)
    lr_grid: float = opt(1.6e-2, "--dynamic: initial learning rate of the HexPlane features (decays tenfold; "
                                 "not scaled by the scene extent: the planes span the normalised bounds)", **LR)

    def __post_init__(self):
        validate_config(self)

    def checkpoint_path(self) -> Path:
        """Where checkpoints live: a hidden sibling of the bundle, so the bundle itself stays atomic."""
        return BundlePaths(Path(self.bundle).resolve()).splat_checkpoints / "last.pt"


@dataclass
class RenderConfig:
    """Render a trained bundle's splats: a fly-through video, or one capture frame next to its real image."""

    bundle: Path = opt(help="scene bundle directory holding splats.ply", positional=True)
    out: Path | None = opt(None, "output file: .mp4 for a camera path (default render.mp4), .png for --frame "
                                 "(default BUNDLE_FRAME.png)")
    camera_path: str = opt("orbit", "orbit (circle the scene centre at the capture's height), frames (through "
                                    "the capture cameras) or a camera-path JSON file", metavar="orbit|frames|FILE")
    frame: str | None = opt(None, "render this capture frame (camera name) side by side with its real image "
                                  "into a PNG instead of a video")
    num_frames: int = opt(0, "frames of the video; 0 = auto (orbit: 120, frames: two per capture camera)",
                     low=0, high=100_000)
    fps: int = opt(30, "video frame rate", low=1, high=240)
    resolution: int = opt(480, "long side of the rendered frames in pixels (0 = the capture's size)", low=0,
                          high=16384)
    device: str = opt("auto", "torch device: auto, cpu or cuda", **DEVICE)
    backend: str = opt("auto", "rasterizer backend: auto, gsplat, warp or torch", choices=BACKENDS)
    background: str = opt("black", "background colour: black or white", choices=("black", "white"))
    time: bool = opt(False, "render the dynamic splats (dynamic/, from `twin splat --dynamic`): time runs from the "
                            "capture's first frame to its last over the path; with --frame, at that frame's time")
    quiet: bool = opt(False, "no progress bar")

    def __post_init__(self):
        validate_config(self)
