"""`TaskEnv`: a task on all worlds of a `sim.World` at once: seeded resets, joint-target actions, success.

Actions are the robot's joint position targets, gripper included, (N, robot coordinates): what the experts
produce and the dataset records. Observations are a dict of float32 tensors with the world count first:
`observation.state` (joint positions, gripper included) and privileged state (`ee_pos`, `ee_quat`,
`object_pos`, `object_quat`, `goal`). `env.world` is the underlying `sim.World` (cameras attach to it).
An episode ends when its success condition has held for `hold_s` or at the episode length; `done` and
`success` stay latched until that world is reset.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from policies.tasks.objects import load_object
from policies.tasks.registry import get_task
from policies.tasks.resets import build_workspace, choose_base, collision_scene
from policies.tasks.robots import get_profile
from policies.tasks.spec import TaskConfig, TaskState
from sim import (
    EnvConfig,
    SimEnv,
    WorldConfig,
    body_poses,
    build_world,
    ee_pose,
    get_joint_positions,
    load_scene,
    resolve_solver,
)
from twin_kit import InputError, qrot


def robot_surface_points(world, per_shape: int = 300) -> np.ndarray:
    """World points on the robot's colliding mesh shapes in world 0 (vertices, subsampled), its fixed base
    link (merged into the world) included."""
    from newton import ShapeFlags

    m = world.model
    body = m.shape_body.numpy()
    in_world0 = m.shape_world.numpy() == 0
    flags = m.shape_flags.numpy()
    xf = m.shape_transform.numpy().astype(np.float64)
    scale = m.shape_scale.numpy().astype(np.float64)
    bq = body_poses(world)[0].astype(np.float64)
    objects = set(world.object_bodies)
    rng = np.random.default_rng(0)
    pts = []
    for s in range(len(body)):
        b = int(body[s])
        src = m.shape_source[s]
        fixed = b < 0 and in_world0[s]                          # a fixed base link, posed in the world frame
        if not (fixed or 0 <= b < world.bodies_per_world) or b in objects:
            continue
        if not flags[s] & int(ShapeFlags.COLLIDE_SHAPES):
            continue
        if src is None or not hasattr(src, "vertices"):
            continue
        v = np.asarray(src.vertices, dtype=np.float64) * scale[s]
        if len(v) > per_shape:
            v = v[rng.choice(len(v), per_shape, replace=False)]
        v = qrot(xf[s, 3:], v) + xf[s, :3]
        pts.append(v if fixed else qrot(bq[b, 3:], v) + bq[b, :3])
    return np.concatenate(pts) if pts else np.zeros((0, 3))


GOAL_NAMES = ("goal_x", "goal_y", "goal_z")  # a goal in observation.state (TaskDef.goal_in_state)
BASE_ATTEMPTS = 5  # base poses tried, best first, when sim refuses one as inside the scan


def home_points(robot: str) -> np.ndarray:
    """Points on `robot`'s collision surface at its home pose, base at the origin facing +x."""
    w = build_world(WorldConfig(scene=None, robot=robot, worlds=1, solver="featherstone", visuals=False))
    return robot_surface_points(w) - w.base_xform[:3] + [0.0, 0.0, w.robot.spec.base_height]


def build_on_free_spot(wc: WorldConfig, profile, ring, sector: float, object_radius: float):
    """`build_world(wc)` with the robot's base at the best free spot of the scan's support (`choose_base`)."""
    scene = load_scene(wc.scene, wc.scale)
    collision = collision_scene(scene, resolve_solver(wc.solver, "cpu", scene))
    poses = choose_base(scene, home_points(profile.name), ring, sector, profile.base_radius, object_radius,
                        wc.support_plane, collision)
    for _ in range(BASE_ATTEMPTS - 1):        # sim's placement test samples the robot on its own: may disagree
        pose = next(poses)                    # InputError when no spot is left
        try:
            return build_world(replace(wc, robot_pose=pose))
        except InputError:
            continue
    return build_world(replace(wc, robot_pose=next(poses)))


class TaskEnv:
    """A task batched over `cfg.worlds` worlds; every array has the world count as its first dimension."""

    def __init__(self, cfg: TaskConfig):
        self.cfg = cfg
        self.profile = get_profile(cfg.robot)
        self.task = get_task(cfg.task, self.profile.name)
        self.objects = tuple(load_object(n) for n in self.task.objects)
        parked = [o.placed((0.0, 0.0, -10.0 - k)) for k, o in enumerate(self.objects)]   # reset places them
        ring = tuple(cfg.ring) if cfg.ring else self.profile.ring
        sector = self.profile.sector_deg if cfg.sector_deg is None else cfg.sector_deg
        wc = WorldConfig(scene=cfg.bundle, robot=self.profile.name, scale=cfg.scale, robot_pose=cfg.robot_pose,
                         worlds=cfg.worlds, solver=cfg.solver, threads=cfg.threads, frame_dt=cfg.control_dt,
                         substeps=cfg.substeps, visuals=cfg.visuals, objects=parked,
                         grasp_contacts=any(o.sim.collide for o in self.objects), support_plane=cfg.support_plane)
        episode_s = cfg.episode_s or self.task.episode_s
        self.max_steps = int(round(episode_s / cfg.control_dt))
        self.hold_steps = max(1, int(round(cfg.hold_s / cfg.control_dt)))
        if cfg.robot_pose is None and cfg.bundle is not None:
            radius = max([o.radius for o in self.objects], default=0.03)
            world = build_on_free_spot(wc, self.profile, ring, sector, radius)
        else:
            world = build_world(wc)
        self.sim = SimEnv(world, EnvConfig(action="joint", max_steps=self.max_steps))
        self.world = self.sim.world
        self.n = self.world.n
        w = self.world
        support_z = float(w.base_xform[2] - w.robot.spec.base_height)
        yaw = 2.0 * np.arctan2(w.base_xform[5], w.base_xform[6])
        self.support_z = support_z
        self.base = np.array([w.base_xform[0], w.base_xform[1], support_z, yaw])
        self.workspace = build_workspace(collision_scene(w.scene, w.cfg.solver), self.base, robot_surface_points(w),
                                         ring, sector, cfg.support_plane)
        self._object_q = self._object_coords()
        self.goal = np.zeros((self.n, 3))
        self.steps = np.zeros(self.n, dtype=np.int64)
        self.hold = np.zeros(self.n, dtype=np.int64)
        self.done = np.zeros(self.n, dtype=bool)
        self.success = np.zeros(self.n, dtype=bool)
        self.seeds = np.full(self.n, -1, dtype=np.int64)
        self._episodes = 0

    # ------------------------------------------------------------------ layout

    @property
    def action_dim(self) -> int:
        return self.world.robot.coord_count

    @property
    def dt(self) -> float:
        return self.cfg.control_dt

    def _object_coords(self) -> list[int]:
        """First joint coordinate (inside a world) of each object's free joint."""
        m, w = self.world.model, self.world
        jpw = m.joint_count // self.n
        child, q_start = m.joint_child.numpy()[:jpw], m.joint_q_start.numpy()[:jpw]
        return [int(q_start[list(child).index(b)]) for b in w.object_bodies]

    # ------------------------------------------------------------------ episodes

    def reset(self, seeds=None, mask=None) -> dict[str, torch.Tensor]:
        """Start new episodes in the masked worlds (all when None), each from its seed.

        `seeds`: one int per masked world (default: `cfg.seed` plus a running episode count), so an
        episode is reproduced by its seed whatever world it runs in."""
        m = np.ones(self.n, dtype=bool) if mask is None else np.asarray(mask, dtype=bool).reshape(self.n)
        idx = np.flatnonzero(m)
        if seeds is None:
            seeds = self.cfg.seed + self._episodes + np.arange(len(idx))
        seeds = np.asarray(seeds, dtype=np.int64).reshape(-1)
        if len(seeds) != len(idx):
            raise InputError(f"reset got {len(seeds)} seeds for {len(idx)} worlds")
        self._episodes += len(idx)
        self.sim.reset(m)
        poses = np.zeros((self.n, len(self.objects), 4))
        for i, seed in zip(idx, seeds, strict=True):
            rng = np.random.default_rng(int(seed))
            p, goal = self.task.sample(self.workspace, rng, self.profile, self.objects)
            poses[i, :len(p)] = p
            self.goal[i] = goal
        if self.objects:
            self._place(idx, poses[idx])
        self.seeds[idx] = seeds
        self.steps[idx] = 0
        self.hold[idx] = 0
        self.done[idx] = False
        self.success[idx] = False
        return self.observe()

    def _place(self, worlds: np.ndarray, poses: np.ndarray) -> None:
        """Put the objects of `worlds` at poses (len(worlds), K, 4) x y z yaw, at rest."""
        import warp as wp

        w = self.world
        quat = np.zeros(poses.shape[:2] + (4,))
        quat[..., 2], quat[..., 3] = np.sin(poses[..., 3] / 2), np.cos(poses[..., 3] / 2)
        xf = np.concatenate([poses[..., :3], quat], -1)                          # (k, K, 7)
        for st in (w.state, w.next_state):
            jq = st.joint_q.numpy().reshape(self.n, -1)
            for k, q0 in enumerate(self._object_q):
                jq[worlds, q0:q0 + 7] = xf[:, k]
            wp.copy(st.joint_q, wp.array(jq.ravel(), dtype=wp.float32, device=w.device))
            bq = st.body_q.numpy().reshape(self.n, w.bodies_per_world, 7)
            bq[np.ix_(worlds, w.object_bodies)] = xf
            wp.copy(st.body_q, wp.array(bq.reshape(-1, 7), dtype=wp.transform, device=w.device))

    def step(self, action):
        """Apply joint targets (N, action_dim) and advance one control step.

        Returns obs, reward (N,), done (N,) and info with `success` (N,) (latched) and `steps` (N,), each
        episode's length so far (it stops counting when the episode is done)."""
        obs, _, _, _, _ = self.sim.step(action)
        live = ~self.done
        self.steps += live                         # a finished episode's length stays what it was
        s = self.state()
        ok = self.task.success(s)
        self.hold = np.where(ok, self.hold + 1, 0)
        won = live & (self.hold >= self.hold_steps)
        self.success |= won
        self.done |= won | (live & (self.steps >= self.max_steps))
        reward = torch.as_tensor(self.task.reward(s), dtype=torch.float32)
        obs = self.observe(s)
        info = {"success": torch.as_tensor(self.success.copy()), "steps": torch.as_tensor(self.steps.copy())}
        return obs, reward, torch.as_tensor(self.done.copy()), info

    # ------------------------------------------------------------------ reading the worlds

    def state(self) -> TaskState:
        """Every world's task state now (privileged)."""
        w = self.world
        p, q = ee_pose(w)
        bq = body_poses(w)[:, w.object_bodies].astype(np.float64)
        return TaskState(ee_pos=p, ee_quat=q, object_pos=bq[..., :3], object_quat=bq[..., 3:], goal=self.goal.copy(),
                         support_z=self.support_z, objects=self.objects)

    def state_names(self) -> list[str]:
        """Names of `observation.state`: the robot's joint coordinates, then the goal in the base frame (x, y, z)
        when the task puts it there."""
        from policies.record.rollout import joint_names

        return joint_names(self.world) + (list(GOAL_NAMES) if self.task.goal_in_state else [])

    def goal_in_base(self, goal: np.ndarray) -> np.ndarray:
        """World-frame goals (N, 3) in the robot's base frame (origin on the support under the base, yaw)."""
        c, s = np.cos(self.base[3]), np.sin(self.base[3])
        d = goal - self.base[:3]
        return np.stack([c * d[:, 0] + s * d[:, 1], -s * d[:, 0] + c * d[:, 1], d[:, 2]], axis=1)

    def observe(self, s: TaskState | None = None) -> dict[str, torch.Tensor]:
        s = s or self.state()

        def t(a):
            return torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32)

        q = get_joint_positions(self.world)
        if self.task.goal_in_state:
            q = np.concatenate([np.asarray(q), self.goal_in_base(s.goal)], axis=1)
        return {"observation.state": t(q), "ee_pos": t(s.ee_pos),
                "ee_quat": t(s.ee_quat), "object_pos": t(s.object_pos), "object_quat": t(s.object_quat),
                "goal": t(s.goal)}
