"""The batched expert rollout: every world runs one episode at a time, rendering its cameras at each recorded
frame, and starts the next episode number as soon as its episode ends.

Episode k resets from seed `cfg.seed + k` and draws its style from the same seed, whatever world or process
runs it: worlds are independent (MuJoCo steps each in its own data, resets clear its warm start), so its
content is reproducible. A frame is recorded every `steps_per_frame` control steps: the observation (state,
privileged poses, images) at the frame's first step, and as its action the joint targets of its last step
(what a policy at the dataset's rate holds until the next frame); reward, done and success after the frame.
`record_episodes` yields the dataset's `Layout` first, then each `Episode` as it finishes (not in order).

Depth and segmentation feed the restyler and are not stored: LeRobot videos are lossy 8-bit yuv420p (labels
would bleed at edges, depth would keep 256 levels), and raw (T, H, W) arrays in the parquet files would outweigh
everything else; an episode's maps are reproduced exactly by recording its seed again.
"""
from __future__ import annotations

import contextlib
import sys
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from policies.datasets import DatasetSpec, Feature, standard_spec
from policies.record.cameras import RecordCamera, build_cameras, rig_of
from policies.record.config import RecordConfig, camera_list, family_list, steps_per_frame
from policies.record.restyling import Restyler, episode_style, load_restyler, style_number

INSTRUCTIONS = {
    "reach": "move the hand to the target point",
    "push": "push the cube into the target zone",
    "pick_place": "pick up the cube and put it in the bin",
}
POSE = ["x", "y", "z", "qx", "qy", "qz", "qw"]


@dataclass
class Layout:
    """What every episode of a recording holds: the dataset spec, the task's instruction, the camera keys."""

    spec: DatasetSpec
    instruction: str
    cameras: list[str]


@dataclass
class Episode:
    """One finished episode, ready for `DatasetWriter.add_episode` once `realise()`d (its videos restyled)."""

    number: int                           # k: its index in the dataset, its seed is cfg.seed + k
    seed: int
    frames: dict[str, np.ndarray]         # recorded non-video features, (T, ...)
    videos: dict[str, np.ndarray] | None  # camera key -> (T, H, W, 3) uint8; None until realised
    success: bool
    style_id: str
    style: str                            # the style as JSON
    steps: int                            # control steps simulated
    robot_base: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)  # x y z yaw: base on its support
    metres_per_unit: float = 1.0          # the scene's scale (world metres per scene unit)
    pending: Callable[[], dict] | None = field(default=None, repr=False)  # makes `videos` (deferred restyle)

    def realise(self) -> Episode:
        """Restyle the camera videos now if that was deferred (`Recorder(defer_restyle=True)`); returns self."""
        if self.pending is not None:
            self.videos, self.pending = self.pending(), None
        return self

    @property
    def length(self) -> int:
        return len(self.frames["action"])

    def meta(self) -> dict:
        """The episode's own columns in meta/episodes (robot_base and metres_per_unit place a replay in the scene,
        as `--robot-pose` and `--scale` would)."""
        return {"seed": self.seed, "success": self.success, "style_id": self.style_id, "style": self.style,
                "control_steps": self.steps, "robot_base": [float(v) for v in self.robot_base],
                "metres_per_unit": float(self.metres_per_unit)}


def task_config(cfg: RecordConfig, worlds: int, visuals: bool):
    from policies.tasks.spec import TaskConfig

    return TaskConfig(task=cfg.task, bundle=cfg.bundle, robot=cfg.robot, scale=cfg.scale,
                      robot_pose=cfg.robot_pose, worlds=worlds, seed=cfg.seed, control_dt=cfg.control_dt,
                      episode_s=cfg.episode_s, visuals=visuals)


def joint_names(world) -> list[str]:
    """Names of the robot's joint coordinates (the state and action vectors), from the model's joint labels."""
    m = world.model
    jpw = m.joint_count // world.n
    starts = m.joint_q_start.numpy()[:jpw + 1]
    names = []
    for j in range(jpw):
        label = str(m.joint_label[j]).split("/")[-1]
        k = int(starts[j + 1] - starts[j]) if j + 1 < len(starts) else 1
        names += [label] if k == 1 else [f"{label}_{c}" for c in range(k)]
    s, n = world.robot_coord_start, world.robot.coord_count
    picked = names[s:s + n]
    return picked if len(picked) == n and len(set(picked)) == n else [f"joint_{i}" for i in range(n)]


def dataset_spec(env, cameras: list[RecordCamera], cfg: RecordConfig) -> DatasetSpec:
    """The recording's features: state, camera videos, action, reward, done, success, privileged poses, style."""
    names = joint_names(env.world)
    extra = {"next.success": Feature("bool", (1,)),
             "privileged.ee_pose": Feature("float32", (7,), POSE),
             "privileged.goal": Feature("float32", (3,), ["x", "y", "z"])}
    if env.objects:
        extra["privileged.object_poses"] = Feature("float32", (len(env.objects), 7),
                                                   {"objects": [o.name for o in env.objects], "pose": POSE})
    extra["style_id"] = Feature("int64", (1,))
    cams = {c.name: (cfg.size, cfg.size) for c in cameras}
    return standard_spec(cfg.fps, env.profile.name, env.state_names(), names, cams, extra=extra)


@dataclass
class _Track:
    """The frames of one world's running episode."""

    number: int
    seed: int
    rows: dict[str, list] = field(default_factory=dict)
    rgb: dict[str, list] = field(default_factory=dict)
    depth: dict[str, list] = field(default_factory=dict)
    seg: dict[str, list] = field(default_factory=dict)
    w2c: dict[str, list] = field(default_factory=dict)

    def add(self, key: str, value) -> None:
        self.rows.setdefault(key, []).append(value)


class Recorder:
    """A TaskEnv, its expert and cameras, recording episode numbers in its worlds (see module doc)."""

    def __init__(self, cfg: RecordConfig, worlds: int, restyler: Restyler | None = None,
                 defer_restyle: bool = False):
        """defer_restyle: finished episodes carry their raw frames and restyle on `Episode.realise()`, so the
        thread that writes them does that work while this one simulates (`twin record` in one process)."""
        from policies.experts.registry import make_expert
        from policies.tasks.env import TaskEnv
        from policies.tasks.robots import get_profile

        self.cfg = cfg
        self.defer_restyle = defer_restyle
        self.k = steps_per_frame(cfg)
        self.families = family_list(cfg)
        names = camera_list(cfg, rig_of(get_profile(cfg.robot).name).mount_name)
        self.env = TaskEnv(task_config(cfg, worlds, visuals=bool(names)))
        self.expert = make_expert(self.env)
        self.cameras = build_cameras(self.env, names, cfg.size)   # world 0 is at its home pose here
        self.restyler = restyler if restyler is not None else load_restyler(
            cfg.restyle, cfg.cosmos_weights, cfg.cosmos_controlnet, cfg.control)
        self.layout = Layout(dataset_spec(self.env, self.cameras, cfg), INSTRUCTIONS[cfg.task],
                             [f"observation.images.{c.name}" for c in self.cameras])

    # ------------------------------------------------------------------ episodes

    def run(self, numbers) -> Iterator[Episode]:
        """Record the episode numbers, yielding each episode when it ends."""
        env, n = self.env, self.env.n
        pending = deque(int(k) for k in numbers)
        tracks: list[_Track | None] = [None] * n

        def start(worlds: list[int]) -> None:
            idx = [i for i in sorted(worlds)][:len(pending)]
            if not idx:
                return
            nums = [pending.popleft() for _ in idx]
            mask = np.zeros(n, dtype=bool)
            mask[idx] = True
            env.reset(seeds=[self.cfg.seed + k for k in nums], mask=mask)
            self.expert.reset(mask)
            for i, k in zip(idx, nums, strict=True):
                tracks[i] = _Track(k, self.cfg.seed + k)

        start(list(range(n)))
        while any(t is not None for t in tracks):
            live = [i for i in range(n) if tracks[i] is not None]
            self._observe(tracks, live)
            for _ in range(self.k):
                action = self.expert.act()
                _, reward, _, _ = env.step(action)
            reward = reward.numpy()
            for i in live:
                t = tracks[i]
                t.add("action", action[i].astype(np.float32))
                t.add("next.reward", np.float32(reward[i]))
                t.add("next.done", bool(env.done[i]))
                t.add("next.success", bool(env.success[i]))
            ended = [i for i in live if env.done[i]]
            for i in ended:
                ep = self._finish(tracks[i], bool(env.success[i]), int(env.steps[i]))
                tracks[i] = None
                yield ep
            start(ended)

    def _observe(self, tracks: list, live: list[int]) -> None:
        s = self.env.state()
        q = self.env.observe(s)["observation.state"].numpy()
        ee = np.concatenate([s.ee_pos, s.ee_quat], 1).astype(np.float32)
        objects = np.concatenate([s.object_pos, s.object_quat], 2).astype(np.float32) if self.env.objects else None
        for i in live:
            t = tracks[i]
            t.add("observation.state", q[i])
            t.add("privileged.ee_pose", ee[i])
            t.add("privileged.goal", s.goal[i].astype(np.float32))
            if objects is not None:
                t.add("privileged.object_poses", objects[i])
        maps = self.restyler.needs_maps
        for cam in self.cameras:
            f = cam.sensors.render()
            rgb = (f.rgb * 255 + 0.5).to(torch.uint8).numpy()
            depth = f.depth.numpy() if maps else None
            seg = f.seg.to(torch.uint8).numpy() if maps else None
            w2c = cam.world_to_cam() if maps and cam.mounted else None
            for i in live:
                t = tracks[i]
                t.rgb.setdefault(cam.name, []).append(rgb[i])
                if maps:
                    t.depth.setdefault(cam.name, []).append(depth[i])
                    t.seg.setdefault(cam.name, []).append(seg[i])
                    if w2c is not None:
                        t.w2c.setdefault(cam.name, []).append(w2c[i])

    def _finish(self, t: _Track, success: bool, steps: int) -> Episode:
        style = episode_style(t.seed, self.cfg.restyle, self.cfg.style_split, self.families,
                              self.cfg.style_count, self.cfg.style_variant)
        frames = {k: np.stack(v) for k, v in t.rows.items()}
        frames["style_id"] = np.full(len(frames["action"]), style_number(style), dtype=np.int64)
        raw = [(cam.name, np.stack(t.rgb[cam.name]), self._maps(t, cam) if self.restyler.needs_maps else None)
               for cam in self.cameras]
        restyler = self.restyler

        def videos() -> dict[str, np.ndarray]:
            return {f"observation.images.{name}": restyler.apply(rgb, maps, style, first_camera=j == 0)
                    for j, (name, rgb, maps) in enumerate(raw)}

        scene = self.env.world.scene
        ep = Episode(number=t.number, seed=t.seed, frames=frames, videos=None, success=success,
                     style_id=style.style_id, style=style.to_json(), steps=steps,
                     robot_base=tuple(float(v) for v in self.env.base),
                     metres_per_unit=scene.metres_per_unit if scene is not None else 1.0, pending=videos)
        return ep if self.defer_restyle else ep.realise()

    def _maps(self, t: _Track, cam: RecordCamera) -> dict:
        """The restyler's control maps of one camera over the episode."""
        if cam.mounted:
            w2c = torch.from_numpy(np.stack(t.w2c[cam.name])).float()
        else:
            w2c = torch.from_numpy(cam.world_to_cam()[0]).float()
        return {"depth": torch.from_numpy(np.stack(t.depth[cam.name])),
                "seg": torch.from_numpy(np.stack(t.seg[cam.name])).long(),
                "K": torch.from_numpy(np.asarray(cam.K)).float(), "world_to_cam": w2c,
                "support_height": float(self.env.support_z)}


def record_episodes(cfg: RecordConfig, numbers, restyler: Restyler | None = None,
                    defer_restyle: bool = False) -> Iterator:
    """Build a recorder with as many worlds as needed (at most cfg.worlds) and record `numbers`: yields its
    `Layout`, then every `Episode` as it finishes (restyled, unless `defer_restyle`). What a shard worker runs."""
    numbers = list(numbers)
    with contextlib.redirect_stdout(sys.stderr):  # building prints notes (Newton's MJCF export): stdout is for --json
        rec = Recorder(cfg, max(1, min(cfg.worlds, len(numbers))), restyler, defer_restyle)
    yield rec.layout
    yield from rec.run(numbers)
