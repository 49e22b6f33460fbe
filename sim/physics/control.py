"""Robot control on all worlds at once: joint position targets and end-effector targets by differential IK.

The geometric Jacobian is built in NumPy from the current body poses (joint axes and origins in the world),
batched over worlds; damped least squares turns the end-effector error into a joint step that is added to
the position targets (integrating, so gravity sag and contact offsets are driven to zero).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim.physics.world import World, body_poses, frame_poses
from twin_kit import qconj as _quat_conj
from twin_kit import qmul as _quat_mul
from twin_kit import qrot as _rotate


@dataclass
class Chain:
    """Joints from the robot base to the end-effector, as local indices inside one world."""

    joints: np.ndarray        # (J,) joint indices
    child: np.ndarray         # (J,) child body of each joint
    X_c: np.ndarray           # (J, 7) joint frame in the child body
    axis: np.ndarray          # (J, 3) joint axis in the joint frame
    revolute: np.ndarray      # (J,) bool
    dof: np.ndarray           # (J,) robot-local dof index (column of the Jacobian)


def robot_chain(world: World) -> Chain:
    """The joint chain of the world's robot that moves its end-effector (cached on the world)."""
    import newton

    if getattr(world, "_chain", None) is not None:
        return world._chain
    m = world.model
    jpw = m.joint_count // world.n
    child = m.joint_child.numpy()[:jpw]
    parent = m.joint_parent.numpy()[:jpw]
    jtype = m.joint_type.numpy()[:jpw]
    X_c = m.joint_X_c.numpy()[:jpw]
    qd_start = m.joint_qd_start.numpy()[:jpw]
    axes = m.joint_axis.numpy()
    by_child = {int(c): j for j, c in enumerate(child)}
    rows = []
    b = world.robot.ee_body
    while b >= 0 and b in by_child:
        j = by_child[b]
        t = int(jtype[j])
        if t in (int(newton.JointType.REVOLUTE), int(newton.JointType.PRISMATIC)):
            d = int(qd_start[j]) - world.robot_dof_start
            rows.append((j, int(child[j]), X_c[j], axes[qd_start[j]], t == int(newton.JointType.REVOLUTE), d))
        b = int(parent[j])
    rows.reverse()
    ch = Chain(joints=np.array([r[0] for r in rows]), child=np.array([r[1] for r in rows]),
               X_c=np.array([r[2] for r in rows], dtype=np.float64),
               axis=np.array([r[3] for r in rows], dtype=np.float64),
               revolute=np.array([r[4] for r in rows]), dof=np.array([r[5] for r in rows]))
    world._chain = ch
    return ch


def ee_pose(world: World) -> tuple[np.ndarray, np.ndarray]:
    """End-effector positions (N, 3) and quaternions xyzw (N, 4) of every world."""
    f = frame_poses(world, world.robot.ee_body, world.robot.ee_offset)
    return f[:, :3], f[:, 3:]


def jacobian(world: World) -> np.ndarray:
    """Geometric Jacobian (N, 6, robot dofs): end-effector [linear; angular] velocity per joint velocity."""
    ch = robot_chain(world)
    bq = body_poses(world).astype(np.float64)
    p_ee = ee_pose(world)[0]
    cq = bq[:, ch.child, 3:]                                   # (N, J, 4) child body rotations
    cp = bq[:, ch.child, :3]
    # joint frame = child pose * inverse(X_c): rotation cq * conj(qc), origin cp - R_j * p_c
    qj = _quat_mul(cq, _quat_conj(ch.X_c[:, 3:])[None])
    oj = cp - _rotate(qj, np.broadcast_to(ch.X_c[None, :, :3], cp.shape))
    a = _rotate(qj, np.broadcast_to(ch.axis[None], cp.shape))
    J = np.zeros((world.n, 6, world.robot.dof_count))
    rev = ch.revolute[None, :, None]
    lin = np.where(rev, np.cross(a, p_ee[:, None] - oj), a)
    ang = np.where(rev, a, 0.0)
    J[:, :3, ch.dof] = lin.transpose(0, 2, 1)
    J[:, 3:, ch.dof] = ang.transpose(0, 2, 1)
    return J


def get_joint_targets(world: World) -> np.ndarray:
    """Current joint position targets of the robot, (N, robot coords)."""
    t = world.control.joint_target_q.numpy().reshape(world.n, world.coords_per_world)
    s = world.robot_coord_start
    return t[:, s:s + world.robot.coord_count].astype(np.float64)


def get_joint_positions(world: World) -> np.ndarray:
    """Current robot joint positions (N, robot coords); XPBD keeps maximal coordinates, so it is synced first."""
    from sim.physics.world import sync_joint_coordinates

    sync_joint_coordinates(world)
    q = world.state.joint_q.numpy().reshape(world.n, world.coords_per_world)
    s = world.robot_coord_start
    return q[:, s:s + world.robot.coord_count].astype(np.float64)


def set_joint_targets(world: World, q: np.ndarray) -> np.ndarray:
    """Set robot joint position targets (N, robot coords) on every world, clipped to the joint limits."""
    import warp as wp

    lo, hi = np.asarray(world.robot.lower), np.asarray(world.robot.upper)
    q = np.clip(np.broadcast_to(np.asarray(q, dtype=np.float64), (world.n, world.robot.coord_count)), lo, hi)
    target = world.control.joint_target_q
    t = target.numpy().reshape(world.n, world.coords_per_world)   # a view of the array on the CPU
    s = world.robot_coord_start
    t[:, s:s + world.robot.coord_count] = q
    if not target.device.is_cpu:
        wp.copy(target, wp.array(t.ravel(), dtype=wp.float32, device=world.device))
    return q


def orientation_error(q_target: np.ndarray, q_now: np.ndarray) -> np.ndarray:
    """Rotation vector (N, 3) taking q_now to q_target, in the world frame."""
    dq = _quat_mul(q_target, _quat_conj(q_now))
    dq = np.where(dq[:, 3:] < 0, -dq, dq)
    s = np.linalg.norm(dq[:, :3], axis=1, keepdims=True)
    angle = 2.0 * np.arctan2(s, dq[:, 3:])
    return np.where(s > 1e-9, dq[:, :3] / np.maximum(s, 1e-12) * angle, 2.0 * dq[:, :3])


def dls_step(J: np.ndarray, err: np.ndarray, damping: float) -> np.ndarray:
    """Damped least squares joint step: J^T (J J^T + lambda^2 I)^-1 err, batched."""
    k = J.shape[1]
    A = J @ J.transpose(0, 2, 1) + (damping ** 2) * np.eye(k)[None]
    return (J.transpose(0, 2, 1) @ np.linalg.solve(A, err[..., None]))[..., 0]


def ik_targets(world: World, pos: np.ndarray, quat: np.ndarray | None = None, gain: float = 1.0,
               damping: float = 0.05, max_step: float = 0.2) -> np.ndarray:
    """One differential-IK update toward end-effector targets; sets and returns the new joint targets.

    The step is taken from the measured joint positions (no integrator wind-up while the drives lag);
    `pos` (N, 3) world positions, `quat` (N, 4) xyzw or None for position only. Only the arm's dofs move.
    """
    p, r = ee_pose(world)
    err = np.broadcast_to(np.asarray(pos, dtype=np.float64), p.shape) - p
    J = jacobian(world)
    arm = world.robot.spec.arm_dofs or world.robot.dof_count
    J[:, :, arm:] = 0.0
    if quat is not None:
        e = np.concatenate([err, orientation_error(np.broadcast_to(quat, r.shape), r)], 1)
    else:
        e, J = err, J[:, :3]
    dq = gain * dls_step(J, e, damping)
    n = np.linalg.norm(dq, axis=1, keepdims=True)
    dq = dq * np.minimum(1.0, max_step / np.maximum(n, 1e-12))
    q = get_joint_positions(world)
    q[:, arm:] = get_joint_targets(world)[:, arm:]
    return set_joint_targets(world, q + dq)


def default_reach(robot: str) -> float:
    """Amplitude of the scripted path: 12 cm for full-size arms, 5 cm for the small SO arms and ALOHA."""
    return 0.12 if robot in ("franka", "ur5e", "g1", "g1_hands") else 0.05


def scripted_goal(p0: np.ndarray, t: float, period: float, reach: float) -> np.ndarray:
    """`twin sim`'s scripted end-effector target at time t: a loop sideways and up from the home pose p0."""
    tau = 2 * np.pi * t / period
    return p0 + reach * np.array([0.0, np.sin(tau), 0.5 * (1 - np.cos(tau))])
