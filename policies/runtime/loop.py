"""The control loop of `twin deploy`: one episode of a policy on a robot adapter at a fixed rate.

Every period, on `time.monotonic` (sleep to 1 ms before the deadline, then spin: a sleep alone wakes up to
milliseconds late on a busy or virtual CPU; optionally at a real-time priority; the lateness is the step's
jitter): read the robot; take a chunk the inference worker finished (checked: shape, finite; a bad one
counts as no chunk), which refreshes the watchdog and joins the chunk broker with its measured delay in steps;
ask for the next chunk while this one executes (LeRobot-style asynchronous inference; at policy-frame steps, so
every chunk shares one time grid); pick the target (RUN: the broker's action; HOLD: where the robot was told to
be when the policy went quiet; STOP: a controlled stop trajectory, then `adapter.stop()`); pass it through the
safety filter; send it. A server that died, a stalled network and a policy returning garbage all just stop
producing fresh chunks, so they end the same way: hold after T1, stop after T2.

The cyclic garbage collector is frozen for the loop (`frozen_gc`): a full collection of a process that holds
torch, Newton and the rest walks ~0.7 M objects (0.3-0.5 s measured here) with the GIL held, which stalls the loop
through the whole watchdog window whenever one happens to trigger.

Frames are kept at the policy's rate for the episode record (observation at a frame's first step, the safe
target sent at its last, the safety interventions in between), as `twin record` keeps them.
"""
from __future__ import annotations

import contextlib
import gc
import os
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from policies.features import IMAGE_PREFIX, STATE
from policies.runtime.chunks import BrokerConfig, ChunkBroker
from policies.runtime.inference import Chunks, InferenceWorker
from policies.runtime.safety import SafetyConfig, SafetyFilter
from policies.runtime.watchdog import HOLD, RUN, STOP, Watchdog, stop_trajectory
from twin_kit import InputError, info, warn

WATCHDOG_CODES = {RUN: 0, HOLD: 1, STOP: 2}
DELAY_WINDOW = 16  # chunks whose measured delay the estimate (their max) remembers


@dataclass
class LoopConfig:
    """One episode's timing and limits, resolved from `DeployConfig` and the policy's metadata."""

    hz: int = 50                  # control rate
    k: int = 5                    # control steps per policy frame (hz / the policy's fps)
    mode: str = "rtc"             # rtc | ensemble | sync
    hold_ms: float = 200.0        # watchdog T1: no fresh chunk for this long -> hold
    stop_ms: float = 500.0        # watchdog T2: -> controlled stop
    seconds: float = 20.0         # episode length limit
    stop_s: float = 0.3           # the controlled stop's ramp (at least what the acceleration limits need)
    max_step: float | None = 0.2  # safety: max_relative_target (rad from the measured position); None: off
    ensemble_coeff: float = 0.01  # ensemble: ACT's exp(-m i) weighting
    n_action_steps: int = 4       # sync: policy frames executed per chunk
    spin_ms: float = 1.0          # busy-wait this long before each deadline (a sleep alone wakes late)
    rt_priority: int = 0          # SCHED_FIFO priority of the loop's thread (1-99; 0: the normal scheduler)
    retry_s: float = 0.05         # after a failed request, wait this long before the next
    initial_delay: int = 0        # inference delay estimate (steps) before one is measured; 0: one policy frame
    given: tuple = (None, None)   # the T1, T2 the user gave (None: fitted to the measured inference time)
    switch_ms: float = 0.2        # the interpreter's thread switch interval while the loop runs


@contextlib.contextmanager
def realtime(priority: int):
    """Run the calling thread under SCHED_FIFO at `priority` (1-99) for the block, as real-time robot loops do
    (libfranka, ros2_control); 0 leaves the scheduler alone. Without the permission (root, CAP_SYS_NICE or an
    rtprio limit) it says so in one line and goes on at the normal priority."""
    if not priority:
        yield False
        return
    try:
        before = os.sched_getscheduler(0), os.sched_getparam(0)
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(int(priority)))
    except (PermissionError, OSError, AttributeError) as e:
        warn(f"real-time priority {priority} refused ({type(e).__name__}: {e}); the loop runs at normal priority")
        yield False
        return
    try:
        yield True
    finally:
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, before[0], before[1])


class Rate:
    """A fixed-rate schedule on the monotonic clock: `wait()` sleeps to the next deadline and returns how late
    it woke (s). A step later than a whole period re-anchors the schedule (an overrun) instead of bursting."""

    def __init__(self, hz: float, spin_s: float = 1e-3):
        self.dt, self.spin = 1.0 / hz, spin_s
        self.start = self.t0 = time.monotonic()
        self.n = 0
        self.overruns = 0

    def wait(self) -> float:
        deadline = self.t0 + self.n * self.dt
        left = deadline - time.monotonic()
        if left > self.spin:
            time.sleep(left - self.spin)
        while time.monotonic() < deadline:
            pass
        late = time.monotonic() - deadline
        if late > self.dt:
            self.overruns += 1
            self.t0 += late
        self.n += 1
        return late


@dataclass
class EpisodeLog:
    """What one deployed episode did: its frames (policy rate) and every timing, event and fault."""

    frames: dict[str, list] = field(default_factory=lambda: {"state": [], "action": [], "events": [],
                                                             "watchdog": [], "images": []})
    safety: list[dict] = field(default_factory=list)       # every SafetyEvent, as dicts
    watchdog: list[dict] = field(default_factory=list)     # state changes: time, step, state, age_ms
    faults: list[dict] = field(default_factory=list)       # failed or refused chunks: time, step, error
    jitter_ms: list[float] = field(default_factory=list)   # per control step: lateness of its wake-up
    delays: list[int] = field(default_factory=list)        # per chunk: inference delay in control steps
    infer_ms: list[float] = field(default_factory=list)    # per chunk: request -> answer, wall ms
    seams: list[int] = field(default_factory=list)         # steps at which a new chunk took over or joined
    targets: list[np.ndarray] = field(default_factory=list)  # per control step: the target before the safety filter
    sent: list[np.ndarray] = field(default_factory=list)   # per control step: the safe target sent
    modes: list[str] = field(default_factory=list)         # per control step: the watchdog's run | hold | stop
    started: float = 0.0                                    # monotonic time of the first step (events count from it)
    elapsed_s: float = 0.0                                  # wall time from the first step's wake-up to the last's
    steps: int = 0
    overruns: int = 0
    realtime: bool = False        # the loop ran at the real-time priority asked for
    outcome: str = "time_limit"   # time_limit | done | success | stopped | interrupted
    stop_ms: float | None = None  # watchdog: last fresh chunk -> stop, when it stopped
    success: bool = False

    def summary(self) -> dict:
        """Plain numbers for meta/episodes and --json."""
        j = np.asarray(self.jitter_ms) if self.jitter_ms else np.zeros(1)
        counts: dict[str, int] = {}
        for e in self.safety:
            counts[e["kind"]] = counts.get(e["kind"], 0) + 1
        rate = (self.steps - 1) / self.elapsed_s if self.elapsed_s > 0 and self.steps > 1 else 0.0
        return {"outcome": self.outcome, "success": self.success, "control_steps": self.steps,
                "achieved_hz": round(rate, 3),
                "jitter_p50_ms": round(float(np.percentile(j, 50)), 4),
                "jitter_p99_ms": round(float(np.percentile(j, 99)), 4), "jitter_max_ms": round(float(j.max()), 4),
                "overruns": self.overruns, "realtime": self.realtime, "chunks": len(self.delays),
                "delay_max_steps": max(self.delays, default=0),
                "infer_p50_ms": round(float(np.median(self.infer_ms)), 2) if self.infer_ms else None,
                "safety_events": len(self.safety), "faults": len(self.faults),
                "holds": sum(1 for w in self.watchdog if w["state"] == HOLD),
                "stop_ms": None if self.stop_ms is None else round(self.stop_ms, 2),
                "events_by_kind": ";".join(f"{k}={v}" for k, v in sorted(counts.items()))}


def observe(adapter, state) -> dict[str, np.ndarray]:
    """The policy's input from a reading: the adapter's own (a simulator knows the task's extra state), else the
    joint positions and the camera frames."""
    if hasattr(adapter, "observation"):
        return adapter.observation(state)
    obs = {STATE: np.asarray(state.q, dtype=np.float32)}
    for name, img in state.images.items():
        obs[IMAGE_PREFIX + name] = img
    return obs


def check_observation(obs: dict, meta: dict) -> None:
    """Refuse (one line) a robot whose observation is not what the policy reads."""
    for key, spec in meta["observation"].items():
        if key not in obs:
            raise InputError(f"the policy reads {key}, which the robot does not give (it gives "
                             f"{', '.join(obs) or 'nothing'})")
        a = np.asarray(obs[key])
        if list(a.shape) != list(spec["shape"]) or a.dtype != np.dtype(spec["dtype"]):
            raise InputError(f"{key}: the robot gives {a.dtype}{list(a.shape)}, the policy reads "
                             f"{spec['dtype']}{list(spec['shape'])}")


def broker_config(cfg: LoopConfig, horizon: int) -> BrokerConfig:
    """The chunk broker in control steps: rtc and ensemble ask every policy frame, sync every n_action_steps."""
    length = (horizon - 1) * cfg.k + 1
    execute = cfg.k if cfg.mode != "sync" else min(length, cfg.n_action_steps * cfg.k)
    return BrokerConfig(mode=cfg.mode, chunk_size=length, execute_steps=execute, request_every=cfg.k,
                        ensemble_coeff=cfg.ensemble_coeff, delay_window=DELAY_WINDOW,
                        initial_delay=cfg.initial_delay or cfg.k)


class _Frames:
    """Policy-rate frames of the episode record: opened at a frame's first step, closed at its last."""

    def __init__(self, log: EpisodeLog):
        self.log, self.open, self.events = log, False, 0

    def start(self, obs: dict) -> None:
        f = self.log.frames
        f["state"].append(np.asarray(obs[STATE], dtype=np.float32))
        f["images"].append({k: v for k, v in obs.items() if k.startswith(IMAGE_PREFIX)})
        self.open, self.events = True, 0

    def close(self, action: np.ndarray, mode: str) -> None:
        if self.open:
            f = self.log.frames
            f["action"].append(np.asarray(action, dtype=np.float32))
            f["events"].append(self.events)
            f["watchdog"].append(WATCHDOG_CODES[mode])
            self.open = False


@contextlib.contextmanager
def frozen_gc():
    """Collect once, then exempt every object alive now from the cyclic garbage collector for the block, so a
    collection that triggers during it walks only the objects the block made (real-time loops in Python do the
    same; CPython's `gc.freeze`). On exit they are handed back to the collector."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@contextlib.contextmanager
def loop_conditions(switch_ms: float, rt_priority: int):
    """What a control loop runs under, undone on exit: the garbage collector frozen, a short thread switch
    interval (so a busy Python thread cannot hold the loop off), and the real-time priority asked for (yields
    whether it was granted)."""
    switch = sys.getswitchinterval()
    sys.setswitchinterval(switch_ms / 1e3)
    try:
        with frozen_gc(), realtime(rt_priority) as granted:
            yield granted
    finally:
        sys.setswitchinterval(switch)


def run_episode(adapter, worker: InferenceWorker, meta: dict, cfg: LoopConfig, verbose: bool = True) -> EpisodeLog:
    """One episode of the policy behind `worker` on `adapter` (connected, at the episode's start)."""
    horizon, dim = (int(v) for v in meta["action"]["shape"])
    chunks = Chunks(horizon, dim, cfg.k)
    broker = ChunkBroker(broker_config(cfg, horizon))
    safety = SafetyFilter(adapter.limits, SafetyConfig(max_relative_target=cfg.max_step))
    wd = Watchdog(cfg.hold_ms, cfg.stop_ms)
    log = EpisodeLog()
    frames = _Frames(log)
    dt, max_steps = 1.0 / cfg.hz, max(1, int(round(cfg.seconds * cfg.hz)))
    say = info if verbose else (lambda _m: None)
    state = adapter.read()
    first = observe(adapter, state)
    check_observation(first, meta)
    last_safe = np.asarray(state.q, dtype=np.float64).copy()
    mode, stop_plan, stop_i, retry_at = RUN, None, 0, 0.0
    seen_kinds: set[str] = set()
    rt = contextlib.ExitStack()
    log.realtime = rt.enter_context(loop_conditions(cfg.switch_ms, cfg.rt_priority))
    rate = Rate(cfg.hz, cfg.spin_ms / 1e3)
    wd.reset(rate.start)
    fresh_at = log.started = rate.start
    step = 0
    try:
        while True:
            try:
                late = rate.wait()
            except KeyboardInterrupt:
                late = 0.0
                wd.trip()
                log.outcome = "interrupted"
                warn("interrupted: stopping the robot (controlled stop)")
            now = time.monotonic()
            log.jitter_ms.append(late * 1e3)
            log.elapsed_s = now - rate.start
            if step:
                state = adapter.read()
            res = worker.poll()
            if res is not None:
                why = res.error or chunks.check(res.actions)
                if why is None and mode != STOP:
                    broker.receive(chunks.upsample(res.actions), res.tag, step)
                    wd.fresh(now)
                    fresh_at = now
                    log.delays.append(step - res.tag)
                    log.infer_ms.append((res.done - res.sent) * 1e3)
                elif why is not None:
                    broker.cancel()
                    retry_at = now + cfg.retry_s
                    log.faults.append({"time": now - rate.start, "step": step, "error": why})
                    if len(log.faults) == 1 or log.faults[-2]["error"] != why:
                        warn(f"step {step}: no chunk: {why}")
            new = wd.state(now)
            if new != mode:
                age = (now - fresh_at) * 1e3
                log.watchdog.append({"time": now - rate.start, "step": step, "state": new, "age_ms": age})
                if new == HOLD:
                    warn(f"step {step}: no fresh chunk for {age:.0f} ms: holding")
                elif new == STOP:
                    log.stop_ms = age
                    if log.outcome != "interrupted":
                        log.outcome = "stopped"
                        warn(f"step {step}: no fresh chunk for {age:.0f} ms: controlled stop")
                    stop_plan = stop_trajectory(last_safe, safety.velocity, dt, safety.amax, cfg.stop_s,
                                                safety.lower, safety.upper)
                else:
                    say(f"step {step}: fresh chunks again: running")
                mode = new
            if step % cfg.k == 0:  # a policy frame starts: record it, and ask for a chunk if one is due
                obs = first if step == 0 else observe(adapter, state)
                frames.start(obs)
                if mode != STOP and not worker.busy and now >= retry_at and broker.due(step):
                    req = broker.request(step)
                    prefix, n = chunks.prefix(req.prefix, req.prefix_len)
                    extras = {} if prefix is None else {"prefix_actions": prefix, "prefix_len": n}
                    worker.submit({**obs, **extras}, step)
            if mode == STOP:
                target = stop_plan[min(stop_i, len(stop_plan) - 1)]
                stop_i += 1
            else:  # RUN without a chunk covering this step, and HOLD: stay where the robot was last told to be
                target = broker.action(step) if mode == RUN else None
                target = last_safe if target is None else target
            safe, events = safety.filter(target, state, dt, now=now - rate.start)
            adapter.send(safe)
            last_safe = safe
            log.targets.append(np.array(target, dtype=np.float64))
            log.sent.append(safe)
            log.modes.append(mode)
            frames.events += len(events)
            for e in events:
                log.safety.append({**e.as_dict(), "step": step})
                if e.kind not in seen_kinds:
                    seen_kinds.add(e.kind)
                    warn(f"step {step}: safety: {e.kind} on {e.name} ({e.requested:.4g} -> {e.applied:.4g}); "
                         "later ones of this kind are counted")
            step += 1
            log.steps = step
            ended = mode == STOP and stop_i >= len(stop_plan)
            done = bool(getattr(adapter, "done", False))
            if ended or step >= max_steps or done:
                frames.close(safe, mode)
                if ended:
                    adapter.stop()
                elif done and log.outcome == "time_limit":
                    log.outcome = "done"
                break
            if step % cfg.k == 0:
                frames.close(safe, mode)
    finally:
        rt.close()
    log.overruns = rate.overruns
    log.success = bool(getattr(adapter, "success", False))
    if log.success and log.outcome == "done":
        log.outcome = "success"
    log.seams = list(broker.seams)
    return log


def measure_rate(adapter, hz: float, seconds: float, spin_ms: float = 1.0, switch_ms: float = 0.2,
                 rt_priority: int = 0) -> dict:
    """The loop's timing alone on `adapter` (connected): read, then send the position it held at the start,
    every period for `seconds` on the same schedule as `run_episode`. Lateness percentiles (ms), overruns, the
    rate achieved, the mean time a step's read + send took (for the sim: the physics step), and whether the
    real-time priority asked for was granted."""
    hold = np.asarray(adapter.read().q, dtype=np.float64).copy()
    n = max(2, int(round(seconds * hz)))
    late, work = np.zeros(n), np.zeros(n)
    rt = contextlib.ExitStack()
    granted = rt.enter_context(loop_conditions(switch_ms, rt_priority))
    rate = Rate(hz, spin_ms / 1e3)
    try:
        for i in range(n):
            late[i] = rate.wait()
            t = time.monotonic()
            adapter.read()
            adapter.send(hold)
            work[i] = time.monotonic() - t
        end = time.monotonic()
    finally:
        rt.close()
    wall = end - rate.start - work[-1]
    return {"hz": hz, "steps": n, "jitter_p50_ms": float(np.percentile(late, 50) * 1e3),
            "jitter_p99_ms": float(np.percentile(late, 99) * 1e3), "jitter_max_ms": float(late.max() * 1e3),
            "overruns": rate.overruns, "achieved_hz": (n - 1) / wall if wall > 0 else 0.0,
            "step_work_ms": float(work.mean() * 1e3), "realtime": granted}
