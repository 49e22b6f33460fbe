"""`twin deploy --replay DATASET --robot g1`: a recorded G1 episode (LeRobot v2.1 or v3) played back through the
safety layer into a G1 over DDS, to show the runtime carries real data, and to inject faults into it.

The episode's actions name the robot's joints Unitree's way (`kLeftShoulderPitch`); the ones that are G1 body
motors are replayed (mapped onto Twin's model by name), the others (the hands' fingers) are reported as not
replayed. Each control step takes the episode's action at that instant, linearly interpolated from its frames,
through `SafetyFilter` (the G1's limits, `max_relative_target` on) to `G1Adapter.send`; the robot is first ramped
from where it stands to the episode's first frame. A frame "arrives" when the replay clock passes it, and the
watchdog times those arrivals, as it times chunks in `twin deploy`.

Faults (`inject`), each at a fixed point of the replayed span and each checked from the logged events:
    limit    one target past a joint's upper limit -> clamped (a `position_limit` event, the target sent within)
    dropout  no frames arrive for 200 ms -> the watchdog holds (T1 < 200 ms) the last safe target, then resumes
    nan      one target holding a NaN -> rejected (a `nonfinite` event), the last safe target held
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from policies.runtime.loop import Rate
from policies.runtime.safety import SafetyConfig, SafetyFilter, limit_margin
from policies.runtime.watchdog import HOLD, RUN, STOP, Watchdog
from twin_kit import InputError

FAULTS = ("limit", "dropout", "nan")
FAULT_AT = {"limit": 0.3, "dropout": 0.5, "nan": 0.75}  # where in the replayed span each fault is injected
DROPOUT_S = 0.2          # a dropout's length
LIMIT_EXCESS = 0.3       # rad past the upper limit the limit fault asks for
SETTLE_S = 0.3           # after a fault, events this long are its consequences (the return to the path)
APPROACH_SPEED = 0.4     # rad/s of the ramp from the robot's pose to the episode's first frame


@dataclass
class ReplayEpisode:
    """One recorded episode's joint targets, on the robot's joints: `names` (Twin's), `source_names` (the
    dataset's spelling), `targets` (T, D) at `fps`; `skipped`: the dataset's joints that are not robot motors."""

    names: list[str]
    source_names: list[str]
    targets: np.ndarray
    fps: float
    skipped: list[str]
    episode_index: int
    task: str = ""

    @property
    def seconds(self) -> float:
        return (len(self.targets) - 1) / self.fps

    def at(self, t: float) -> np.ndarray:
        """The target at `t` seconds into the episode, linearly interpolated between frames (clamped to its ends)."""
        x = min(max(t * self.fps, 0.0), len(self.targets) - 1.0)
        i = min(int(x), len(self.targets) - 2) if len(self.targets) > 1 else 0
        w = x - i
        return self.targets[i] if w == 0.0 else (1 - w) * self.targets[i] + w * self.targets[i + 1]


def flat_names(names) -> list[str]:
    """A feature's joint names, flat (LeRobot v2.1 datasets recorded on the G1 nest them in one more list)."""
    names = list(names or [])
    return [str(n) for n in names[0]] if len(names) == 1 and isinstance(names[0], (list, tuple)) else \
        [str(n) for n in names]


def load_episode(path, seconds: float | None = None, key: str = "action") -> ReplayEpisode:
    """The first episode on disk of the dataset at `path` (a partial copy may hold only some), its `key` column on
    the G1's body joints; `seconds`: keep only that much of its start."""
    from policies.datasets.reader import read_dataset
    from sim import g1_joint_name

    ds = read_dataset(path)
    ft = ds.spec.features.get(key)
    if ft is None:
        raise InputError(f"{path}: no {key!r} feature to replay")
    names = flat_names(ft.names)
    if len(names) != int(np.prod(ft.shape)):
        raise InputError(f"{path}: {key} names {len(names)} joints for a shape {list(ft.shape)}")
    keep, mapped, skipped = [], [], []
    for i, n in enumerate(names):
        try:
            mapped.append(g1_joint_name(n))
            keep.append(i)
        except InputError:
            skipped.append(n)
    if not keep:
        raise InputError(f"{path}: none of its joints ({', '.join(names[:4])}, ...) is a G1 body joint")
    pos = next((k for k, e in enumerate(ds.episodes) if e.available), None)
    if pos is None:
        raise InputError(f"{path}: none of its {len(ds.episodes)} episodes is on disk")
    ep = ds.episodes[pos]
    targets = np.asarray(ds.episode_frames(pos)[key], dtype=np.float64).reshape(ep.length, -1)[:, keep]
    if len(targets) < 2 or not np.isfinite(targets).all():
        raise InputError(f"{path}: episode {ep.index} has {len(targets)} frames, or non-finite {key} values")
    if seconds is not None:
        targets = targets[: max(2, int(round(seconds * ds.fps)) + 1)]
    return ReplayEpisode(mapped, [names[i] for i in keep], targets, float(ds.fps), skipped, ep.index,
                         (ep.tasks or [""])[0])


@dataclass
class ReplayConfig:
    """How an episode is replayed: control rate, safety, watchdog (T1 under the 200 ms dropout, T2 over it) and
    the faults to inject."""

    hz: int = 100                     # control rate (the episode's frames are interpolated to it)
    max_step: float | None = 0.2      # safety: max_relative_target (rad); None: off
    hold_ms: float = 100.0            # watchdog T1: no frame for this long -> hold
    stop_ms: float = 500.0            # watchdog T2: -> stop (latched)
    skip_s: float = 1.0               # tracking RMS leaves out the replay's first second
    settle_s: float = 0.5             # hold at the first frame before the replay starts
    inject: tuple[str, ...] = ()      # faults: limit, dropout, nan
    spin_ms: float = 1.0

    def __post_init__(self):
        bad = [f for f in self.inject if f not in FAULTS]
        if bad:
            raise InputError(f"--inject {','.join(bad)}: faults are {', '.join(FAULTS)}")
        if not self.hold_ms < DROPOUT_S * 1e3 < self.stop_ms:
            raise InputError(f"the watchdog must hold within a {DROPOUT_S * 1e3:g} ms dropout and not stop: T1 "
                             f"{self.hold_ms:g} ms, T2 {self.stop_ms:g} ms")


@dataclass
class ReplayLog:
    """Per control step: phase (approach | settle | replay), replay time, target before and after the safety filter,
    measured q, watchdog mode; plus the safety events and the watchdog's transitions, steps counted from 0."""

    phase: list[str] = field(default_factory=list)
    t: list[float] = field(default_factory=list)
    targets: list[np.ndarray] = field(default_factory=list)
    sent: list[np.ndarray] = field(default_factory=list)
    measured: list[np.ndarray] = field(default_factory=list)
    modes: list[str] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    watchdog: list[dict] = field(default_factory=list)
    faults: dict[str, dict] = field(default_factory=dict)   # fault -> {step, steps (its length), joint}
    jitter_ms: list[float] = field(default_factory=list)
    overruns: int = 0


def fault_plan(inject, n_replay: int, hz: int, first: int) -> dict[str, dict]:
    """Control steps (absolute) at which each fault starts, and how many steps it lasts."""
    out = {}
    for f in inject:
        out[f] = {"step": first + int(FAULT_AT[f] * n_replay),
                  "steps": max(1, round(DROPOUT_S * hz)) if f == "dropout" else 1}
    return out


def replay(adapter, episode: ReplayEpisode, cfg: ReplayConfig) -> ReplayLog:
    """Play `episode` on the connected `adapter` (whose joints are the episode's): ramp to its first frame, settle,
    replay at `cfg.hz` through the safety filter and the watchdog, injecting `cfg.inject`."""
    if list(adapter.joint_names) != list(episode.names):
        raise InputError(f"the adapter's joints {adapter.joint_names[:3]}... are not the episode's "
                         f"{episode.names[:3]}...")
    dt = 1.0 / cfg.hz
    safety = SafetyFilter(adapter.limits, SafetyConfig(max_relative_target=cfg.max_step))
    wd = Watchdog(cfg.hold_ms, cfg.stop_ms)
    log = ReplayLog()
    start = np.asarray(adapter.read().q, dtype=np.float64)
    first = episode.targets[0]
    ramp = max(1.0, float(np.abs(first - start).max()) / APPROACH_SPEED)
    n_ramp, n_settle = math.ceil(ramp * cfg.hz), math.ceil(cfg.settle_s * cfg.hz)
    n_replay = int(math.floor(episode.seconds * cfg.hz)) + 1
    begin = n_ramp + n_settle
    plan = fault_plan(cfg.inject, n_replay, cfg.hz, begin)
    log.faults = {k: dict(v) for k, v in plan.items()}
    limit_joint = int(np.argmax(first - adapter.limits.upper))  # the joint nearest its upper limit at the start
    if "limit" in plan:
        log.faults["limit"]["joint"] = limit_joint
    mode, last_frame = RUN, -1
    rate = Rate(cfg.hz, cfg.spin_ms / 1e3)
    wd.reset(rate.start)
    for step in range(begin + n_replay):
        log.jitter_ms.append(rate.wait() * 1e3)
        now = time.monotonic()
        state = adapter.read()
        if step < n_ramp:
            phase, t = "approach", 0.0
            s = (step + 1) / n_ramp
            target = start + (first - start) * (3 * s * s - 2 * s ** 3)   # smooth: zero velocity at both ends
            wd.fresh(now)
        elif step < begin:
            phase, t, target = "settle", 0.0, first.copy()
            wd.fresh(now)
        else:
            phase, t = "replay", (step - begin) * dt
            frame = int(math.floor(t * episode.fps + 1e-9))
            dropped = "dropout" in plan and plan["dropout"]["step"] <= step < plan["dropout"]["step"] + \
                plan["dropout"]["steps"]
            target = None
            if not dropped:
                target = episode.at(t)
                if frame != last_frame:   # a new frame arrived
                    wd.fresh(now)
                    last_frame = frame
            if "limit" in plan and step == plan["limit"]["step"]:
                target = target.copy()
                target[limit_joint] = adapter.limits.upper[limit_joint] + LIMIT_EXCESS
            if "nan" in plan and step == plan["nan"]["step"]:
                target = target.copy()
                target[len(target) // 2] = np.nan
        new = wd.state(now)
        if new != mode:
            log.watchdog.append({"step": step, "state": new, "age_ms": wd.age_ms(now)})
            mode = new
        if mode != RUN or target is None:   # hold (or, before T1, stay) where the robot was last told to be
            target = safety.last if safety.last is not None else np.asarray(state.q, dtype=np.float64)
        safe, events = safety.filter(target, state, dt, now=now - rate.start)
        adapter.send(safe)
        log.phase.append(phase)
        log.t.append(t)
        log.targets.append(np.array(target, dtype=np.float64))
        log.sent.append(safe)
        log.measured.append(np.asarray(state.q, dtype=np.float64))
        log.modes.append(mode)
        log.events += [{**e.as_dict(), "step": step} for e in events]
        if mode == STOP:
            adapter.stop()
            break
    log.overruns = rate.overruns
    return log


def fault_window(log: ReplayLog, hz: int) -> set[int]:
    """Control steps that belong to an injected fault: from its start to SETTLE_S after its end."""
    out: set[int] = set()
    for f in log.faults.values():
        out.update(range(f["step"], f["step"] + f["steps"] + int(SETTLE_S * hz)))
    return out


def check_faults(log: ReplayLog, limits) -> dict[str, bool]:
    """Whether each injected fault was handled as designed, read from the logged events, targets and watchdog."""
    out = {}
    sent = np.asarray(log.sent)
    for name, f in log.faults.items():
        s = f["step"]
        at = [e for e in log.events if e["step"] == s]
        if name == "limit":
            j = f["joint"]
            out[name] = any(e["kind"] == "position_limit" and e["joint"] == j and e["applied"] <= limits.upper[j]
                            for e in at) and bool(sent[s, j] <= limits.upper[j])
        elif name == "nan":
            out[name] = any(e["kind"] == "nonfinite" for e in at) and bool(np.array_equal(sent[s], sent[s - 1]))
        else:
            end = s + f["steps"]
            holds = [w for w in log.watchdog if w["state"] == HOLD and s <= w["step"] < end]
            resumed = [w for w in log.watchdog if w["state"] == RUN and w["step"] >= end]
            held = bool(holds) and all(np.array_equal(sent[k], sent[holds[0]["step"]])
                                       for k in range(holds[0]["step"], end))
            out[name] = held and bool(resumed) and not any(w["state"] == STOP for w in log.watchdog) and \
                holds[0]["age_ms"] < DROPOUT_S * 1e3
    return out


def summarize(log: ReplayLog, episode: ReplayEpisode, limits, cfg: ReplayConfig) -> dict:
    """The replay's figures: joint tracking RMS (the target sent vs the position measured one period later, replay
    phase after `skip_s`, fault windows left out), the smallest margin to any position limit (commanded and
    measured), interventions outside the fault windows, and each fault's outcome."""
    sent, meas = np.asarray(log.sent), np.asarray(log.measured)
    phase = np.asarray(log.phase)
    t = np.asarray(log.t)
    faulty = fault_window(log, cfg.hz)
    keep = np.array([phase[k] == "replay" and t[k] >= cfg.skip_s and k not in faulty
                     for k in range(len(sent) - 1)], dtype=bool)
    err = sent[:-1][keep] - meas[1:][keep]
    rms_joint = np.sqrt(np.mean(err ** 2, axis=0)) if len(err) else np.full(len(episode.names), np.nan)
    clean = [e for e in log.events if e["step"] not in faulty]
    kinds: dict[str, int] = {}
    for e in clean:
        kinds[e["kind"]] = kinds.get(e["kind"], 0) + 1
    faults = check_faults(log, limits)
    jit = np.asarray(log.jitter_ms) if log.jitter_ms else np.zeros(1)
    return {"episode_index": episode.episode_index, "task": episode.task, "fps": episode.fps, "hz": cfg.hz,
            "replayed_s": round(episode.seconds, 3), "joints": episode.source_names,
            "not_replayed": episode.skipped, "control_steps": len(sent),
            "tracking_rms_rad": round(float(np.sqrt(np.mean(err ** 2))) if len(err) else math.nan, 5),
            "tracking_rms_max_joint_rad": round(float(rms_joint.max()), 5),
            "tracking_max_abs_rad": round(float(np.abs(err).max()) if len(err) else math.nan, 5),
            "min_margin_commanded_rad": round(limit_margin(sent, limits), 5),
            "min_margin_measured_rad": round(limit_margin(meas, limits), 5),
            "min_margin_rad": round(min(limit_margin(sent, limits), limit_margin(meas, limits)), 5),
            "interventions": len(clean), "interventions_by_kind": kinds,
            "fault_events": len(log.events) - len(clean),
            "faults_handled": faults, "all_faults_handled": bool(faults) and all(faults.values()),
            "watchdog": log.watchdog, "stopped": any(m == STOP for m in log.modes),
            "jitter_p99_ms": round(float(np.percentile(jit, 99)), 4), "overruns": log.overruns}


def run_replay(cfg, json_out: bool = False) -> int:
    """`twin deploy --replay PATH --robot g1`: replay the episode into the G1 over DDS, then report."""
    from policies.runtime.robots.g1 import G1Adapter
    from twin_kit import emit_json, info, one_line

    if cfg.robot != "g1":
        raise InputError(f"--replay plays a G1 episode over DDS: use --robot g1 (not {cfg.robot})")
    inject = tuple(f for f in (cfg.inject or "").split(",") if f)
    rcfg = ReplayConfig(hz=cfg.hz, max_step=cfg.max_step or None, inject=inject)
    episode = load_episode(cfg.replay, cfg.seconds)
    info(f"replaying episode {episode.episode_index} of {cfg.replay} ({episode.seconds:.1f} s at {episode.fps:g} fps, "
         f"{len(episode.names)} joints) at {cfg.hz} Hz; not replayed (not G1 body motors): "
         f"{', '.join(episode.skipped) or 'none'}")
    adapter = G1Adapter(episode.names, interface=cfg.address or "lo", domain=cfg.domain)
    try:
        try:
            adapter.connect()
        except InputError:
            raise
        except Exception as e:  # noqa: BLE001 - the DDS library's own errors: one line
            raise InputError(f"--robot g1: cannot connect ({type(e).__name__}: {one_line(e)})") from None
        log = replay(adapter, episode, rcfg)
    finally:
        adapter.close()
    res = summarize(log, episode, adapter.limits, rcfg)
    info(f"tracking RMS {res['tracking_rms_rad']:.4f} rad (worst joint {res['tracking_rms_max_joint_rad']:.4f}), "
         f"smallest margin to a limit {res['min_margin_rad']:.4f} rad, {res['interventions']} interventions"
         + (f"; faults handled: {res['faults_handled']}" if inject else ""))
    if json_out:
        emit_json(res)
    ok = res["interventions"] == 0 and (not inject or res["all_faults_handled"])
    return 0 if ok else 1
