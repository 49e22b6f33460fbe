"""Batched environment over all worlds of a `World`: reset / step with torch tensors, plus a Gymnasium wrapper.

Actions are joint position targets (`action="joint"`, absolute, radians / metres) or end-effector position
targets (`action="ee"`, world metres, through differential IK). Observations are a dict of float32 tensors
with a leading world dimension. Rewards are zero here: tasks add theirs on top.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from sim.physics import control
from sim.physics.world import World, WorldConfig, body_poses, build_world
from sim.physics.world import step as world_step
from twin_kit import InputError


@dataclass
class EnvConfig:
    """Episode settings of the batched environment."""

    action: str = "joint"          # "joint" (position targets) or "ee" (end-effector position, through IK)
    max_steps: int = 500           # truncation horizon in environment steps
    ik_iters: int = 1              # IK updates per environment step for "ee" actions


class SimEnv:
    """All worlds stepped together; every tensor has the world count as its first dimension."""

    def __init__(self, world: World | WorldConfig, cfg: EnvConfig | None = None):
        self.world = build_world(world) if isinstance(world, WorldConfig) else world
        self.cfg = cfg or EnvConfig()
        if self.world.robot is None:
            raise InputError("the environment needs a robot in the world")
        if self.cfg.action not in ("joint", "ee"):
            raise InputError(f"unknown action mode {self.cfg.action!r}; use joint or ee")
        self.n = self.world.n
        self.steps = np.zeros(self.n, dtype=np.int64)
        self._home_bodies = self.world.home_body_q
        s = self.world.robot_coord_start
        self._home_targets = self.world.home_targets.reshape(self.n, -1)[:, s:s + self.world.robot.coord_count]

    @property
    def action_dim(self) -> int:
        return 3 if self.cfg.action == "ee" else self.world.robot.coord_count

    def reset(self, mask: np.ndarray | torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Put the masked worlds (all when None) back at their initial state; returns observations."""
        import warp as wp

        w = self.world
        m = np.ones(self.n, dtype=bool) if mask is None else np.asarray(mask, dtype=bool).reshape(self.n)
        bpw = w.bodies_per_world
        sel = np.repeat(m, bpw)
        for st in (w.state, w.next_state):
            q = st.body_q.numpy()
            qd = st.body_qd.numpy()
            q[sel] = self._home_bodies[sel]
            qd[sel] = 0.0
            wp.copy(st.body_q, wp.array(q, dtype=wp.transform, device=w.device))
            wp.copy(st.body_qd, wp.array(qd, dtype=wp.spatial_vector, device=w.device))
            jq = st.joint_q.numpy().reshape(self.n, -1)
            jq[m] = w.default_q
            wp.copy(st.joint_q, wp.array(jq.ravel(), dtype=wp.float32, device=w.device))
            jqd = st.joint_qd.numpy().reshape(self.n, -1)
            jqd[m] = 0.0
            wp.copy(st.joint_qd, wp.array(jqd.ravel(), dtype=wp.float32, device=w.device))
        targets = control.get_joint_targets(w)
        targets[m] = self._home_targets[m]
        control.set_joint_targets(w, targets)
        self.steps[m] = 0
        return self.observe()

    def step(self, action: torch.Tensor | np.ndarray):
        """Apply actions (N, action_dim), advance one environment step; returns obs, reward, terminated,
        truncated, info (the Gymnasium order)."""
        a = action.detach().cpu().numpy() if isinstance(action, torch.Tensor) else np.asarray(action)
        a = a.astype(np.float64).reshape(self.n, self.action_dim)
        if not np.isfinite(a).all():
            raise InputError("actions must be finite")
        if self.cfg.action == "joint":
            control.set_joint_targets(self.world, a)
        else:
            for _ in range(self.cfg.ik_iters):
                control.ik_targets(self.world, a)
        world_step(self.world, 1)
        self.steps += 1
        obs = self.observe()
        reward = torch.zeros(self.n)
        terminated = torch.zeros(self.n, dtype=torch.bool)
        truncated = torch.as_tensor(self.steps >= self.cfg.max_steps)
        return obs, reward, terminated, truncated, {}

    def observe(self) -> dict[str, torch.Tensor]:
        """Observations: robot joint targets, body-derived end-effector pose, object positions."""
        w = self.world
        bq = body_poses(w)
        p, r = control.ee_pose(w)
        jq = w.state.joint_q.numpy().reshape(self.n, -1)
        s = w.robot_coord_start
        obs = {
            "joint_target": torch.as_tensor(control.get_joint_targets(w), dtype=torch.float32),
            "ee_pos": torch.as_tensor(p, dtype=torch.float32),
            "ee_quat": torch.as_tensor(r, dtype=torch.float32),
            "base_pos": torch.as_tensor(bq[:, 0, :3], dtype=torch.float32),
        }
        if w.cfg.solver != "xpbd":  # maximal-coordinate XPBD does not update joint coordinates
            obs["joint_pos"] = torch.as_tensor(jq[:, s:s + w.robot.coord_count], dtype=torch.float32)
        if w.object_bodies:
            obs["object_pos"] = torch.as_tensor(bq[:, w.object_bodies, :3], dtype=torch.float32)
        return obs


def flat_obs(obs: dict[str, torch.Tensor]) -> np.ndarray:
    """Concatenate an observation dict (sorted keys) into one (N, D) float32 array."""
    return np.concatenate([obs[k].reshape(obs[k].shape[0], -1).numpy() for k in sorted(obs)], 1)


def gym_vector_env(env: SimEnv):
    """A `gymnasium.vector.VectorEnv` over a SimEnv: flat float32 observations, autoreset of finished worlds."""
    import gymnasium as gym
    from gymnasium import spaces

    class TwinVectorEnv(gym.vector.VectorEnv):
        metadata = {"autoreset_mode": gym.vector.AutoresetMode.NEXT_STEP}

        def __init__(self, inner: SimEnv):
            self.env = inner
            self.num_envs = inner.n
            dim = flat_obs(inner.observe()).shape[1]
            self.single_observation_space = spaces.Box(-np.inf, np.inf, (dim,), np.float32)
            if inner.cfg.action == "joint":
                lo = np.asarray(inner.world.robot.lower, np.float32)
                hi = np.asarray(inner.world.robot.upper, np.float32)
            else:
                lo, hi = np.full(3, -5.0, np.float32), np.full(3, 5.0, np.float32)
            self.single_action_space = spaces.Box(lo, hi, dtype=np.float32)
            self.observation_space = spaces.Box(-np.inf, np.inf, (inner.n, dim), np.float32)
            self.action_space = spaces.Box(np.tile(lo, (inner.n, 1)), np.tile(hi, (inner.n, 1)), dtype=np.float32)
            self._done = np.zeros(inner.n, dtype=bool)

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            self._done[:] = False
            return flat_obs(self.env.reset()), {}

        def step(self, actions):
            if self._done.any():
                self.env.reset(self._done)
            obs, rew, term, trunc, info = self.env.step(np.asarray(actions))
            self._done = (term | trunc).numpy()
            return flat_obs(obs), rew.numpy(), term.numpy(), trunc.numpy(), info

    return TwinVectorEnv(env)
