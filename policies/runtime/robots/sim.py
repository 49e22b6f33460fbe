"""The `sim` adapter: Twin's simulated robot doing a task in a scene, driven like a real one.

One world of the task's `TaskEnv` (the environment `twin record` and `twin eval` run), so the task's success is
known, with the policy's cameras from the recorder's rigs (`build_cameras`). Physics advances one control period
each time the loop sends a target (the loop paces it to real time); the cameras render at their own frame rate
(the policy's fps by default), as a real camera streams slower than the control rate, and `read()` returns the
latest frame. A frame renders on a thread of its own from a copy of the bodies' poses taken when it was due (tens
of milliseconds on a CPU: in the loop it would make every camera step late); like a real camera's, it arrives a
render later, and the first frame of an episode is waited for. `observation()` is the policy's input in the
dataset's feature names: `observation.state` as the task writes it (a reach task appends its goal in the base
frame) and `observation.images.<camera>`.
"""
from __future__ import annotations

import contextlib
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from policies.runtime.robot import RobotState
from twin_kit import InputError

PHYSICS_DT = 0.005  # s: the recorder's physics step (TaskConfig's 0.02 s control period, 4 substeps)
REST_SPEED = 1e-2   # rad/s: below this on every joint the robot is at rest
REST_LIMIT_S = 3.0  # simulated seconds `stop()` waits at most for the robot to settle


class SimAdapter:
    """A `RobotAdapter` over one simulated world of `task` in `bundle` (see the module doc).

    `cameras`: the short camera names to render (front, wrist/head), `size` their square side in pixels;
    `camera_fps`: their frame rate (None: every control step). Episode k (`begin(k)`) resets from `seed + k`.
    `substeps`: physics steps per control period (None: the recorder's 5 ms physics step, or one step when the
    period is shorter). `end_on_done`: `done` reports the task's end (success or time limit), which ends a
    deployed episode.
    """

    name = "sim"

    def __init__(self, task: str, bundle: str | None, robot: str = "franka", *, hz: float = 50.0,
                 cameras: list[str] = (), size: int = 128, camera_fps: float | None = None, seed: int = 0,
                 scale: float | None = None, robot_pose=None, episode_s: float | None = None,
                 substeps: int | None = None, end_on_done: bool = True):
        from policies.record.cameras import build_cameras
        from policies.record.rollout import joint_names
        from policies.runtime.safety import robot_limits
        from policies.tasks.env import TaskEnv
        from policies.tasks.spec import TaskConfig

        if not hz > 0:
            raise InputError(f"the sim's control rate must be positive, got {hz}")
        self.rate_hz, self.seed, self.end_on_done = float(hz), int(seed), end_on_done
        if substeps is None:
            substeps = max(1, round(1.0 / (hz * PHYSICS_DT)))
        tc = TaskConfig(task=task, bundle=bundle, robot=robot, scale=scale, robot_pose=robot_pose, worlds=1,
                        seed=seed, control_dt=1.0 / hz, substeps=substeps, episode_s=episode_s,
                        visuals=bool(cameras))
        with contextlib.redirect_stdout(sys.stderr):  # building prints notes: stdout is for --json
            self.env = TaskEnv(tc)
            self.cameras = build_cameras(self.env, list(cameras), size)  # at the home pose, as eval builds them
        self.joint_names = joint_names(self.env.world)
        self.state_names = self.env.state_names()
        self.limits = robot_limits(self.env.profile.name).select(self.joint_names)
        self.robot_type = self.env.profile.name
        every = 1 if camera_fps is None else max(1, int(round(hz / camera_fps)))
        self.camera_every = every  # control steps between camera frames
        self.episode = -1
        self.steps = 0
        self._frame_step = -every
        self._images: dict[str, np.ndarray] = {}
        self._snapshot = self.env.world.model.state() if self.cameras else None   # the poses a frame renders
        self._renderer = ThreadPoolExecutor(1, thread_name_prefix="sim-cameras") if self.cameras else None
        self._pending: Future | None = None

    # ------------------------------------------------------------------ the adapter interface

    def connect(self) -> None:
        """Start the first episode (the world is built by the constructor)."""
        if self.episode < 0:
            self.begin(0)

    def begin(self, k: int) -> None:
        """Reset the task from seed `seed + k` (episode k), cameras rendered anew."""
        self._drain()
        self.env.reset(seeds=[self.seed + int(k)])
        self.episode, self.steps = int(k), 0
        self._frame_step = -self.camera_every
        self._images = {}

    def read(self) -> RobotState:
        """Joint positions and velocities now, and the cameras' latest frames (a new one starts rendering when one
        is due and the last is done; an episode's first is waited for)."""
        q, qd = self._joints()
        if self.cameras:
            if self._pending is not None and (self._pending.done() or not self._images):
                self._images = self._pending.result()
                self._pending = None
            if self._pending is None and self.steps - self._frame_step >= self.camera_every:
                self._pending = self._start_frame()
                self._frame_step = self.steps
                if not self._images:
                    self._images = self._pending.result()
                    self._pending = None
        return RobotState(time.monotonic(), q, qd, images=dict(self._images))

    def send(self, q_target) -> None:
        """Advance the world one control period toward the joint targets."""
        a = np.asarray(q_target, dtype=np.float64).reshape(1, -1)
        if a.shape[1] != len(self.joint_names):
            raise InputError(f"the sim robot takes {len(self.joint_names)} joint targets, got {a.shape[1]}")
        self.env.step(a)
        self.steps += 1

    def stop(self) -> None:
        """Hold the joints where they are and let the robot settle (simulated, not paced): the robot ends at rest."""
        hold = self._joints()[0]
        for _ in range(int(np.ceil(REST_LIMIT_S * self.rate_hz))):
            self.env.step(hold[None])
            self.steps += 1
            if np.abs(self._joints()[1]).max() < REST_SPEED:
                break

    def close(self) -> None:
        self._drain()
        if self._renderer is not None:
            self._renderer.shutdown(wait=True)
            self._renderer = None
        self.cameras = []

    # ------------------------------------------------------------------ what only a simulator knows

    @property
    def success(self) -> bool:
        """The task's success (latched once its predicate held long enough)."""
        return bool(self.env.success[0])

    @property
    def episode_s(self) -> float:
        """The task's episode length (s)."""
        return self.env.max_steps * self.env.dt

    @property
    def done(self) -> bool:
        """The episode ended: success, or the task's time limit (always False without `end_on_done`)."""
        return self.end_on_done and bool(self.env.done[0])

    def observation(self, state: RobotState) -> dict[str, np.ndarray]:
        """The policy's input now, keyed by the dataset's feature names (state float32, images HxWx3 uint8)."""
        from policies.features import IMAGE_PREFIX, STATE

        obs = {STATE: self.env.observe()[STATE][0].numpy().astype(np.float32)}
        for name, img in state.images.items():
            obs[IMAGE_PREFIX + name] = img
        return obs

    def _joints(self) -> tuple[np.ndarray, np.ndarray]:
        """(q, qd) of the robot's joints in world 0."""
        from sim import get_joint_positions

        w = self.env.world
        q = np.asarray(get_joint_positions(w))[0]
        s, n = w.robot_dof_start, w.robot.dof_count
        qd = w.state.joint_qd.numpy().reshape(w.n, w.dofs_per_world)[0, s:s + n].astype(np.float64)
        return q, qd

    def _start_frame(self) -> Future:
        """Copy the bodies' poses now and render every camera from that copy on the camera thread."""
        import warp as wp

        w = self.env.world
        wp.copy(self._snapshot.body_q, w.state.body_q)
        return self._renderer.submit(self._render, self._snapshot, w.sim_time)

    def _drain(self) -> None:
        """Let a frame still rendering finish (before a reset or close changes what it reads)."""
        if self._pending is not None:
            self._pending.exception()
            self._pending = None

    def _render(self, state, sim_time: float) -> dict[str, np.ndarray]:
        import torch

        out = {}
        for cam in self.cameras:
            rgb = cam.sensors.render(state=state, sim_time=sim_time).rgb[0]
            out[cam.name] = (rgb * 255 + 0.5).to(torch.uint8).numpy().copy()
        return out
