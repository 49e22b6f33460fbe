"""`twin deploy`: a trained policy (a run in this process, or a policy server at ws://HOST:PORT) driving a robot
adapter (sim, franka, g1) through the control loop, each episode recorded as a LeRobot v3 episode.

`DeployConfig` is light to import (the CLI builds its options from it); everything heavy loads when the verb runs.
Chunking defaults to real-time chunking for flow policies and temporal ensembling for ACT. Inferences before the
clock starts warm the policy up and time it: they give the first delay estimate, and, unless given, the
watchdog's T1 (twice the time between two chunks in normal running, at least 200 ms: a chunk arriving on time
must never look like a fault) and T2 (T1 + 300 ms).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from twin_kit import InputError, opt, validate_config

ROBOTS = ("sim", "franka", "g1")
CHUNKINGS = ("auto", "rtc", "ensemble", "sync")
TASKS = ("reach", "push", "pick_place")
DEFAULT_SECONDS = 30.0  # episode length on a real robot when not given
REPLY_TIMEOUT_S = 5.0   # a policy server's reply, unless --stop-ms is given


@dataclass
class DeployConfig:
    """Run a trained policy on a robot at a fixed control rate, with the safety layer and the watchdog."""

    run: str | None = opt(None, "the policy: a run folder (runs/NAME), a saved policy folder or an exported .onnx "
                                "file (run in this process), or ws://HOST:PORT of a policy server (twin serve)",
                          positional=True)
    robot: str = opt("sim", "robot adapter: sim (Twin's simulated robot doing --task in --bundle), franka, g1",
                     choices=ROBOTS)
    hz: int = opt(50, "control rate (a multiple of the policy's fps)", low=1, high=1000)
    chunking: str = opt("auto", "how chunks are spliced: rtc (real-time chunking, flow policies), ensemble "
                                "(ACT's temporal ensembling), sync (wait for each chunk); auto: rtc for flow, "
                                "ensemble for ACT", choices=CHUNKINGS)
    episodes: int = opt(1, "episodes to run (the sim resets from --seed + k; a watchdog stop ends the run)", low=1,
                        high=100_000)
    seconds: float | None = opt(None, "episode length limit in seconds (default: the sim task's, else 30)",
                                low=0.1, high=86_400)
    task: str | None = opt(None, "--robot sim: the task (reach, push, pick_place)", choices=TASKS)
    bundle: str | None = opt(None, "--robot sim: the scene bundle (default: an empty floor)")
    scale: float | None = opt(None, "--robot sim: metres per scene unit of a bundle of arbitrary scale", low=0.0,
                              low_open=True)
    robot_pose: tuple[float, float, float, float] | None = opt(
        None, "--robot sim: robot base x y z yaw (default: a free spot on the support surface)", metavar="X")
    seed: int = opt(0, "--robot sim: reset seed of episode 0 (episode k uses seed + k)", low=0, high=2**62)
    address: str | None = opt(None, "--robot franka: the robot's (or franky-sim's) IP address (default "
                                    "127.0.0.1); --robot g1: the DDS network interface",
                              pattern=r"[A-Za-z0-9.:_\-]+", pattern_help="a host, IP address or interface name")
    domain: int = opt(1, "--robot g1: the DDS domain id (Twin's bridge serves 1; a real G1 uses 0)", low=0, high=232)
    token: str | None = opt(None, "API key of a policy server that needs one (sent as 'Authorization: Api-Key')",
                            pattern=r"[!-~]{8,256}", pattern_help="8 to 256 printable ASCII characters")
    runtime: str = opt("onnx", "a local policy runs its ONNX export in onnxruntime, or in PyTorch",
                       choices=("onnx", "torch"))
    threads: int = opt(1, "intra-op threads of a local policy", low=1, high=256)
    hold_ms: float | None = opt(None, "watchdog T1: no fresh chunk for this long -> hold the last safe position "
                                      "(default: twice the measured time between chunks, at least 200)",
                                low=1.0, high=60_000)
    stop_ms: float | None = opt(None, "watchdog T2: no fresh chunk for this long -> controlled stop (default: "
                                      "T1 + 300)", low=1.0, high=120_000)
    stop_s: float = opt(0.3, "the controlled stop's ramp in seconds (longer if the acceleration limits need it)",
                        low=0.0, high=10.0)
    max_step: float = opt(0.2, "safety: a target at most this far (rad, m) from the measured position "
                               "(max_relative_target; 0: off)", low=0.0, high=10.0)
    spin_ms: float = opt(1.0, "busy-wait this long before each control deadline (sleep alone wakes late)",
                         low=0.0, high=10.0)
    rt_priority: int = opt(0, "run the control loop's thread under SCHED_FIFO at this priority (1-99; needs root, "
                              "CAP_SYS_NICE or an rtprio limit; 0: normal scheduling)", low=0, high=99)
    goal: tuple[float, float, float] | None = opt(
        None, "--robot franka|g1: the goal a goal-conditioned policy reads (reach: the target in the robot's base "
              "frame, metres: x forward, y left, z up from the support under the base); the sim draws its own",
        metavar="X")
    out: str | None = opt(None, "dataset folder for the episodes (default deploy/NAME-YYYYmmdd-HHMMSS)")
    replay: str | None = opt(None, "instead of a policy, replay this LeRobot dataset's first episode (its actions "
                                   "on the robot's joints, through the safety layer; --robot g1; --seconds: its start)")
    inject: str | None = opt(None, "--replay: faults to inject, comma-separated: limit (a target past a joint limit), "
                                   "dropout (200 ms without targets), nan", pattern=r"(limit|dropout|nan)(,(limit|"
                             r"dropout|nan))*", pattern_help="a comma-separated list of limit, dropout, nan")

    def __post_init__(self):
        validate_config(self)


def plan_loop(cfg: DeployConfig, meta: dict):
    """The loop's settings for this policy (its metadata): control steps per frame, chunking, watchdog times."""
    from policies.runtime.loop import LoopConfig

    fps, kind = int(meta["fps"]), meta.get("policy_type")
    if cfg.hz % fps:
        near = fps * max(1, round(cfg.hz / fps))
        raise InputError(f"--hz {cfg.hz} is not a multiple of the policy's {fps} fps (try --hz {near})")
    k = cfg.hz // fps
    mode = cfg.chunking
    if mode == "auto":
        mode = "rtc" if kind == "flow" else "ensemble"
    if mode == "rtc" and kind != "flow":
        raise InputError(f"--chunking rtc needs a flow policy (this one is {kind}); use ensemble or sync")
    pcfg = meta.get("config") or {}
    n_steps = int(meta.get("n_action_steps") or pcfg.get("n_action_steps") or 1)
    loop = LoopConfig(hz=cfg.hz, k=k, mode=mode, seconds=cfg.seconds or DEFAULT_SECONDS, stop_s=cfg.stop_s,
                      max_step=cfg.max_step or None, n_action_steps=n_steps, spin_ms=cfg.spin_ms,
                      rt_priority=cfg.rt_priority)
    coeff = pcfg.get("temporal_ensemble_coeff")
    loop.ensemble_coeff = 0.01 if coeff is None else coeff
    between = chunk_interval_ms(loop, 0.0)
    hold, stop = watchdog_times(loop, 0.0, cfg.hold_ms, cfg.stop_ms)
    if hold <= between:
        raise InputError(f"--hold-ms {hold:g} is not longer than the time between two chunks ({between:g} ms with "
                         f"--chunking {mode} at {fps} fps): the robot would hold in normal running")
    if stop < hold:
        raise InputError(f"--stop-ms {stop:g} must not be shorter than --hold-ms {hold:g}")
    loop.hold_ms, loop.stop_ms, loop.given = hold, stop, (cfg.hold_ms, cfg.stop_ms)
    return loop


def chunk_interval_ms(loop, infer_s: float) -> float:
    """Milliseconds between two fresh chunks in normal running when an inference takes `infer_s`: requests go
    out at policy-frame steps, so rtc and ensemble get one every whole number of frames the inference spans; sync
    executes its chunk, then waits for the next."""
    frame = 1000.0 * loop.k / loop.hz
    infer = math.ceil(infer_s * loop.hz) * 1000.0 / loop.hz
    if loop.mode == "sync":
        return loop.n_action_steps * frame + infer
    return max(1, math.ceil(infer / frame - 1e-9)) * frame


def watchdog_times(loop, infer_s: float, hold_ms: float | None = None, stop_ms: float | None = None):
    """(T1, T2) in ms: the given ones, else T1 = max(200, twice the time between chunks), T2 = T1 + 300."""
    hold = hold_ms if hold_ms is not None else max(200.0, 2 * chunk_interval_ms(loop, infer_s))
    return hold, stop_ms if stop_ms is not None else hold + 300


def camera_layout(meta: dict) -> tuple[list[str], int]:
    """(short camera names, square side) of the policy's cameras, which the sim renders."""
    from policies.features import IMAGE_PREFIX

    cams = {k.removeprefix(IMAGE_PREFIX): v["shape"] for k, v in meta["observation"].items()
            if k.startswith(IMAGE_PREFIX)}
    sizes = {(int(s[0]), int(s[1])) for s in cams.values()}
    if len(sizes) > 1 or any(h != w for h, w in sizes):
        raise InputError(f"the sim renders square cameras of one size; the policy reads {sorted(sizes)}")
    return list(cams), (sizes.pop()[0] if sizes else 128)


def build_adapter(cfg: DeployConfig, meta: dict):
    """The robot adapter `--robot` names (its client library loads only now)."""
    action_names = list(meta["action"].get("names") or [])
    if cfg.robot == "sim":
        from policies.runtime.robots.sim import SimAdapter

        if cfg.task is None:
            raise InputError("--robot sim needs --task (reach, push or pick_place)")
        robot = meta.get("robot_type")
        if not robot:
            raise InputError("the policy's metadata names no robot_type: the sim does not know which robot to build")
        names, size = camera_layout(meta)
        adapter = SimAdapter(cfg.task, cfg.bundle, robot, hz=cfg.hz, cameras=names, size=size,
                             camera_fps=int(meta["fps"]), seed=cfg.seed, scale=cfg.scale, robot_pose=cfg.robot_pose,
                             episode_s=cfg.seconds)
        states = list(meta["observation"]["observation.state"].get("names") or [])
        if states and states != adapter.state_names:
            raise InputError(f"the policy reads the state {', '.join(states[:3])}, ... ({len(states)}); {robot} in "
                             f"{cfg.task} has {', '.join(adapter.state_names[:3])}, ... ({len(adapter.state_names)})")
    elif cfg.robot == "franka":
        try:
            from policies.runtime.robots.franka import FrankaAdapter
        except ImportError as e:
            raise InputError(f"--robot franka: its adapter cannot load ({e})") from None
        adapter = FrankaAdapter(cfg.address or "127.0.0.1", joint_names=action_names)
    else:
        try:
            from policies.runtime.robots.g1 import G1Adapter
        except ImportError as e:
            raise InputError(f"--robot g1: its adapter cannot load ({e})") from None
        adapter = G1Adapter(action_names, interface=cfg.address or "lo", domain=cfg.domain)
    states = list(meta["observation"]["observation.state"].get("names") or [])
    if cfg.robot != "sim" and states[-len(GOAL_NAMES):] == list(GOAL_NAMES):
        if cfg.goal is None:
            raise InputError(f"the policy reads a goal ({', '.join(GOAL_NAMES)}) in its state: give --goal X Y Z "
                             "(the target in the robot's base frame, metres)")
        adapter = GoalAdapter(adapter, np.asarray(cfg.goal, dtype=np.float32))
    if action_names and list(adapter.joint_names) != action_names:
        raise InputError(f"the policy writes {', '.join(action_names[:3])}, ... ({len(action_names)} joints); the "
                         f"{cfg.robot} robot takes {', '.join(adapter.joint_names[:3])}, ... "
                         f"({len(adapter.joint_names)})")
    return adapter


GOAL_NAMES = ("goal_x", "goal_y", "goal_z")  # policies.tasks' goal in observation.state (a reach target)


class GoalAdapter:
    """A real robot's adapter whose observation also carries the operator's goal, as the policy's state was
    recorded (joints, then the goal in the base frame); everything else is the robot's own."""

    def __init__(self, robot, goal: np.ndarray):
        self.robot, self.goal = robot, goal

    def __getattr__(self, name):
        return getattr(self.robot, name)

    def observation(self, state) -> dict[str, np.ndarray]:
        from policies.features import IMAGE_PREFIX, STATE

        obs = {STATE: np.concatenate([np.asarray(state.q, dtype=np.float32), self.goal])}
        for name, img in state.images.items():
            obs[IMAGE_PREFIX + name] = img
        return obs


def default_out(source: str) -> Path:
    """deploy/NAME-YYYYmmdd-HHMMSS, NAME the run folder's (or the server's host and port)."""
    if source.startswith(("ws://", "wss://")):
        name = source.split("://", 1)[1].strip("/").replace(":", "-").replace("/", "-")
    else:
        p = Path(source).resolve()
        name = p.parent.name if p.name == "policy" or p.suffix == ".onnx" else p.name
    return Path("deploy") / f"{name or 'policy'}-{time.strftime('%Y%m%d-%H%M%S')}"


def check_out(out: Path) -> None:
    from policies.datasets.layout import INFO_PATH
    from twin_kit import check_parent_writable

    if (out / INFO_PATH).is_file():
        raise InputError(f"--out {out}: already holds a dataset; choose a new folder")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"--out {out}: exists and is not empty; choose a new folder")
    check_parent_writable(out, "--out")


def warm_up(adapter, source, loop) -> float:
    """Calls before the clock starts: a first call pays for lazy initialisation (0.6 s for a flow policy's first
    real-time chunking step in PyTorch, which the watchdog would take for a dead policy), so the request the loop
    sends is made twice, then timed once more; returns those seconds, the first estimate of the delay."""
    import numpy as np

    from policies.runtime.inference import Chunks
    from policies.runtime.loop import check_observation, observe

    obs = observe(adapter, adapter.read())
    check_observation(obs, source.metadata)
    first = source.infer(obs)
    horizon, dim = (int(v) for v in source.metadata["action"]["shape"])
    why = Chunks(horizon, dim, loop.k).check(first)
    if why is not None:
        raise InputError(f"the policy's first answer is unusable: {why}")
    extras = {"prefix_actions": np.asarray(first, np.float32), "prefix_len": 1} if loop.mode == "rtc" else {}
    source.infer({**obs, **extras})
    t0 = time.monotonic()
    source.infer({**obs, **extras})
    return time.monotonic() - t0


def deploy_episodes(adapter, source, loop, recorder, episodes: int = 1, verbose: bool = True) -> list:
    """Run `episodes` episodes of `source` on the connected `adapter` (the sim resets between them), recording
    each; a watchdog stop or an interrupt ends the run. Returns [(dataset episode index, EpisodeLog)]."""
    from policies.runtime.inference import InferenceWorker
    from policies.runtime.loop import run_episode
    from twin_kit import info, warn

    worker = InferenceWorker(source)
    out = []
    try:
        seconds = warm_up(adapter, source, loop)
        hold, stop = watchdog_times(loop, seconds, *loop.given)
        loop = replace(loop, initial_delay=max(loop.k, math.ceil(seconds * loop.hz) + 1), hold_ms=hold, stop_ms=stop)
        between = chunk_interval_ms(loop, seconds)
        if verbose:
            info(f"the policy answers in {seconds * 1e3:.0f} ms: a fresh chunk every {between:.0f} ms; the robot "
                 f"holds after {hold:g} ms without one and stops after {stop:g} ms")
        if 1.5 * between > hold:
            warn(f"--hold-ms {hold:g} leaves little room over the {between:.0f} ms between chunks: the robot may "
                 "hold in normal running")
        for k in range(episodes):
            if k and hasattr(adapter, "begin"):
                adapter.begin(k)
            log = run_episode(adapter, worker, source.metadata, loop, verbose)
            worker.drain(loop.stop_ms / 1e3)
            index = recorder.add(log, {"control_hz": loop.hz, "chunking": loop.mode})
            out.append((index, log))
            s = log.summary()
            if verbose:
                info(f"episode {k}: {s['outcome']} after {log.steps} steps; jitter p99 {s['jitter_p99_ms']:.3f} ms, "
                     f"{s['overruns']} overruns; {s['chunks']} chunks (delay <= {s['delay_max_steps']} steps); "
                     f"{s['safety_events']} safety interventions ({s['events_by_kind'] or 'none'}), "
                     f"{s['faults']} bad or missing chunks")
            if log.outcome in ("stopped", "interrupted"):
                break
    except BaseException:
        adapter.stop()  # a robot or loop failure: bring the robot to rest before anything else
        raise
    finally:
        worker.close()
    return out


def run_deploy(cfg: DeployConfig, json_out: bool = False) -> int:
    """`twin deploy`: load or reach the policy, build the robot, run and record the episodes, report."""
    import numpy as np

    from policies.runtime.episodes import DeployRecorder
    from policies.runtime.inference import open_source
    from twin_kit import emit_json, info, one_line, quiet_warp

    if cfg.replay is not None and cfg.run is not None:
        raise InputError("give either a policy (RUN) or --replay DATASET, not both")
    if cfg.inject is not None and cfg.replay is None:
        raise InputError("--inject injects faults into a --replay")
    if cfg.replay is not None:
        from policies.runtime.replay import run_replay

        return run_replay(cfg, json_out)
    if cfg.run is None:
        raise InputError("give the policy to deploy (RUN: a run folder, .onnx or ws://HOST:PORT), or --replay DATASET")
    if cfg.robot == "sim" and cfg.task is None:
        raise InputError("--robot sim needs --task (reach, push or pick_place)")
    if cfg.bundle is not None and not Path(cfg.bundle).exists():
        raise InputError(f"--bundle {cfg.bundle}: no such scene bundle")
    out = Path(cfg.out) if cfg.out else default_out(cfg.run)
    check_out(out)
    quiet_warp()
    # a server's reply later than this is a failure and the connection is opened again (the watchdog keeps the
    # robot safe meanwhile): T2 when given, else long enough for any policy that could drive a robot
    timeout = cfg.stop_ms / 1e3 if cfg.stop_ms is not None else REPLY_TIMEOUT_S
    source = open_source(cfg.run, cfg.runtime, cfg.token, timeout, cfg.threads)
    try:
        meta = source.metadata
        loop = plan_loop(cfg, meta)
        adapter = build_adapter(cfg, meta)
        if cfg.seconds is None and getattr(adapter, "episode_s", None):
            loop.seconds = adapter.episode_s  # the sim's task length
    except BaseException:
        source.close()
        raise
    info(f"deploying the {meta.get('policy_type')} policy of {source.label} on {cfg.robot} at {cfg.hz} Hz "
         f"({loop.k} control steps per policy frame, chunking {loop.mode}) -> {out}")
    recorder = DeployRecorder(out, meta, int(meta["fps"]), getattr(adapter, "robot_type", None) or
                              meta.get("robot_type"), cfg.task or "")
    try:
        try:
            adapter.connect()
        except InputError:
            raise
        except Exception as e:  # noqa: BLE001 - the robot's own errors (unreachable, a reflex): one line
            raise InputError(f"--robot {cfg.robot}: cannot connect ({type(e).__name__}: {one_line(e)})") from None
        done = deploy_episodes(adapter, source, loop, recorder, cfg.episodes)
    finally:
        adapter.close()
        recorder.close()
    logs = [log for _, log in done]
    stopped = any(log.outcome == "stopped" for log in logs)
    interrupted = any(log.outcome == "interrupted" for log in logs)
    jitter = np.concatenate([log.jitter_ms for log in logs]) if logs else np.zeros(1)
    res = {"dataset": str(out), "episodes": len(logs), "robot": cfg.robot, "hz": cfg.hz, "chunking": loop.mode,
           "policy_type": meta.get("policy_type"), "successes": sum(log.success for log in logs),
           "stopped": stopped, "jitter_p99_ms": round(float(np.percentile(jitter, 99)), 4),
           "safety_events": sum(len(log.safety) for log in logs), "faults": sum(len(log.faults) for log in logs),
           "episode_results": [log.summary() for log in logs]}
    info(f"{len(logs)} episode(s) in {out}: {res['successes']} succeeded"
         f"{'; the watchdog stopped the robot' if stopped else ''}")
    if json_out:
        emit_json(res)
    return 130 if interrupted else 1 if stopped else 0
