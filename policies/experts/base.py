"""`Expert`: a privileged scripted controller over all worlds of a `TaskEnv`: one small state machine per
world (a phase index and its timer), a task-specific `plan` giving each world's current waypoint, a
rate-limited tool command toward it, and IK to joint position targets (the env's action space).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from policies.experts.motion import ROT_WEIGHT, gripper_targets, ik_action, slerp_toward
from sim import ee_pose, get_joint_positions, orientation_error

PHASE_TIMEOUT = 2.0   # s: a move whose command reached its waypoint this long ago gives up waiting for the tool
SETTLED_S = 0.25      # s: a tool that has stopped this long short of its waypoint (a limit, contact) has arrived
TURN_SPEED = 2.0      # rad/s: tool orientation command rate


@dataclass
class Waypoint:
    """Every world's current target: tool pose, gripper, and when the phase is over."""

    pos: np.ndarray                   # (N, 3)
    quat: np.ndarray | None           # (N, 4) xyzw, or None: position only
    closed: np.ndarray | None         # (N,) gripper closed; None: gripper held at its home targets
    wait: np.ndarray                  # (N,) s: dwell before the next phase (0: when arrived)
    tol: np.ndarray                   # (N,) m: arrival tolerance of the measured tool position
    speed: np.ndarray | None = None   # (N,) m/s tool speed (None: the robot's)
    jump: np.ndarray | None = None    # (N,) phase to go to now instead of the usual advance (-1: none)
    grip: np.ndarray | None = None        # (N, gripper coords) explicit gripper targets where finite
    polar: np.ndarray | None = None   # (N,) move along an arc about the robot's base axis, not straight
    rot_weight: np.ndarray | None = None  # (N,) IK orientation weight (None: motion.ROT_WEIGHT); below it the
                                          # orientation is a preference and arrival ignores it


class Expert:
    """Scripted expert for one TaskEnv; `act()` returns joint targets (N, action_dim) for `env.step`."""

    def __init__(self, env, plan: Callable[[Expert, object], Waypoint], final_phase: int):
        self.env, self.plan, self.final = env, plan, final_phase
        self.profile = env.profile
        self.n = env.n
        self.phase = np.zeros(self.n, dtype=np.int64)
        self.t = np.zeros(self.n)
        self.t_reached = np.zeros(self.n)             # s the command has been at the phase's waypoint
        self.anchor = np.zeros((self.n, 3))           # tool position when the current phase began
        self.cmd = np.zeros((self.n, 3))
        self.cmd_q = np.tile([0.0, 0.0, 0.0, 1.0], (self.n, 1))
        self.memory: dict[str, np.ndarray] = {}       # per-world values a plan keeps between phases
        self.last_ee = np.zeros((self.n, 3))
        self.still = np.zeros(self.n)                 # s the tool has not moved
        s = env.world.robot_coord_start
        self.home = env.world.home_targets.reshape(self.n, -1)[:, s:s + env.world.robot.coord_count].copy()
        self.reset()

    def reset(self, mask=None) -> None:
        """Start the masked worlds' state machines over (call after `env.reset` of the same worlds)."""
        m = np.ones(self.n, dtype=bool) if mask is None else np.asarray(mask, dtype=bool).reshape(self.n)
        p, q = ee_pose(self.env.world)
        self.phase[m], self.t[m], self.t_reached[m] = 0, 0.0, 0.0
        self.anchor[m], self.cmd[m], self.cmd_q[m] = p[m], p[m], q[m]
        self.last_ee[m], self.still[m] = p[m], 0.0

    def act(self) -> np.ndarray:
        """Joint position targets (N, robot coords) for this control step; advances the state machines."""
        env, dt = self.env, self.env.dt
        s = env.state()
        wp = self.plan(self, s)
        speed = self.profile.speed if wp.speed is None else wp.speed
        step = np.broadcast_to(np.asarray(speed, dtype=np.float64) * dt, (self.n,))[:, None]
        if wp.polar is not None and wp.polar.any():
            cmd, dist = _arc_step(self.cmd, wp.pos, env.base[:2], step[:, 0])
            line, line_d = _line_step(self.cmd, wp.pos, step[:, 0])
            self.cmd = np.where(wp.polar[:, None], cmd, line)
            dist = np.where(wp.polar, dist, line_d)[:, None]
        else:
            self.cmd, dist = _line_step(self.cmd, wp.pos, step[:, 0])
            dist = dist[:, None]
        moved = np.linalg.norm(s.ee_pos - self.last_ee, axis=1)
        self.last_ee = s.ee_pos.copy()
        self.still = np.where(moved < 0.05 * step[:, 0], self.still + dt, 0.0)
        settled = self.still >= SETTLED_S
        arrived = (dist[:, 0] <= step[:, 0]) & ((np.linalg.norm(s.ee_pos - wp.pos, axis=1) < wp.tol) | settled)
        wr = np.full(self.n, ROT_WEIGHT) if wp.rot_weight is None else wp.rot_weight
        if wp.quat is not None:
            self.cmd_q = slerp_toward(self.cmd_q, wp.quat, TURN_SPEED * dt)
            aligned = np.linalg.norm(orientation_error(wp.quat, s.ee_quat), axis=1) < 0.1
            arrived &= aligned | (wr < ROT_WEIGHT) | settled
        self.t += dt
        self.t_reached = np.where(dist[:, 0] <= step[:, 0], self.t_reached + dt, 0.0)
        done = np.where(wp.wait > 0, self.t >= wp.wait, arrived | (self.t_reached >= PHASE_TIMEOUT))
        done &= self.phase < self.final
        self.phase[done] += 1
        if wp.jump is not None:
            jump = wp.jump >= 0
            self.phase[jump] = wp.jump[jump]
            done |= jump
        self.t[done], self.t_reached[done] = 0.0, 0.0
        self.anchor[done] = s.ee_pos[done]
        if wp.closed is None:
            grip = self.home[:, list(self.profile.gripper)] if self.profile.gripper else None
        else:
            measured = get_joint_positions(env.world)[:, list(self.profile.gripper)]
            grip = gripper_targets(self.profile, wp.closed, measured)
            if wp.grip is not None:
                grip = np.where(np.isfinite(wp.grip), wp.grip, grip)
        arm = env.world.robot.spec.arm_dofs or env.world.robot.dof_count
        return ik_action(env.world, self.profile, self.cmd, None if wp.quat is None else self.cmd_q, grip, wr,
                         home=self.home[:, :arm])


def _line_step(cmd: np.ndarray, goal: np.ndarray, step: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """cmd moved straight toward goal by at most `step`; and the distance that was left before the move."""
    d = goal - cmd
    dist = np.linalg.norm(d, axis=1)
    return cmd + d * np.minimum(1.0, step / np.maximum(dist, 1e-12))[:, None], dist


def _arc_step(cmd: np.ndarray, goal: np.ndarray, centre: np.ndarray, step: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
    """cmd moved toward goal by at most `step` metres in (radius, arc length, height) about the vertical axis
    through `centre` (an arm carrying something swings around its base instead of cutting past it)."""
    c, g = cmd[:, :2] - centre, goal[:, :2] - centre
    rc, rg = np.hypot(c[:, 0], c[:, 1]), np.hypot(g[:, 0], g[:, 1])
    tc, tg = np.arctan2(c[:, 1], c[:, 0]), np.arctan2(g[:, 1], g[:, 0])
    dt = np.angle(np.exp(1j * (tg - tc)))
    delta = np.stack([rg - rc, dt * np.maximum(rc, rg), goal[:, 2] - cmd[:, 2]], 1)
    dist = np.linalg.norm(delta, axis=1)
    f = np.minimum(1.0, step / np.maximum(dist, 1e-12))
    r, t = rc + f * (rg - rc), tc + f * dt
    out = np.stack([centre[0] + r * np.cos(t), centre[1] + r * np.sin(t), cmd[:, 2] + f * delta[:, 2]], 1)
    return np.where((f >= 1.0)[:, None], goal, out), dist
