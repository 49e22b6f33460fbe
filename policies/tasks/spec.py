"""`TaskConfig`: everything that defines a batch of task episodes: scene, robot, objects' reset ranges, timing.

One config builds a `TaskEnv` (policies.tasks.env); the recorder and the expert evaluation turn it into CLI
options with `twin_kit.add_config_arguments`. Reset ranges left at None take the robot's defaults
(`policies.tasks.robots`), so the same task runs on a Franka and on an SO-101.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from twin_kit import opt

TASK_NAMES = ("reach", "push", "pick_place")


@dataclass
class TaskConfig:
    """A task in a scene: which robot, how many parallel worlds, how episodes start and how long they run."""

    task: str = opt("pick_place", "task: reach, push or pick_place", choices=TASK_NAMES)
    bundle: str | None = opt(None, "scene bundle directory or mesh file (None: an empty floor)")
    robot: str = opt("franka", "robot: franka (all tasks), so101 (reach, pick_place), g1 (reach; the fixed-pelvis "
                               "upper body g1_upper)")
    scale: float | None = opt(None, "metres per scene unit (required when the bundle's scale is arbitrary)",
                              low=0.0, low_open=True)
    robot_pose: tuple[float, float, float, float] | None = opt(
        None, "robot base x y z yaw (m, m, m, rad); default: a free spot on the support surface")
    worlds: int = opt(16, "parallel worlds (episodes run side by side)", low=1)
    seed: int = opt(0, "seed of the first episode's reset; episode k of a run uses seed + k", low=0)
    control_dt: float = opt(0.02, "seconds per environment step (the policy's control period)", low=0.001, high=0.1)
    substeps: int = opt(4, "physics steps per environment step", low=1, high=64)
    episode_s: float | None = opt(None, "episode length in seconds (None: the task's default)", low=0.1)
    hold_s: float = opt(0.3, "seconds the success condition must hold before an episode succeeds", low=0.0)
    ring: tuple[float, float] | None = opt(None, "min and max distance (m) of objects from the robot base axis "
                                                 "(None: the robot's default)")
    sector_deg: float | None = opt(None, "objects lie within this angle either side of the robot's forward "
                                         "direction (None: the robot's default)", low=0.0, high=180.0)
    support_plane: bool = opt(True, "the support continues beyond the scan's edges and holes (an invisible "
                                    "collision plane at its height): objects never fall off a partial scan")
    solver: str = opt("mujoco_cpu", "physics solver (see `twin sim --help`)")
    threads: int = opt(1, "threads stepping the worlds (solver mujoco_cpu; 0 = all cores)", low=0)
    visuals: bool = opt(False, "give the robot its visual meshes (needed by cameras, not by physics)")


@dataclass
class TaskState:
    """What success predicates and rewards read, for every world at one instant (NumPy, world first)."""

    ee_pos: np.ndarray          # (N, 3) tool centre point
    ee_quat: np.ndarray         # (N, 4) xyzw
    object_pos: np.ndarray      # (N, K, 3) object origins (centre of the bottom face)
    object_quat: np.ndarray     # (N, K, 4) xyzw
    goal: np.ndarray            # (N, 3) reach target, zone or bin position (task-specific)
    support_z: float            # height of the support surface
    objects: tuple = ()         # the K TaskObjects, in order


@dataclass(frozen=True)
class TaskDef:
    """One task: its objects, robots, default length, reset sampler, success predicate and dense reward.

    `sample(workspace, rng, profile, objects) -> (object poses (K, 4) x y z yaw, goal (3,))`;
    `success(state) -> (N,) bool` (instantaneous; the env asks it to hold for `hold_s`); `reward(state) -> (N,)`.
    `goal_in_state`: the goal is appended to `observation.state` (in the robot's base frame), for tasks whose goal
    no camera sees (a reach target is a point in the air), as Isaac Lab's reach puts its command in the observation.
    """

    name: str
    objects: tuple[str, ...]
    robots: tuple[str, ...]
    episode_s: float
    sample: Callable
    success: Callable
    reward: Callable
    goal_in_state: bool = False
