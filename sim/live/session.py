"""A live physics session: one Newton world stepped on its own thread, paced to real time.

The thread drives the end effector along `twin sim`'s scripted path or toward a teleoperated target through
differential IK (or runs as fast as the CPU allows, and says so). Commands (nudge, set_gripper, reset,
set_playing, set_mode) may come from any thread; they are queued or applied under a lock and take effect on
the physics thread, the only one that touches Warp. After every step the session publishes an immutable
`Snapshot` to its subscribers (`subscribe(callback)`), which is all a viewer or a test needs to read; the
thread, queue and subscribers are `ThreadedSession`'s, the pacing `RealTimePacer`'s (sim.live.threaded).
This module imports no viewer code: `sim.live.viewer` draws a session into the browser.
"""
from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from sim.live.threaded import RealTimePacer, ThreadedSession
from sim.physics.control import default_reach, scripted_goal

MODES = ("scripted", "teleop")


@dataclass
class SessionConfig:
    """How the live simulation runs (see the `--sim` options of `twin view` and `twin sim --teleop`)."""

    period: float = 4.0          # seconds per loop of the scripted end-effector path
    teleop: bool = False         # start in teleop mode (else the scripted motion runs)
    step: float = 0.02           # metres per teleop nudge
    lead: float = 0.10           # the teleop target never runs further than this ahead of the end effector
    record_fps: float = 0.0      # > 0: keep world-0 body poses at this rate (for the mp4 of a teleop session)
    max_record_frames: int = 30_000


def _frozen(a: np.ndarray | None) -> np.ndarray | None:
    if a is not None:
        a.flags.writeable = False
    return a


@dataclass(frozen=True)
class Snapshot:
    """What the physics thread published after a step: read-only copies, safe to keep on any thread."""

    sim_time: float = 0.0
    steps: int = 0                       # snapshots published so far
    body_q: np.ndarray | None = None     # (bodies_per_world, 7) world 0, metres, xyzw
    ee_pos: np.ndarray | None = None     # (3,) metres
    joint_q: np.ndarray | None = None    # (robot coords,) measured joint positions
    speed: float = 0.0                   # simulated seconds per wall second, over the last second
    goal: np.ndarray | None = None       # (3,) end-effector target, metres
    mode: str = "scripted"
    playing: bool = True
    nudges: int = 0                      # teleop nudges received so far


@dataclass
class LiveSession(ThreadedSession):
    """A world stepped on its own thread; commands from any thread, snapshots to subscribers (`finished`: the
    session was asked to end, e.g. by the viewer's "Stop & save", or its thread ended)."""

    world: object
    cfg: SessionConfig = field(default_factory=SessionConfig)
    recording: list = field(default_factory=list)     # world-0 body poses at cfg.record_fps

    def __post_init__(self):
        from sim.physics import control
        from sim.physics.env import SimEnv

        self._setup("twin-physics", Snapshot())
        w = self.world
        self._env = SimEnv(w)
        self.mode = "teleop" if self.cfg.teleop else "scripted"
        p0, r0 = control.ee_pose(w)
        self.home_pos, self.home_quat = p0[0].copy(), r0[0].copy()
        self._quat = r0 if (w.robot.spec.arm_dofs or 0) >= 6 else None
        self.reach = default_reach(w.robot.spec.name)
        self.goal = self.home_pos.copy()
        self._t_motion = 0.0
        self.nudges = 0                  # teleop nudges received (GUI clicks and keys)
        self._next_rec = w.sim_time
        self._publish(0.0)

    # ------------------------------------------------------------------ commands (any thread)

    def nudge(self, direction, distance: float | None = None) -> np.ndarray:
        """Move the teleop target by `distance` (default cfg.step) metres along `direction`; switches to
        teleop mode. The target stays within cfg.lead of the end effector and above the support surface."""
        d = np.asarray(direction, np.float64)
        d = d / max(np.linalg.norm(d), 1e-12) * (self.cfg.step if distance is None else distance)
        with self._lock:  # GUI callbacks run on a thread pool: switching mode and moving the goal is one step
            self._enter_mode("teleop")
            ee = self.snapshot.ee_pos
            g = self.goal + d
            off = g - ee
            n = np.linalg.norm(off)
            if n > self.cfg.lead:
                g = ee + off * (self.cfg.lead / n)
            if self.world.scene is not None:
                g[2] = max(g[2], self.world.scene.support_height + 0.02)
            self.goal = g
            self.nudges += 1
        return g.copy()

    def set_gripper(self, open_: bool) -> None:
        """Open (joint upper limits) or close (lower limits) the joints beyond the arm's, e.g. the fingers."""
        self._queue("gripper", bool(open_))

    def reset(self) -> None:
        """Put the robot back at its home pose and restart the scripted path."""
        self._queue("reset")

    def set_mode(self, mode: str) -> None:
        """'scripted' (loop `twin sim`'s path) or 'teleop' (hold / follow the nudged target)."""
        mode = mode.lower()
        if mode in MODES:
            with self._lock:
                self._enter_mode(mode)

    def finish(self) -> None:
        """Ask whoever runs the session to end it (e.g. the viewer's "Stop & save")."""
        self.finished.set()

    def _enter_mode(self, mode: str) -> None:
        """Switch mode (caller holds the lock); teleop starts by holding the end effector where it is."""
        if mode == self.mode:
            return
        if mode == "teleop":
            self.goal = self.snapshot.ee_pos.copy()
        self._t_motion = 0.0
        self.mode = mode

    # ------------------------------------------------------------------ thread

    def _loop(self) -> None:
        from sim.physics import control
        from sim.physics.world import step

        w = self.world
        dt = w.cfg.frame_dt
        pace = RealTimePacer(w.sim_time, "physics runs at {speed:.2f}x real time on this CPU (as fast as it can)")
        while not self._stop.is_set():
            self._apply_pending(pace.speed)
            if not self.playing:
                pace.hold(w.sim_time)
                self._publish(0.0)
                time.sleep(0.05)
                continue
            with self._lock:
                if self.mode == "scripted":
                    self.goal = scripted_goal(self.home_pos, self._t_motion, self.cfg.period, self.reach)
                goal = self.goal.copy()
                self._t_motion += dt
            control.ik_targets(w, goal[None], self._quat)
            step(w)
            self._record()
            wait = pace.wait_after(w.sim_time)
            self._publish(pace.speed)
            if wait > 0:
                time.sleep(wait)

    def _apply_pending(self, speed: float) -> None:
        from sim.physics import control

        w = self.world
        for kind, arg in self._take_pending():
            if kind == "reset":
                self._env.reset()
                with self._lock:
                    self.goal = self.home_pos.copy()
                    self._t_motion = 0.0
                self._publish(speed)
            elif kind == "gripper":
                arm = w.robot.spec.arm_dofs or w.robot.dof_count
                if arm >= w.robot.coord_count:
                    continue  # no joints beyond the arm's
                t = control.get_joint_targets(w)
                lim = np.asarray(w.robot.upper if arg else w.robot.lower)
                t[:, arm:] = lim[arm:]
                control.set_joint_targets(w, t)

    def _publish(self, speed: float) -> None:
        """Read world 0 (physics thread) into a new Snapshot and hand it to every subscriber."""
        from sim.physics import control
        from sim.physics.world import body_poses

        w = self.world
        bq = body_poses(w)[0].astype(np.float64)
        q = w.state.joint_q.numpy().reshape(w.n, w.coords_per_world)[0]
        s = w.robot_coord_start
        bq, ee = _frozen(bq), _frozen(control.ee_pose(w)[0][0].copy())
        joint_q = _frozen(q[s:s + w.robot.coord_count].astype(np.float64))
        self._send(lambda: Snapshot(sim_time=w.sim_time, steps=self.snapshot.steps + 1, body_q=bq, ee_pos=ee,
                                    joint_q=joint_q, speed=speed, goal=_frozen(self.goal.copy()), mode=self.mode,
                                    playing=self.playing, nudges=self.nudges))

    def _record(self) -> None:
        if self.cfg.record_fps <= 0 or self.world.sim_time + 1e-9 < self._next_rec:
            return
        self._next_rec += 1.0 / self.cfg.record_fps
        if len(self.recording) < self.cfg.max_record_frames:
            from sim.physics.world import body_poses

            self.recording.append(body_poses(self.world)[0].copy())


def build_live_world(scene: str, robot: str = "franka", scale: float | None = None, robot_pose=None,
                     solver: str | None = None, device: str = "cpu"):
    """One world of `robot` in `scene` with `solver` (None: WorldConfig's default), Warp's messages sent to
    stderr so that stdout keeps the URL line first."""
    from twin_kit import quiet_warp

    quiet_warp()  # module loads happen on the physics thread too
    from sim.physics.world import WorldConfig, build_world

    extra = {} if solver is None else {"solver": solver}
    with contextlib.redirect_stdout(sys.stderr):
        return build_world(WorldConfig(scene=str(scene), robot=robot, scale=scale, robot_pose=robot_pose,
                                       worlds=1, device=device, **extra))
