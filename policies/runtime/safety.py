"""The safety layer between a policy and a robot: every joint target passes through `SafetyFilter.filter`.

Limits come from the robot's own model, the URDF that Twin's simulator loads (`robot_limits("franka")`): joint
position, velocity and effort limits, plus what a URDF cannot say (acceleration) from `assets/robots/
joint_limits.json` where the maker publishes it. Each control step the filter applies, in order:

    nonfinite           a NaN/inf target (or measured state) is rejected: the last safe target is held
    position_limit      clamp into [lower + margin, upper - margin]
    max_relative_target at most this far from the measured position (LeRobot's setting; on by default)
    torque_limit        with PD gains given: the drive's torque kp (target - q) - kd qd within the effort limit
    velocity_limit      (target - previous target) / dt within the velocity limit, and slow enough to stop
                        before a position limit at the acceleration limit
    acceleration_limit  change of that velocity / dt within the acceleration limit
    workspace           with a forward-kinematics callable: the step is scaled back until the end effector is in
                        the box

Every intervention is a `SafetyEvent` (time, kind, joint, requested, applied), kept in `SafetyFilter.events` for
the episode record. Pure NumPy: nothing here imports torch, Newton or training code.
"""
from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from twin_kit import InputError, asset_path

KINDS = ("nonfinite", "position_limit", "max_relative_target", "torque_limit", "velocity_limit",
         "acceleration_limit", "workspace")
LIMITS_ASSET = "robots/joint_limits.json"
MOVING = ("revolute", "continuous", "prismatic")


@dataclass(frozen=True, eq=False)
class RobotLimits:
    """Per-joint limits in the robot's joint order (the sim's and the dataset's state order); inf = no limit."""

    names: tuple[str, ...]
    lower: np.ndarray
    upper: np.ndarray
    velocity: np.ndarray       # rad/s (m/s prismatic)
    acceleration: np.ndarray   # rad/s^2
    effort: np.ndarray         # N m (N prismatic)
    source: str = ""

    def __post_init__(self):
        n = len(self.names)
        for k in ("lower", "upper", "velocity", "acceleration", "effort"):
            v = np.asarray(getattr(self, k), dtype=np.float64).reshape(-1)
            if v.shape != (n,):
                raise InputError(f"robot limits: {k} has {v.size} values for {n} joints")
            object.__setattr__(self, k, v)
        if np.any(self.lower > self.upper):
            raise InputError(f"robot limits ({self.source}): a lower position limit is above its upper limit")

    @property
    def dof(self) -> int:
        return len(self.names)

    def select(self, names) -> RobotLimits:
        """These limits for the joints `names`, in that order (e.g. a dataset's 14 arm joints of the G1)."""
        index = {n: i for i, n in enumerate(self.names)}
        missing = [n for n in names if n not in index]
        if missing:
            raise InputError(f"joints {', '.join(missing)} are not in {self.source or 'the robot'}")
        i = np.array([index[n] for n in names], dtype=int)
        return replace(self, names=tuple(names), lower=self.lower[i], upper=self.upper[i], velocity=self.velocity[i],
                       acceleration=self.acceleration[i], effort=self.effort[i])


def _number(element, attr: str, default: float) -> float:
    value = element.get(attr) if element is not None else None
    return float(value) if value not in (None, "") else default


def urdf_limits(text: str, locked: tuple[str, ...] = (), source: str = "URDF") -> RobotLimits:
    """Limits of a URDF's moving joints in file order (the order Newton's importer gives them); joints whose
    name starts with one of `locked` are left out, as the sim makes them fixed."""
    root = ET.fromstring(text)
    names, rows = [], []
    for j in root.findall("joint"):
        name, kind = j.get("name", ""), j.get("type")
        if kind not in MOVING or (locked and name.startswith(tuple(locked))):
            continue
        lim = j.find("limit")
        bounded = kind != "continuous"
        rows.append((_number(lim, "lower", -math.inf) if bounded else -math.inf,
                     _number(lim, "upper", math.inf) if bounded else math.inf,
                     _number(lim, "velocity", math.inf) or math.inf,   # 0 in a URDF means "not given"
                     math.inf, _number(lim, "effort", math.inf) or math.inf))
        names.append(name)
    if not names:
        raise InputError(f"{source}: no moving joints")
    cols = np.array(rows, dtype=np.float64).T
    return RobotLimits(tuple(names), *cols, source=source)


def mjcf_limits(xml: str, source: str = "MJCF") -> RobotLimits:
    """Limits of an MJCF model's hinge and slide joints, compiled by MuJoCo (so default classes apply): ranges
    and actuator force ranges; MJCF has no velocity limit. `xml` is a file path or the model's text."""
    import mujoco

    try:
        model = (mujoco.MjModel.from_xml_string(xml) if xml.lstrip().startswith("<")
                 else mujoco.MjModel.from_xml_path(xml))
    except ValueError as e:
        raise InputError(f"{source}: MuJoCo cannot compile it: {str(e).splitlines()[0]}") from None
    moving = (int(mujoco.mjtJoint.mjJNT_HINGE), int(mujoco.mjtJoint.mjJNT_SLIDE))
    names, rows = [], []
    for j in range(model.njnt):
        if int(model.jnt_type[j]) not in moving:
            continue
        lo, hi = model.jnt_range[j] if model.jnt_limited[j] else (-math.inf, math.inf)
        effort = math.inf
        if model.jnt_actfrclimited[j]:
            effort = float(np.abs(model.jnt_actfrcrange[j]).max())
        names.append(mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, j) or f"joint_{j}")
        rows.append((lo, hi, math.inf, math.inf, effort))
    if not names:
        raise InputError(f"{source}: no hinge or slide joints")
    cols = np.array(rows, dtype=np.float64).T
    return RobotLimits(tuple(names), *cols, source=source)


def published_limits(robot: str, limits: RobotLimits) -> RobotLimits:
    """`limits` with the acceleration limits `assets/robots/joint_limits.json` publishes for `robot` (by joint
    name); unchanged when the file lists nothing for it."""
    table = json.loads(asset_path(LIMITS_ASSET).read_text()).get(robot, {})
    accel = table.get("acceleration", {})
    if not accel:
        return limits
    a = np.array([float(accel.get(n, math.inf)) for n in limits.names])
    return replace(limits, acceleration=np.minimum(limits.acceleration, a),
                   source=f"{limits.source} + {LIMITS_ASSET}")


def robot_limits(robot: str) -> RobotLimits:
    """The registered robot's joint limits, from the same model file the simulator loads, in its joint order."""
    from sim import get_robot, model_path

    spec = get_robot(robot)
    path = model_path(spec)
    if path.suffix.lower() == ".urdf":
        limits = urdf_limits(path.read_text(), spec.locked, source=path.name)
    else:
        limits = mjcf_limits(str(path), source=path.name)
    return published_limits(spec.name, limits)


def limit_margin(q, limits: RobotLimits) -> float:
    """Smallest distance of positions q (..., D) to any finite position limit (negative: past one)."""
    q = np.asarray(q, dtype=np.float64)
    if q.shape[-1] != limits.dof:
        raise InputError(f"positions have {q.shape[-1]} joints, the limits {limits.dof}")
    d = np.minimum(q - limits.lower, limits.upper - q)
    return float(np.min(d)) if d.size else math.inf


@dataclass
class SafetyConfig:
    """What the filter enforces beyond the robot's limits, and how far inside them it stays."""

    max_relative_target: float | None = 0.2  # rad (m prismatic) a target may be from the measured position; None: off
    position_margin: float = 0.0             # stay this far inside each position limit (at most a quarter of a range)
    velocity_scale: float = 1.0              # fraction of the velocity limit allowed
    acceleration_scale: float = 1.0          # fraction of the acceleration limit allowed
    effort_scale: float = 1.0                # fraction of the effort limit the PD drive may ask for
    max_acceleration: float | None = None    # for joints whose spec gives no acceleration limit; None: none
    gains: tuple[float, float] | None = None  # PD stiffness, damping of the joint drives: enables torque_limit
    workspace: tuple[tuple[float, float, float], tuple[float, float, float]] | None = None  # EE box (min, max)
    workspace_margin: float = 0.0            # metres inside the box
    workspace_iterations: int = 12           # bisection steps when scaling a step back into the box

    def __post_init__(self):
        if self.max_relative_target is not None and not self.max_relative_target > 0:
            raise InputError("max_relative_target must be positive (or None to turn it off)")
        for k in ("velocity_scale", "acceleration_scale", "effort_scale"):
            if not 0 < getattr(self, k) <= 1:
                raise InputError(f"{k} must be in (0, 1], got {getattr(self, k)}")
        if self.position_margin < 0 or self.workspace_margin < 0:
            raise InputError("margins must be >= 0")
        if self.workspace is not None:
            lo, hi = (np.asarray(b, dtype=np.float64) for b in self.workspace)
            if lo.shape != (3,) or hi.shape != (3,) or np.any(hi - lo <= 2 * self.workspace_margin):
                raise InputError("workspace must be ((xmin, ymin, zmin), (xmax, ymax, zmax)) with room inside "
                                 "the margin")


@dataclass(frozen=True)
class SafetyEvent:
    """One intervention: at `time` (s since the filter started) and control `step`, `kind` changed joint
    `joint` (`name`) from `requested` to `applied`. Workspace events: joint -1, name "end_effector", values
    are the end effector's distance outside the box (m)."""

    time: float
    step: int
    kind: str
    joint: int
    name: str
    requested: float
    applied: float

    def as_dict(self) -> dict:
        return asdict(self)


def _measured(state) -> tuple[np.ndarray, np.ndarray | None]:
    """(q, qd or None) of `state`: an array of joint positions, or an object with `.q` (and maybe `.qd`)."""
    if hasattr(state, "q"):
        qd = getattr(state, "qd", None)
        return np.asarray(state.q, dtype=np.float64), None if qd is None else np.asarray(qd, dtype=np.float64)
    return np.asarray(state, dtype=np.float64), None


def _braking_speed(distance: np.ndarray, accel: np.ndarray, dt: float) -> np.ndarray:
    """Fastest speed from which one step of dt and then braking at `accel` stays within `distance`: the root of
    v dt + v^2 / (2 a) = d. Stricter than the continuous sqrt(2 a d), so the discrete braking that follows never
    needs more than `accel` (inf where accel is)."""
    with np.errstate(invalid="ignore", over="ignore"):
        v = accel * (np.sqrt(dt * dt + 2 * distance / accel) - dt)
    return np.where(np.isfinite(accel), v, np.inf)


def _box_distance(p: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> float:
    """Euclidean distance of point p outside the box [lo, hi] (0 inside)."""
    return float(np.linalg.norm(np.maximum(lo - p, 0.0) + np.maximum(p - hi, 0.0)))


@dataclass
class SafetyFilter:
    """Stateful filter of one robot's joint targets; `filter(target, state, dt)` -> (safe target, events).

    `fk(q) -> (3,)` end-effector position in the workspace box's frame enables the workspace check. State kept:
    the last safe target and the velocity it commanded (for the velocity and acceleration limits), time, step.
    """

    limits: RobotLimits
    config: SafetyConfig = field(default_factory=SafetyConfig)
    fk: Callable[[np.ndarray], np.ndarray] | None = None
    events: list[SafetyEvent] = field(default_factory=list)

    def __post_init__(self):
        c, lim = self.config, self.limits
        if c.workspace is not None and self.fk is None:
            raise InputError("a workspace box needs a forward-kinematics callable (fk)")
        margin = np.minimum(c.position_margin, 0.25 * (lim.upper - lim.lower))  # a gripper's 4 cm keeps half
        self.lower, self.upper = lim.lower + margin, lim.upper - margin
        self.vmax = lim.velocity * c.velocity_scale
        accel = lim.acceleration.copy()
        if c.max_acceleration is not None:
            accel = np.where(np.isfinite(accel), accel, c.max_acceleration)
        self.amax = accel * c.acceleration_scale
        self.reset()

    def reset(self) -> None:
        """Forget the previous targets (a new episode): the next step starts from the measured state at rest."""
        self.last: np.ndarray | None = None     # last safe target
        self.velocity = np.zeros(self.limits.dof)  # velocity the last safe target commanded
        self.time, self.step = 0.0, 0

    def filter(self, target, state, dt: float, now: float | None = None) -> tuple[np.ndarray, list[SafetyEvent]]:
        """The safe version of joint `target` given the measured `state` (positions, or an object with `.q`
        and `.qd`) and the control period `dt` (s); `now` stamps the events (default: the filter's own time)."""
        if not dt > 0:
            raise InputError(f"control period dt must be positive, got {dt}")
        self.time = self.time + dt if now is None else float(now)
        self.step += 1
        x = np.array(target, dtype=np.float64).reshape(-1)
        q, qd = _measured(state)
        if x.shape != (self.limits.dof,) or q.shape != (self.limits.dof,):
            raise InputError(f"target {x.shape} and state {q.shape} must both have {self.limits.dof} joints")
        events: list[SafetyEvent] = []
        bad = ~np.isfinite(x) | ~np.isfinite(q)
        if bad.any():
            return self._hold(x, q, bad, events), self._log(events)
        if self.last is None and qd is not None and np.isfinite(qd).all():
            self.velocity = qd.copy()  # the first step continues the robot's own motion
        base = q if self.last is None else self.last
        x = self._clamp(events, "position_limit", x, self.lower, self.upper)
        if self.config.max_relative_target is not None:
            m = self.config.max_relative_target
            x = self._clamp(events, "max_relative_target", x, q - m, q + m)
        if self.config.gains is not None:
            x = self._torque(events, x, q, qd)
        x = self._rates(events, x, base, dt)
        if self.fk is not None and self.config.workspace is not None:
            x = self._workspace(events, x, base)
        self.velocity = (x - base) / dt
        self.last = x
        return x.copy(), self._log(events)

    def counts(self) -> dict[str, int]:
        """Interventions so far, by kind."""
        out = dict.fromkeys(KINDS, 0)
        for e in self.events:
            out[e.kind] += 1
        return out

    # -- the steps, in order ------------------------------------------------------------------------------------

    def _hold(self, x, q, bad, events) -> np.ndarray:
        """Reject the whole target: hold the last safe one (or the measured position, if finite, at the start)."""
        if self.last is None and not np.isfinite(q).all():
            raise InputError("the first measured robot state holds NaN or inf: nothing safe to hold")
        hold = q if self.last is None else self.last
        for j in np.flatnonzero(bad):
            events.append(self._event("nonfinite", j, x[j] if not np.isfinite(x[j]) else q[j], hold[j]))
        self.velocity = np.zeros(self.limits.dof)
        self.last = hold.copy()
        return hold.copy()

    def _clamp(self, events, kind: str, x, lo, hi) -> np.ndarray:
        y = np.clip(x, lo, hi)
        for j in np.flatnonzero(y != x):
            events.append(self._event(kind, j, x[j], y[j]))
        return y

    def _torque(self, events, x, q, qd) -> np.ndarray:
        """Targets whose PD torque kp (x - q) - kd qd stays within the effort limit."""
        kp, kd = self.config.gains
        tau = self.limits.effort * self.config.effort_scale
        damp = 0.0 if qd is None else kd * np.nan_to_num(qd)
        return self._clamp(events, "torque_limit", x, q + (-tau + damp) / kp, q + (tau + damp) / kp)

    def _rates(self, events, x, base, dt: float) -> np.ndarray:
        """Velocity then acceleration limits on the step from the last safe target; a velocity that could not
        stop before a position limit at the acceleration limit counts as a velocity limit."""
        v = (x - base) / dt
        cap = np.broadcast_to(self.vmax, v.shape).copy()
        finite_a = np.isfinite(self.amax)
        up = _braking_speed(np.maximum(self.upper - base, 0.0), self.amax, dt)
        down = _braking_speed(np.maximum(base - self.lower, 0.0), self.amax, dt)
        hi = np.where(finite_a, np.minimum(cap, up), cap)
        lo = np.where(finite_a, -np.minimum(cap, down), -cap)
        v2 = np.clip(v, lo, hi)
        x2 = base + v2 * dt
        for j in np.flatnonzero(v2 != v):
            events.append(self._event("velocity_limit", j, x[j], x2[j]))
        dv = self.amax * dt
        v3 = np.clip(v2, self.velocity - dv, self.velocity + dv)
        x3 = np.clip(base + v3 * dt, self.lower, self.upper)  # the position limits stay hard
        for j in np.flatnonzero(x3 != x2):
            events.append(self._event("acceleration_limit", j, x2[j], x3[j]))
        return x3

    def _workspace(self, events, x, base) -> np.ndarray:
        """Scale the step base -> x back (bisection) until the end effector is inside the box; from outside the
        box, a step may only bring it closer."""
        lo, hi = (np.asarray(b, dtype=np.float64) for b in self.config.workspace)
        lo, hi = lo + self.config.workspace_margin, hi - self.config.workspace_margin

        def dist(y):
            return _box_distance(np.asarray(self.fk(y), dtype=np.float64).reshape(3), lo, hi)

        want = dist(x)
        if want == 0.0:
            return x
        start = dist(base)
        if start > 0.0:  # already outside (e.g. the episode began there): only steps that do not move it further
            y = x if want <= start else base
        else:
            s_in, s_out = 0.0, 1.0
            for _ in range(self.config.workspace_iterations):
                s = 0.5 * (s_in + s_out)
                s_in, s_out = (s, s_out) if dist(base + s * (x - base)) == 0.0 else (s_in, s)
            y = base + s_in * (x - base)
        events.append(SafetyEvent(self.time, self.step, "workspace", -1, "end_effector", want, dist(y)))
        return y

    def _event(self, kind: str, j: int, requested: float, applied: float) -> SafetyEvent:
        return SafetyEvent(self.time, self.step, kind, int(j), self.limits.names[j], float(requested), float(applied))

    def _log(self, events: list[SafetyEvent]) -> list[SafetyEvent]:
        self.events.extend(events)
        return events
