"""Benchmark: Twin's robot runtime on the CPU — an ACT's latency from camera frames to an action chunk
(onnxruntime; peer: PyTorch eager), the policy server's round trip over loopback (Twin's client and openpi-client),
the control loop's jitter at 200 Hz on the sim adapter (peer: the same loop doing no work) and the watchdog's stop
time when the policy starts answering NaN, all in one run.

    python benches/runtime.py --json [--run benches/work/sim2real/runs/pick_place_act_plain] [--scene twins/demo]
        [--calls 500] [--seconds 10] [--hz 200] [--hold-ms 200] [--stop-ms 500]

Policy: the ACT of --run (the sim2real experiment's, 2 cameras at 96 px) if it exists, else an untrained ACT of the
default config (the same size) for the same features (`policy_source` says which). Its ONNX export: the run's own
policy.onnx, else exported now into a temporary folder. One observation of the pick_place task in --scene, rendered
by the sim adapter's two cameras, goes through `ServedPolicy.infer` as the server calls it (checked, uint8 HxWx3
frames + state in, unnormalised robot-unit actions (H, D) out), batch 1, --calls times after --warmup calls, at
1 then 2 intra-op threads (onnxruntime's session, torch's pool); within a thread count the two runtimes alternate
call by call, so a busy machine slows them alike. The headline is the onnxruntime thread count with the lower p99
(`policy_threads`); the peer is PyTorch eager at that count; `by_threads` has all four.
Round trip: `PolicyServer` in a background thread of this process on 127.0.0.1 serving the headline policy,
Twin's `PolicyClient` and openpi-client's `WebsocketClientPolicy` alternating, --calls each; `transport_overhead`
is the round trip minus the server's own `infer_ms`. `openpi_client_ok`: openpi-client's actions equal a direct
call (allclose 1e-5) on three different observations.
Jitter: `measure_rate` (read + send the held position every period, sleep then spin the last 1 ms to each
deadline) on the sim adapter without cameras at --hz for --seconds; peer: the same loop on an adapter that does
nothing; then the sim adapter's loop again at SCHED_FIFO priority 50 (`control_jitter_rt_*`, when granted).
Watchdog: one deployed episode (`run_episode`, ACT's temporal ensembling) of the headline policy on the sim adapter
with the policy's cameras at --hz, T1 = --hold-ms and T2 = --stop-ms given; after --good chunks the policy answers
NaN; `watchdog_stop_ms` is the time from the last fresh chunk to the stop. The episode's own jitter (cameras
rendered in the loop, the policy on the worker thread) is `episode_jitter_p99_ms`.
G1 replay: `twin sim --scene --robot g1 --bridge unitree` (the G1 hung from its band) in a subprocess on lo, a DDS
domain of its own; `twin deploy --replay --replay-data --robot g1 --hz --replay-hz` replays the real teleoperation
episode's 14 arm joints through the safety layer into it, once clean (`g1_replay_tracking_rms_rad`: target sent vs
position measured one period later, after the replay's first second; `g1_replay_min_margin_rad`;
`g1_replay_interventions`), once with `--inject limit,dropout,nan` (`faults_handled`: fault -> bool, and `all`).
`load_average` (os.getloadavg at start and end) shows how busy the machine was, `host` which machine it was
(twin_kit.machine). The last stdout line is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

# this folder holds sim.py, named like the `sim` package: keep it off the import path when run as a script
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from policies import (  # noqa: E402
    ACTION,
    IMAGE_PREFIX,
    STATE,
    InferenceWorker,
    LoopConfig,
    PolicyClient,
    PolicyFeatures,
    PolicyServer,
    SimAdapter,
    export_onnx,
    load_served,
    make_policy,
    measure_rate,
    run_episode,
)
from twin_kit import InputError, info, machine, quiet_warp, torch_threads  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RUN = REPO / "benches" / "work" / "sim2real" / "runs" / "pick_place_act_plain"
ONNX_NAME = "policy.onnx"   # `twin export-policy --onnx`'s file beside a run's policy
TASK, ROBOT = "pick_place", "franka"
CAMERAS, SIZE, FPS = ("front", "wrist"), 96, 10   # the fallback ACT's features (the experiment's)
THREADS = (1, 2)
RT_PRIORITY = 50   # SCHED_FIFO priority of the jitter run's second pass (as ros2_control's default is)
GOALS = {"policy_hz_min": 200.0, "policy_p99_ms_max": 5.0, "control_jitter_p99_ms_max": 0.5,
         "watchdog_stop_ms_max": "T2 + 2 control periods", "g1_replay_interventions": 0}


def pct(ms: np.ndarray) -> tuple[float, float]:
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def build_sim(scene: str, hz: int, cameras: tuple[str, ...]) -> SimAdapter:
    sim = SimAdapter(TASK, scene, ROBOT, hz=hz, cameras=list(cameras), size=SIZE, camera_fps=FPS,
                     end_on_done=False)
    sim.connect()
    return sim


def untrained_act(sim: SimAdapter, folder: Path) -> Path:
    """An untrained ACT of the default config for the pick_place features, saved at `folder`."""
    import torch

    unit = {key: {"mean": [0.0] * d, "std": [1.0] * d, "min": [-1.0] * d, "max": [1.0] * d}
            for key, d in ((STATE, len(sim.state_names)), (ACTION, len(sim.joint_names)))}
    feats = PolicyFeatures(list(sim.state_names), list(sim.joint_names),
                           {IMAGE_PREFIX + c: [SIZE, SIZE] for c in CAMERAS}, FPS, ROBOT, unit)
    torch.manual_seed(0)
    make_policy("act", None, feats).eval().save_pretrained(folder)
    return folder


def load_policies(run: Path, sim: SimAdapter, tmp: Path) -> tuple[dict, dict]:
    """{(runtime, threads): ServedPolicy} for onnx/torch x THREADS, and what was loaded (for the JSON)."""
    about: dict = {}
    if run.exists():
        source, about["policy_source"] = run, "trained"
    else:
        info(f"{run}: no such run: timing an untrained ACT of the default config instead")
        source = untrained_act(sim, tmp / "untrained")
        about.update(policy_source="untrained_default_config", policy_note=f"{run}: no such run")
    about["policy_run"] = str(run) if run.exists() else None
    out = {("torch", t): load_served(source, "torch", threads=t) for t in THREADS}
    if (source / ONNX_NAME).is_file():
        out.update({("onnx", t): load_served(source, "onnx", threads=t) for t in THREADS})
        about["onnx"] = "the run's own export"
    else:
        res = export_onnx(out[("torch", 1)].runtime.policy, tmp / ONNX_NAME)
        out.update({("onnx", t): load_served(res["path"], "onnx", threads=t) for t in THREADS})
        about.update(onnx="exported by this bench into a temporary folder", export_s=round(res["seconds"], 1),
                     export_max_abs_error=float(res["max_abs_error"]))
    meta = out[("onnx", 1)].metadata()
    about["policy_inputs"] = {k: v["shape"] for k, v in meta["observation"].items()}
    about["policy_action_shape"] = meta["action"]["shape"]
    cams = [k for k in meta["observation"] if k.startswith(IMAGE_PREFIX)]
    if meta["observation"][STATE].get("names", sim.state_names) != list(sim.state_names) or \
            sorted(cams) != sorted(IMAGE_PREFIX + c for c in CAMERAS):
        raise InputError(f"{source}: reads {', '.join(meta['observation'])}; the bench's {TASK} sim gives "
                         f"{STATE} ({len(sim.state_names)}) and {', '.join(CAMERAS)} cameras")
    return out, about


def time_policies(policies: dict, obs: dict, calls: int, warmup: int) -> dict[tuple, np.ndarray]:
    """Milliseconds of each policy's `infer(obs)`, `calls` each: one block per thread count (torch's pool set to
    it, so switching pools between calls is not timed), onnx and torch alternating call by call within it."""
    ms = {}
    for threads in THREADS:
        block = {k: p for k, p in policies.items() if k[1] == threads}
        with torch_threads(threads):
            for _ in range(warmup):
                for p in block.values():
                    p.infer(obs)
            ms.update({k: np.empty(calls) for k in block})
            for i in range(calls):
                for k, p in block.items():
                    t = time.perf_counter()
                    p.infer(obs)
                    ms[k][i] = (time.perf_counter() - t) * 1e3
    return ms


def policy_figures(ms: np.ndarray) -> dict:
    p50, p99 = pct(ms)
    return {"p50_ms": p50, "p99_ms": p99, "hz": 1e3 / float(ms.mean())}


def variants(obs: dict) -> list[dict]:
    """Three different observations: the rendered one, its state moved, its frames mirrored."""
    moved = {**obs, STATE: (obs[STATE] + np.float32(0.05)).astype(np.float32)}
    mirrored = {k: (np.ascontiguousarray(v[:, ::-1]) if k.startswith(IMAGE_PREFIX) else v) for k, v in obs.items()}
    return [obs, moved, mirrored]


def roundtrips(policy, obs: dict, calls: int, warmup: int) -> dict:
    """Loopback round trips of Twin's client and openpi-client to an in-process server, alternating."""
    res: dict = {}
    with PolicyServer(policy, port=0) as server:
        twin = PolicyClient(server.url)
        try:
            from openpi_client.websocket_client_policy import WebsocketClientPolicy

            openpi = WebsocketClientPolicy(host="127.0.0.1", port=server.port)
        except ImportError as e:
            openpi, res["openpi_error"] = None, f"openpi-client is not installed ({e})"
        direct = [policy.infer(o) for o in variants(obs)]
        res["twin_client_ok"] = all(np.allclose(twin.infer(o)["actions"], d, atol=1e-5)
                                    for o, d in zip(variants(obs), direct, strict=True))
        res["openpi_client_ok"] = openpi is not None and openpi.get_server_metadata() == twin.metadata and all(
            np.allclose(openpi.infer(o)["actions"], d, atol=1e-5) for o, d in zip(variants(obs), direct, strict=True))
        res["observations_matter"] = bool(max(np.abs(d - direct[0]).max() for d in direct[1:]) > 1e-6)
        clients = {"twin": twin, **({"openpi": openpi} if openpi is not None else {})}
        for _ in range(warmup):
            for c in clients.values():
                c.infer(obs)
        rt = {k: np.empty(calls) for k in clients}
        served = {k: np.empty(calls) for k in clients}
        for i in range(calls):
            for k, c in clients.items():
                t = time.perf_counter()
                reply = c.infer(obs)
                rt[k][i] = (time.perf_counter() - t) * 1e3
                served[k][i] = reply["server_timing"]["infer_ms"]
        twin.close()
    res["roundtrip_p50_ms"], res["roundtrip_p99_ms"] = pct(rt["twin"])
    res["server_infer_p50_ms"] = pct(served["twin"])[0]
    res["transport_overhead_p50_ms"], res["transport_overhead_p99_ms"] = pct(rt["twin"] - served["twin"])
    if "openpi" in rt:
        res["openpi_roundtrip_p50_ms"], res["openpi_roundtrip_p99_ms"] = pct(rt["openpi"])
        res["openpi_transport_overhead_p50_ms"] = pct(rt["openpi"] - served["openpi"])[0]
    else:
        res["openpi_roundtrip_p50_ms"] = res["openpi_roundtrip_p99_ms"] = None
    return res


class Idle:
    """The jitter peer's robot: reading and sending cost nothing, so only the loop's own timing is left."""

    def __init__(self, dof: int):
        self.state = SimpleNamespace(q=np.zeros(dof))

    def read(self):
        return self.state

    def send(self, q) -> None:
        pass


def jitter(sim: SimAdapter, hz: int, seconds: float) -> dict:
    peer = measure_rate(Idle(len(sim.joint_names)), hz, seconds)
    run = measure_rate(sim, hz, seconds)
    rt = measure_rate(sim, hz, seconds, rt_priority=RT_PRIORITY)   # `twin deploy --rt-priority 50`
    return {"control_jitter_rt_p99_ms": rt["jitter_p99_ms"], "control_jitter_rt_max_ms": rt["jitter_max_ms"],
            "control_rt_granted": rt["realtime"],
            "control_jitter_p50_ms": run["jitter_p50_ms"], "control_jitter_p99_ms": run["jitter_p99_ms"],
            "control_jitter_max_ms": run["jitter_max_ms"], "control_hz": run["achieved_hz"],
            "control_overruns": run["overruns"], "control_step_work_ms": run["step_work_ms"],
            "peer_jitter_p50_ms": peer["jitter_p50_ms"], "peer_jitter_p99_ms": peer["jitter_p99_ms"],
            "peer_jitter_max_ms": peer["jitter_max_ms"], "peer_control_hz": peer["achieved_hz"],
            "peer_overruns": peer["overruns"]}


class TurnsToNaN:
    """The headline policy as an inference source that answers NaN after `good` calls."""

    def __init__(self, policy, good: int):
        self.policy, self.good, self.calls = policy, good, 0
        self.metadata, self.label = policy.metadata(), policy.source

    def infer(self, obs: dict) -> np.ndarray:
        self.calls += 1
        a = self.policy.infer(obs)
        return a if self.calls <= self.good else np.full_like(a, np.nan)

    def close(self) -> None:
        pass


def watchdog(sim: SimAdapter, policy, a) -> dict:
    """One deployed episode whose policy turns to NaN after a.good chunks: hold at T1, stop at T2."""
    meta = policy.metadata()
    fps, k = int(meta["fps"]), a.hz // int(meta["fps"])
    sim.begin(0)
    source = TurnsToNaN(policy, good=3 + a.good)   # 3 warm-up calls, as `twin deploy` makes
    obs = sim.observation(sim.read())
    source.infer(obs)
    source.infer(obs)
    t = time.monotonic()
    source.infer(obs)
    warm_s = time.monotonic() - t
    cfg = meta["config"]
    loop = LoopConfig(hz=a.hz, k=k, mode="ensemble", hold_ms=a.hold_ms, stop_ms=a.stop_ms,
                      seconds=a.good / fps + a.stop_ms / 1e3 + 3.0, ensemble_coeff=cfg.get("temporal_ensemble_coeff")
                      or 0.01, n_action_steps=int(meta["n_action_steps"]),
                      initial_delay=max(k, math.ceil(warm_s * a.hz) + 1), given=(a.hold_ms, a.stop_ms))
    worker = InferenceWorker(source)
    try:
        log = run_episode(sim, worker, meta, loop, verbose=False)
    finally:
        worker.close()
    s = log.summary()
    hold = [w["age_ms"] for w in log.watchdog if w["state"] == "hold"]
    stop = [w["step"] for w in log.watchdog if w["state"] == "stop"]
    limit = a.stop_ms + 2e3 / a.hz
    return {"watchdog_stop_ms": log.stop_ms, "watchdog_hold_ms": hold[0] if hold else None,
            # how late the step that saw the stop woke (a camera frame rendered in the loop delays it)
            "watchdog_stop_step_late_ms": log.jitter_ms[stop[0]] if stop else None,
            "watchdog_outcome": log.outcome, "watchdog_goal_ms": limit,
            "watchdog_fresh_chunks": len(log.delays), "watchdog_nan_answers": len(log.faults),
            "episode_jitter_p50_ms": s["jitter_p50_ms"], "episode_jitter_p99_ms": s["jitter_p99_ms"],
            "episode_overruns": s["overruns"], "episode_control_steps": s["control_steps"],
            "episode_hz": s["achieved_hz"], "episode_infer_p50_ms": s["infer_p50_ms"]}


def twin_json(args: list[str], timeout: float) -> dict:
    """Run `twin ARGS --json` (niced like this process), return its JSON report (the last stdout line)."""
    p = subprocess.run([sys.executable, "-m", "twin_cli", *args, "--json"], cwd=REPO, capture_output=True, text=True,
                       timeout=timeout, env={**os.environ, "PYTHONPATH": str(REPO)})
    lines = p.stdout.strip().splitlines()
    if not lines:
        raise RuntimeError(f"twin {' '.join(args[:3])} ...: exit {p.returncode}: {p.stderr.strip()[-500:]}")
    return json.loads(lines[-1])


def g1_replay(a) -> dict:
    """The real G1 episode replayed over DDS into the simulated G1, clean and with the three faults injected."""
    domain = random.Random(os.getpid()).randrange(20, 230)
    bridge, err = start_g1_bridge(a.scene, "g1", domain)
    try:
        args = ["deploy", "--replay", a.replay_data, "--robot", "g1", "--domain", str(domain), "--hz",
                str(a.replay_hz)]
        clean = twin_json(args, 300)
        faults = twin_json([*args, "--inject", "limit,dropout,nan"], 300)
    finally:
        served = stop_g1_bridge(bridge, err)
    handled = dict(faults["faults_handled"])
    return {"g1_replay_tracking_rms_rad": clean["tracking_rms_rad"],
            "g1_replay_tracking_rms_max_joint_rad": clean["tracking_rms_max_joint_rad"],
            "g1_replay_min_margin_rad": clean["min_margin_rad"], "g1_replay_interventions": clean["interventions"],
            "g1_replay_interventions_by_kind": clean["interventions_by_kind"],
            "g1_replay_seconds": clean["replayed_s"], "g1_replay_joints": len(clean["joints"]),
            "g1_replay_not_replayed": clean["not_replayed"], "g1_replay_jitter_p99_ms": clean["jitter_p99_ms"],
            "g1_replay_fault_run_interventions": faults["interventions"],
            "faults_handled": {**handled, "all": bool(handled) and all(handled.values())},
            "g1_bridge_state_hz": served.get("state_hz"), "g1_bridge_speed": served.get("speed")}


def start_g1_bridge(scene: str, robot: str, domain: int, extra: tuple[str, ...] = ()) -> tuple:
    """`twin sim SCENE --robot ROBOT --bridge unitree` on lo in a subprocess, once it serves; (process, stderr)."""
    err = tempfile.NamedTemporaryFile("w+", prefix="twin-bench-bridge-", suffix=".err")
    bridge = subprocess.Popen([sys.executable, "-m", "twin_cli", "sim", scene, "--robot", robot, "--bridge", "unitree",
                               "--interface", "lo", "--domain", str(domain), "--json", *extra], cwd=REPO,
                              env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE, stderr=err,
                              text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    t_end = time.monotonic() + 300
    while "serving" not in Path(err.name).read_text() and bridge.poll() is None and time.monotonic() < t_end:
        time.sleep(0.5)
    if bridge.poll() is not None or time.monotonic() >= t_end:
        stop_g1_bridge(bridge, err)
        raise RuntimeError(f"the G1 bridge did not start: {Path(err.name).read_text()[-500:]}")
    return bridge, err


def stop_g1_bridge(bridge, err) -> dict:
    """Ctrl-C the bridge; its JSON report."""
    if bridge.poll() is None:
        bridge.send_signal(signal.SIGINT)
    try:
        out, _ = bridge.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        bridge.kill()
        out, _ = bridge.communicate()
    err.close()
    return json.loads(out.strip().splitlines()[-1]) if out and out.strip() else {}


def hand_positions(robot: str, names: list[str], q: np.ndarray) -> np.ndarray:
    """(T, 3) the robot's end effector in its base frame for joint positions q (T, len(names)) of the named joints
    (the others at home): Newton's forward kinematics of the same URDF the bridge simulates."""
    import newton
    import warp as wp

    from policies import joint_names
    from sim import WorldConfig, build_world, frame_poses

    w = build_world(WorldConfig(scene=None, robot=robot, worlds=1, solver="featherstone", check_collisions=False))
    coords = joint_names(w)
    cols = [w.robot_coord_start + coords.index(n) for n in names]
    out = np.empty((len(q), 3))
    state = w.model.state()
    for t, row in enumerate(np.asarray(q, dtype=np.float64)):
        full = w.default_q.astype(np.float32).copy()
        full[cols] = row
        newton.eval_fk(w.model, wp.array(full, dtype=wp.float32, device=w.model.device), w.model.joint_qd, state)
        out[t] = frame_poses(w, w.robot.ee_body, w.robot.ee_offset, state)[0, :3]
    base = np.asarray(w.base_xform[:3], dtype=np.float64) - [0.0, 0.0, w.robot.spec.base_height]
    return out - base


def g1_reach(a) -> dict:
    """The G1 reach policy deployed through `twin deploy --robot g1` over DDS to the simulated G1 (the upper body,
    pelvis held) standing where the reach task stands it in --scene, for --reach-goals goals the task draws from
    --reach-seed on (as `twin eval` does); between goals the arm is brought home (the task's start). Reached: the
    hand, by forward kinematics of the last measured joints, within the task's 2 cm of the goal."""
    from policies import G1Adapter, TaskConfig, TaskEnv, read_dataset

    run = Path(a.reach_run)
    if not (run / "policy").is_dir():
        return {"g1_reach_skipped": f"{run}: no trained policy (benches/sim2real.py --only g1, then "
                                    "`twin train ... --cameras none`: see its closing note)"}
    env = TaskEnv(TaskConfig(task="reach", robot="g1", bundle=a.scene, worlds=1, seed=a.reach_seed))
    goals = []
    for k in range(a.reach_goals):
        env.reset(seeds=[a.reach_seed + k])
        goals.append(env.goal_in_base(env.goal)[0])
    base = env.base.copy()
    del env
    domain = random.Random(os.getpid() + 1).randrange(20, 230)
    bridge, err = start_g1_bridge(a.scene, "g1_upper", domain, ("--robot-pose", *map(str, base)))
    results = []
    try:
        with tempfile.TemporaryDirectory(prefix="twin-bench-reach-") as tmp:
            for k, goal in enumerate(goals):
                out = Path(tmp) / f"goal{k}"
                rep = twin_json(["deploy", str(run), "--robot", "g1", "--domain", str(domain), "--goal",
                                 *map(str, goal), "--seconds", str(a.reach_seconds), "--out", str(out)], 300)
                ds = read_dataset(out)
                names = ds.spec.features[STATE].names[:-3]   # the joints; the goal is the state's last three
                q = ds.episode_frames(0)[STATE][:, :-3]
                dist = np.linalg.norm(hand_positions("g1_upper", names, q) - goal, axis=1)
                results.append({"goal": [round(float(v), 4) for v in goal], "final_m": round(float(dist[-1]), 4),
                                "closest_m": round(float(dist.min()), 4), "reached": bool(dist[-1] < 0.02),
                                "interventions": rep["safety_events"],
                                "interventions_by_kind": rep["episode_results"][0]["events_by_kind"],
                                "outcome": rep["episode_results"][0]["outcome"]})
                info(f"goal {k}: final {dist[-1] * 1e3:.1f} mm, closest {dist.min() * 1e3:.1f} mm")
                home = G1Adapter(names, domain=domain, timeout=60)
                home.connect()
                q0 = home.read().q
                for i in range(1, 101):               # 2 s ramp to the home pose (zeros), then 1 s at rest
                    home.send(q0 * (1 - i / 100))
                    time.sleep(0.02)
                time.sleep(1.0)
                home.close()
    finally:
        served = stop_g1_bridge(bridge, err)
    reached = sum(r["reached"] for r in results)
    return {"g1_reach_success": reached / max(len(results), 1), "g1_reach_reached": reached,
            "g1_reach_goals": len(results), "g1_reach_final_mm_median": round(1e3 * float(np.median(
                [r["final_m"] for r in results])), 1), "g1_reach_detail": results, "g1_reach_run": str(run),
            "g1_reach_interventions": sum(r["interventions"] for r in results),
            "g1_reach_bridge_bad_commands": served.get("bad_crc", 0) + served.get("nonfinite", 0)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default=str(RUN), help="the ACT run to time (default: the sim2real experiment's; "
                    "missing: an untrained ACT of the default config)")
    ap.add_argument("--scene", default=str(REPO / "twins" / "demo"), help="scene bundle of the sim adapter")
    ap.add_argument("--calls", type=int, default=500, help="timed policy calls and round trips, each")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=10.0, help="length of each jitter measurement")
    ap.add_argument("--hz", type=int, default=200, help="control rate (a multiple of the policy's 10 fps)")
    ap.add_argument("--hold-ms", type=float, default=200.0, help="watchdog T1")
    ap.add_argument("--stop-ms", type=float, default=500.0, help="watchdog T2")
    ap.add_argument("--good", type=int, default=10, help="chunks the policy answers before it turns to NaN")
    ap.add_argument("--replay-data", default=str(REPO.parent / "shared" / "data" / "g1_episode"),
                    help="the real G1 episode (LeRobot) replayed into the simulated G1")
    ap.add_argument("--replay-hz", type=int, default=100, help="control rate of the G1 replay")
    ap.add_argument("--reach-run", default=str(REPO / "benches" / "work" / "sim2real" / "runs" / "reach_g1_act_state"),
                    help="the G1 reach policy deployed over DDS (missing: that part is skipped and says so)")
    ap.add_argument("--reach-goals", type=int, default=8, help="reach goals deployed to the simulated G1")
    ap.add_argument("--reach-seed", type=int, default=100_000, help="first seed of the reach goals (as twin eval)")
    ap.add_argument("--reach-seconds", type=float, default=6.0, help="length of each reach deployment")
    ap.add_argument("--only", choices=("g1_reach",), default=None, help="run one part alone")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if not Path(a.scene).is_dir():
        print(f"error: {a.scene}: no such scene (build it with `twin demo`, or pass --scene)", file=sys.stderr)
        return 2
    if a.hz % FPS or a.calls < 1 or a.seconds <= 0 or not 0 < a.hold_ms <= a.stop_ms:
        print(f"error: need --hz a multiple of {FPS}, --calls >= 1, --seconds > 0, 0 < --hold-ms <= --stop-ms",
              file=sys.stderr)
        return 2
    if a.only == "g1_reach":
        quiet_warp()
        res = g1_reach(a)
        res["host"] = machine()
        print(json.dumps(res) if a.json else res)
        return 0
    load_start = os.getloadavg()
    quiet_warp()
    import onnxruntime
    import torch

    res: dict = {}
    with tempfile.TemporaryDirectory(prefix="twin-bench-runtime-") as tmp:
        cam = build_sim(a.scene, a.hz, CAMERAS)
        try:
            policies, about = load_policies(Path(a.run), cam, Path(tmp))
        except InputError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        res.update(about)
        obs = cam.observation(cam.read())
        info(f"timing the policy: {a.calls} calls x {len(policies)} (onnx, torch x threads {THREADS})")
        ms = time_policies(policies, obs, a.calls, a.warmup)
        by = {str(t): {f"{rt}_{k}": v for rt in ("onnx", "torch") for k, v in policy_figures(ms[(rt, t)]).items()}
              for t in THREADS}
        best = min(THREADS, key=lambda t: by[str(t)]["onnx_p99_ms"])
        h = by[str(best)]
        res.update(policy_hz=h["onnx_hz"], policy_p50_ms=h["onnx_p50_ms"], policy_p99_ms=h["onnx_p99_ms"],
                   policy_threads=best, peer_policy_hz=h["torch_hz"], peer_policy_p50_ms=h["torch_p50_ms"],
                   peer_policy_p99_ms=h["torch_p99_ms"], by_threads=by)
        res["policy_goal_met"] = (h["onnx_hz"] >= GOALS["policy_hz_min"]
                                  and h["onnx_p99_ms"] < GOALS["policy_p99_ms_max"])
        info(f"round trips: {a.calls} per client")
        res.update(roundtrips(policies[("onnx", best)], obs, a.calls, a.warmup))
        info(f"jitter at {a.hz} Hz: {a.seconds:g} s idle loop, {a.seconds:g} s sim adapter")
        bare = build_sim(a.scene, a.hz, ())
        res.update(jitter(bare, a.hz, a.seconds))
        bare.close()
        res["control_goal_met"] = res["control_jitter_p99_ms"] < GOALS["control_jitter_p99_ms_max"]
        info(f"watchdog: {a.good} good chunks, then NaN (T1 {a.hold_ms:g} ms, T2 {a.stop_ms:g} ms)")
        res.update(watchdog(cam, policies[("onnx", best)], a))
        res["watchdog_goal_met"] = res["watchdog_stop_ms"] is not None and \
            res["watchdog_stop_ms"] <= res["watchdog_goal_ms"]
        cam.close()
    info(f"G1 replay: {a.replay_data} over DDS into the simulated G1 at {a.replay_hz} Hz, clean then with faults")
    res.update(g1_replay(a))
    res["g1_replay_goal_met"] = res["g1_replay_interventions"] == 0 and res["faults_handled"]["all"]
    info(f"G1 reach: {a.reach_run} deployed over DDS to the simulated G1 for {a.reach_goals} goals")
    res.update(g1_reach(a))
    res["goals"] = GOALS
    res["settings"] = {"run": a.run, "scene": a.scene, "task": TASK, "robot": ROBOT, "cameras": list(CAMERAS),
                       "size": SIZE, "calls": a.calls, "warmup": a.warmup, "seconds": a.seconds, "hz": a.hz,
                       "hold_ms": a.hold_ms, "stop_ms": a.stop_ms, "good_chunks": a.good,
                       "replay_data": a.replay_data, "replay_hz": a.replay_hz,
                       "threads_tried": list(THREADS), "headline": "onnxruntime threads with the lower p99",
                       "server": "in-process background thread, 127.0.0.1", "onnxruntime": onnxruntime.__version__,
                       "torch": torch.__version__, "cpus": os.cpu_count(), "nice": os.nice(0),
                       "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}
    res["load_average"] = {"start": [round(x, 2) for x in load_start],
                           "end": [round(x, 2) for x in os.getloadavg()]}
    res = {k: round(v, 4) if isinstance(v, float) and not k.endswith("_error") else v for k, v in res.items()}
    res["by_threads"] = {t: {k: round(v, 4) for k, v in d.items()} for t, d in res["by_threads"].items()}
    if not a.json:
        for k, v in res.items():
            print(f"{k:>28}: {v}", file=sys.stderr)
    res["host"] = machine()
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
