"""Motion primitives the experts share, batched over worlds: tool orientations, a rate-limited tool command
and damped-least-squares IK to joint position targets (gripper included).

The IK step is taken from the measured joint positions (as sim's `ik_targets`), so a drive that lags does not
wind up; the tool command moves toward its waypoint at a bounded speed, so demonstrations are smooth.
"""
from __future__ import annotations

import numpy as np

from sim import ee_pose, get_joint_positions, jacobian, orientation_error
from twin_kit import qmul

ROT_WEIGHT = 0.3      # m per rad: how orientation error weighs against position error in the IK
DAMPING = 0.05
MAX_JOINT_STEP = 0.15  # rad (or m) per control step, per IK update
NULL_GAIN = 0.05       # per control step: how fast a redundant arm's spare motion returns toward home


def yaw_quat(yaw: np.ndarray) -> np.ndarray:
    """(N, 4) xyzw rotations by `yaw` (N,) about +Z."""
    yaw = np.asarray(yaw, dtype=np.float64)
    return np.stack([np.zeros_like(yaw), np.zeros_like(yaw), np.sin(yaw / 2), np.cos(yaw / 2)], -1)


def tool_quat(tool_down, yaw: np.ndarray) -> np.ndarray:
    """(N, 4) the robot's downward tool orientation turned by `yaw` (N,) about world +Z."""
    yaw = np.asarray(yaw, dtype=np.float64)
    return qmul(yaw_quat(yaw), np.broadcast_to(np.asarray(tool_down, dtype=np.float64), yaw.shape + (4,)))


def grasp_yaw(object_yaw: np.ndarray, reference: np.ndarray, period: float = np.pi / 2) -> np.ndarray:
    """The yaw among object_yaw + k * period nearest `reference` (a square's symmetry: period pi/2)."""
    d = np.mod(object_yaw - reference + period / 2, period) - period / 2
    return reference + d


def quat_yaw(q: np.ndarray) -> np.ndarray:
    """Yaw (rotation about +Z) of quaternions xyzw (N, 4) that rotate mostly about +Z."""
    return 2.0 * np.arctan2(q[..., 2], q[..., 3])


def slerp_toward(q_now: np.ndarray, q_goal: np.ndarray, max_angle: float) -> np.ndarray:
    """Quaternions (N, 4) turned from q_now toward q_goal by at most `max_angle` radians."""
    e = orientation_error(q_goal, q_now)
    a = np.linalg.norm(e, axis=1, keepdims=True)
    e = e * np.minimum(1.0, max_angle / np.maximum(a, 1e-12))
    a = np.linalg.norm(e, axis=1, keepdims=True)
    axis = e / np.maximum(a, 1e-12)
    dq = np.concatenate([axis * np.sin(a / 2), np.cos(a / 2)], 1)
    out = qmul(dq, q_now)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def move_toward(cmd: np.ndarray, goal: np.ndarray, max_dist: float | np.ndarray) -> np.ndarray:
    """Points (N, 3) moved from cmd toward goal by at most `max_dist`."""
    d = goal - cmd
    n = np.linalg.norm(d, axis=1, keepdims=True)
    return cmd + d * np.minimum(1.0, np.asarray(max_dist).reshape(-1, 1) / np.maximum(n, 1e-12))


def ik_action(world, profile, pos: np.ndarray, quat: np.ndarray | None, grip: np.ndarray | None,
              rot_weight: np.ndarray | float = ROT_WEIGHT, home: np.ndarray | None = None) -> np.ndarray:
    """Joint position targets (N, robot coords) that move the tool toward pos (N, 3) / quat (N, 4) or None.

    Arm joints come from damped least squares on the tool error, from the measured joint positions; the
    gripper coordinates are set to `grip` (N, len(profile.gripper)) when given, else held at their positions.
    `rot_weight` (m per rad, per world) trades orientation error against position error: a 5-joint arm lowers
    it to keep its position where it cannot also point straight down. `home` (N, arm joints): a redundant arm's
    null-space motion is pulled toward it, so long motions do not drift into joint limits."""
    arm = world.robot.spec.arm_dofs or world.robot.dof_count
    q = get_joint_positions(world)
    p, r = ee_pose(world)
    J = jacobian(world)[:, :, :arm]
    err = pos - p
    if quat is not None:
        wr = np.broadcast_to(np.asarray(rot_weight, dtype=np.float64), (len(p),))[:, None]
        e = np.concatenate([err, wr * orientation_error(quat, r)], 1)
        J = np.concatenate([J[:, :3], wr[:, :, None] * J[:, 3:]], 1)
    else:
        e, J = err, J[:, :3]
    k = J.shape[1]
    A = J @ J.transpose(0, 2, 1) + DAMPING ** 2 * np.eye(k)[None]
    Jt_Ainv = J.transpose(0, 2, 1) @ np.linalg.inv(A)                  # damped pseudo-inverse (N, arm, k)
    dq = (Jt_Ainv @ e[..., None])[..., 0]
    if home is not None:
        null = np.eye(arm)[None] - Jt_Ainv @ J
        dq += (null @ (NULL_GAIN * (home - q[:, :arm]))[..., None])[..., 0]
    n = np.linalg.norm(dq, axis=1, keepdims=True)
    dq = dq * np.minimum(1.0, MAX_JOINT_STEP / np.maximum(n, 1e-12))
    q[:, :arm] += dq
    if grip is not None and profile.gripper:
        q[:, list(profile.gripper)] = grip
    lo, hi = np.asarray(world.robot.lower), np.asarray(world.robot.upper)
    return np.clip(q, lo, hi)


def gripper_targets(profile, closed: np.ndarray, measured: np.ndarray | None = None) -> np.ndarray:
    """(N, gripper coords) open or closed targets per world (`closed` (N,) bool).

    With the profile's `grip_squeeze` and the gripper's `measured` positions, a closing gripper's target
    stays that far past where it is: it closes freely, then squeezes with a bounded force (a stiff position
    drive on a small arm would otherwise push the arm off the object). Call it while closing only: held
    this way, a drive that sinks into the object would keep closing (see `held_grip`)."""
    o, c = np.asarray(profile.gripper_open), np.asarray(profile.gripper_closed)
    shut = np.broadcast_to(c[None], (len(closed), len(c)))
    if profile.grip_squeeze > 0 and measured is not None:
        way, sq = np.sign(c - o)[None], profile.grip_squeeze
        shut = np.where(way < 0, np.maximum(c, measured - sq), np.minimum(c, measured + sq))
    return np.where(np.asarray(closed, bool)[:, None], shut, o[None])


def held_grip(profile, stalled: np.ndarray) -> np.ndarray:
    """Gripper targets (N, coords) that hold an object the gripper stalled on at `stalled` positions: the
    profile's `hold_squeeze` past them (fixed, so the grip cannot ratchet closed), at most the closed targets."""
    o, c = np.asarray(profile.gripper_open), np.asarray(profile.gripper_closed)
    way = np.sign(c - o)[None]
    t = stalled + way * (profile.hold_squeeze or profile.grip_squeeze)
    return np.where(way < 0, np.maximum(c, t), np.minimum(c, t))
