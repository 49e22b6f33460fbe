"""`RecordConfig`: what `twin record` records (task, robot, scene), how (worlds, cameras, restyling, workers)
and where (a LeRobotDataset folder). Light to import: the CLI builds its options from this module alone."""
from __future__ import annotations

from dataclasses import dataclass

from policies.tasks.spec import TASK_NAMES
from twin_kit import InputError, opt, validate_config

RESTYLES = ("none", "procedural", "cosmos")
CAMERA_NAMES = ("front", "wrist", "head")


@dataclass
class RecordConfig:
    """Record scripted-expert demonstrations of a task in a scene as a LeRobotDataset v3.0."""

    bundle: str = opt(help="scene bundle directory (metric, or give --scale) or a mesh file in metres",
                      positional=True)
    out: str = opt(help="dataset folder to write (e.g. datasets/NAME); --append continues an existing one")
    task: str = opt("pick_place", "task: reach, push or pick_place", choices=TASK_NAMES)
    robot: str = opt("franka", "robot: franka (all tasks), so101 (reach, pick_place), g1 (reach)")
    episodes: int = opt(10, "episodes to record (failures included: the dataset says which succeeded)",
                        low=1, high=1_000_000)
    cameras: str | None = opt(None, "comma-separated cameras: front and the robot's mounted one (wrist; head on "
                                    "g1), or none (state only); default: front and the mounted camera")
    size: int = opt(128, "camera image width and height in pixels", low=16, high=1024, multiple_of=2)
    fps: int = opt(10, "recorded frames per second (a divisor of the control rate, 1 / --control-dt)",
                   low=1, high=1000)
    restyle: str = opt("none", "appearance per episode: none, procedural (CPU) or cosmos (--cosmos-weights)",
                       choices=RESTYLES)
    style_split: str = opt("train", "style parameter split the episodes' styles are drawn from",
                           choices=("train", "held_out", "train_wide"))
    style_families: str | None = opt(None, "comma-separated style families to vary (default: all)")
    style_count: int | None = opt(None, "each restyled episode varies only this many of the families, chosen at "
                                        "random per episode (default: all of them at once)", low=1, high=64)
    style_variant: int = opt(0, "which of each episode's styles to draw: another variant gives the same seeds (so "
                                "the same expert trajectories) another appearance, to record a demo in several",
                             low=0, high=2**31 - 1)
    cosmos_weights: str | None = opt(None, "with --restyle cosmos: local diffusers Cosmos-Transfer2.5 folder")
    cosmos_controlnet: str | None = opt(None, "with --restyle cosmos: local ControlNet folder (depth, seg, edge "
                                              "or blur; default: the pipeline's own)")
    control: str = opt("auto", "with --restyle cosmos: the map fed to the ControlNet (auto: the control type its "
                               "folder's path names)", choices=("auto", "depth", "seg", "edge", "blur"))
    worlds: int = opt(16, "parallel worlds per process (episodes run side by side)", low=1, high=4096)
    workers: int = opt(0, "processes recording shards of the episodes (0: 1, or every CPU of the --ray "
                          "cluster); more than 1 without --ray starts a local Ray instance", low=0, high=4096)
    ray: str | None = opt(None, "shard episodes over a Ray cluster: its address, or auto (a running cluster, "
                                "else a local one)")
    scale: float | None = opt(None, "metres per scene unit (required when the bundle's scale is arbitrary)",
                              low=0.0, low_open=True)
    seed: int = opt(0, "seed of episode 0; episode k (its index in the dataset) uses seed + k", low=0,
                    high=2**62)
    robot_pose: tuple[float, float, float, float] | None = opt(
        None, "robot base x y z yaw (m, m, m, rad); default: a free spot on the support surface", metavar="X")
    episode_s: float | None = opt(None, "episode length limit in seconds (default: the task's)", low=0.1,
                                  high=3600)
    control_dt: float = opt(0.02, "seconds per control step (the expert's period)", low=0.001, high=0.1)
    append: bool = opt(False, "continue the dataset at --out (same task, robot and cameras)")

    def __post_init__(self):
        validate_config(self)


def camera_list(cfg: RecordConfig, mounted: str) -> list[str]:
    """The cameras to record, in order; `mounted` is the robot's mounted camera name (wrist or head)."""
    if cfg.cameras is None:
        return ["front", mounted]
    text = cfg.cameras.strip().lower()
    if text == "none":
        return []
    names = [c.strip() for c in text.split(",")]
    allowed = ("front", mounted)
    for c in names:
        if c not in allowed:
            raise InputError(f"--cameras: unknown camera {c!r} for robot {cfg.robot!r} (cameras: "
                             f"{', '.join(allowed)}, or none)")
    if len(set(names)) != len(names):
        raise InputError(f"--cameras: {cfg.cameras!r} names a camera twice")
    return names


def steps_per_frame(cfg: RecordConfig) -> int:
    """Control steps between recorded frames (1 / (fps * control_dt), a whole number)."""
    k = 1.0 / (cfg.fps * cfg.control_dt)
    if k < 1 - 1e-6 or abs(k - round(k)) > 1e-6:
        rate = 1.0 / cfg.control_dt
        raise InputError(f"--fps {cfg.fps} does not divide the control rate ({rate:g} steps/s at --control-dt "
                         f"{cfg.control_dt:g}); choose a divisor of it")
    return int(round(k))


def family_list(cfg: RecordConfig) -> tuple[str, ...] | None:
    """The style families to vary (None: all), checked against the known ones and --style-count."""
    from policies.restyle import STYLE_FAMILIES

    if cfg.style_families is None:
        if cfg.style_count is not None and cfg.style_count > len(STYLE_FAMILIES):
            raise InputError(f"--style-count {cfg.style_count}: there are only {len(STYLE_FAMILIES)} style families")
        return None
    names = tuple(f.strip() for f in cfg.style_families.split(",") if f.strip())
    unknown = [f for f in names if f not in STYLE_FAMILIES]
    if unknown or not names:
        raise InputError(f"--style-families: unknown family {unknown[0] if unknown else cfg.style_families!r} "
                         f"(known: {', '.join(STYLE_FAMILIES)})")
    if cfg.style_count is not None and cfg.style_count > len(names):
        raise InputError(f"--style-count {cfg.style_count} exceeds the {len(names)} families of --style-families")
    return names
