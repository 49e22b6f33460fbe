"""A recorded episode ready to replay: the dataset checked, the robot rebuilt, each frame's link poses.

The robot is built once at the origin (base on z = 0, facing +x; its visual meshes, no scene, no physics steps);
every frame's link poses are the forward kinematics (Newton's `eval_fk`) of the recorded joint positions in that
base frame. An episode's recorded base pose (meta/episodes `robot_base`, x y z yaw as `--robot-pose` takes it)
places the whole robot in the scene, so episodes recorded at different spots replay on one model. Object poses,
the goal and the camera frames are read as recorded (privileged.object_poses, privileged.goal, the videos).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from twin_kit import InputError

STATE = "observation.state"
OBJECTS = "privileged.object_poses"
GOAL = "privileged.goal"
IMAGES = "observation.images."


@dataclass
class ReplayEpisode:
    """One episode's frames as the viewer draws them (metres; quaternions xyzw)."""

    index: int
    fps: int
    success: bool | None
    style_id: str
    style_families: list[str]        # the style families this episode varies (restyled episodes)
    seed: int | None
    base: np.ndarray                 # (4,) x y z yaw of the robot base on its support
    joint_q: np.ndarray              # (T, robot coords) recorded joint positions
    link_poses: np.ndarray           # (T, bodies, 7) link poses in the robot's base frame
    object_poses: np.ndarray         # (T, K, 7) world poses of the task objects
    goal: np.ndarray | None          # (T, 3) the task's goal point, when recorded
    images: dict[str, np.ndarray]    # camera name -> (T, H, W, 3) uint8 video frames

    @property
    def length(self) -> int:
        return len(self.joint_q)


def base_transform(base) -> np.ndarray:
    """(7,) position + quaternion xyzw of a base pose x y z yaw (the frame the robot was built in at the origin)."""
    x, y, z, yaw = (float(v) for v in base)
    return np.array([x, y, z, 0.0, 0.0, np.sin(yaw / 2), np.cos(yaw / 2)])


class ReplaySource:
    """A recorded dataset opened for replay: checked on opening (one-line errors), robot built by `build()`."""

    def __init__(self, root: str | Path, robot: str | None = None, scale: float | None = None):
        from policies.datasets.reader import read_dataset
        from policies.tasks.robots import PROFILES, robot_name

        self.root = Path(root)
        if not self.root.exists():
            raise InputError(f"--dataset {self.root}: no such dataset (record one with `twin record`)")
        self.data = read_dataset(self.root)
        if self.data.total_episodes == 0:
            raise InputError(f"--dataset {self.root}: holds no episodes")
        recorded = self.data.robot_type
        self.robot = robot_name(recorded or "")
        if self.robot not in PROFILES:
            raise InputError(f"--dataset {self.root}: recorded with robot {recorded!r}, which Twin cannot replay "
                             f"(robots: {', '.join(sorted(PROFILES))})")
        if robot is not None and robot_name(robot) != self.robot:
            raise InputError(f"--robot {robot}: {self.root} was recorded with {recorded} (leave out --robot)")
        features = self.data.spec.features
        if STATE not in features:
            raise InputError(f"--dataset {self.root}: has no {STATE} (the joint positions a replay needs)")
        self.joint_names = features[STATE].names
        self.object_names: list[str] = []
        if OBJECTS in features:
            names = features[OBJECTS].names
            self.object_names = list(names.get("objects", [])) if isinstance(names, dict) else []
            if len(self.object_names) != features[OBJECTS].shape[0]:
                self.object_names = [f"object_{k}" for k in range(features[OBJECTS].shape[0])]
        self.cameras = [k[len(IMAGES):] for k in self.data.spec.video_keys if k.startswith(IMAGES)]
        self.scale = scale
        self.world = None

    @property
    def total_episodes(self) -> int:
        return self.data.total_episodes

    @property
    def fps(self) -> int:
        return self.data.fps

    @property
    def task(self) -> str:
        return self.data.tasks[0] if self.data.tasks else ""

    def check_episode(self, i: int) -> dict:
        """Episode i's meta row, refusing an index out of range and an episode without its base pose."""
        n = self.total_episodes
        if not 0 <= i < n:
            raise InputError(f"--episode {i}: {self.root} has {n} episode{'s' if n != 1 else ''} (0-{n - 1})")
        meta = self.data.episodes[i].meta
        base = meta.get("robot_base")
        if not isinstance(base, list) or len(base) != 4:
            raise InputError(f"--dataset {self.root}: episode {i} has no robot_base in meta/episodes (recorded "
                             "before `twin record` stored the base pose); record it again to replay it")
        return meta

    def metres_per_unit(self, i: int) -> float:
        """Metres per scene unit of episode i's scene (as recorded; `--scale` must agree)."""
        rec = self.data.episodes[i].meta.get("metres_per_unit")
        if rec is None:
            return float(self.scale or 1.0)
        if self.scale is not None and abs(self.scale - float(rec)) > 1e-6 * float(rec):
            raise InputError(f"--scale {self.scale:g}: {self.root} was recorded at {float(rec):g} metres per scene "
                             "unit (leave out --scale)")
        return float(rec)

    def build(self) -> None:
        """Build the recorded robot at the origin with its visual meshes, and check its joints are the dataset's."""
        from policies.record.rollout import joint_names
        from sim import WorldConfig, build_world

        if self.world is not None:
            return
        world = build_world(WorldConfig(scene=None, robot=self.robot, worlds=1, solver="featherstone",
                                        visuals=True, check_collisions=False))
        names = joint_names(world)
        if isinstance(self.joint_names, list) and list(self.joint_names) != names:
            raise InputError(f"--dataset {self.root}: its joints ({', '.join(map(str, self.joint_names[:4]))}, ...) "
                             f"are not {self.robot}'s ({', '.join(names[:4])}, ...)")
        if len(names) != self.data.spec.features[STATE].shape[0]:
            raise InputError(f"--dataset {self.root}: {STATE} has {self.data.spec.features[STATE].shape[0]} "
                             f"values, {self.robot} has {len(names)} joint coordinates")
        self.world = world

    def link_poses(self, q: np.ndarray) -> np.ndarray:
        """(T, bodies, 7) link poses in the robot's base frame for joint positions (T, robot coords)."""
        import newton
        import warp as wp

        w = self.world
        m = w.model
        full = np.tile(w.default_q.astype(np.float32), (len(q), 1))
        s = w.robot_coord_start
        full[:, s:s + q.shape[1]] = q
        state = m.state()
        out = np.empty((len(q), w.bodies_per_world, 7))
        for t in range(len(q)):
            newton.eval_fk(m, wp.array(full[t], dtype=wp.float32, device=m.device), m.joint_qd, state)
            out[t] = state.body_q.numpy()[:w.bodies_per_world]
        return out

    def load(self, i: int) -> ReplayEpisode:
        """Episode i: frames read, link poses computed, videos decoded (call `build()` first)."""
        meta = self.check_episode(i)
        frames = self.data.episode_frames(i)
        q = frames[STATE].astype(np.float64)
        T = len(q)
        objects = frames[OBJECTS].astype(np.float64).reshape(T, -1, 7) if OBJECTS in frames else np.zeros((T, 0, 7))
        images = {c: self.data.episode_video(i, IMAGES + c) for c in self.cameras
                  if IMAGES + c in self.data.episodes[i].videos}
        success = meta.get("success")
        seed = meta.get("seed")
        return ReplayEpisode(index=i, fps=self.fps, success=None if success is None else bool(success),
                             style_id=str(meta.get("style_id", "")), style_families=_families(meta.get("style")),
                             seed=None if seed is None else int(seed),
                             base=np.asarray(meta["robot_base"], np.float64), joint_q=q, link_poses=self.link_poses(q),
                             object_poses=objects, goal=frames[GOAL].astype(np.float64) if GOAL in frames else None,
                             images=images)


def _families(style) -> list[str]:
    """The style families a recorded style (JSON text) sets, e.g. ["background", "light_colour"]."""
    try:
        d = json.loads(style) if isinstance(style, str) else {}
    except ValueError:
        return []
    return sorted(k for k, v in d.items() if v is not None and k not in ("seed", "split")) if isinstance(d, dict) \
        else []
