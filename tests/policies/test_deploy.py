"""`twin deploy`: a trained policy driving the simulated Franka (the `sim` adapter: its reach task in the desk scene,
Newton physics, the policy's cameras) through the runtime's control loop, safety filter and watchdog.

Tiny ACT and flow policies are trained by `twin train` on one recorded reach episode; one sim world serves every
episode. Pinned: the loop keeps its rate and each episode is a LeRobot v3 episode read back with its safety
events; a policy target past a joint limit is clamped and logged; with a real inference delay of several steps,
chunk seams do not jump (real-time chunking for flow, temporal ensembling for ACT; without the rtc prefix they
do); a `twin serve` process killed mid-episode, a stalled network and a policy answering NaN or the wrong shape
each end in hold -> controlled stop at the watchdog's times, the robot at rest, all logged.
"""
from __future__ import annotations

import math
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from support.task_scene import desk_bundle
from support.train_data import tiny_train_args, twin_json

from policies import PolicyServer, RecordConfig, load_served, read_dataset, run_record
from policies.runtime.deploy import DeployConfig, deploy_episodes, plan_loop
from policies.runtime.episodes import DeployRecorder, read_events
from policies.runtime.inference import LocalSource, RemoteSource
from policies.runtime.robots.sim import SimAdapter

pytestmark = pytest.mark.realtime   # timing-sensitive: run alone, never beside another test (Makefile)

REPO = Path(__file__).resolve().parents[2]
REFERENCE = REPO / "tests" / "support" / "lerobot_reference.py"
PYTHON = str(REPO / ".venv" / "bin" / "python") if (REPO / ".venv" / "bin" / "python").exists() else sys.executable
HZ, SIZE, STEPS = 50, 32, 120
DT = 1.0 / HZ
T1, T2 = 250.0, 600.0      # the watchdog tests' hold and stop times (ms)
FAULT_AFTER = 1.2          # seconds of good control before a fault
FINGER, OVER = 7, 0.5      # panda_finger_joint1 (limit 0.04 m) asked 0.5 m further


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """The desk bundle, one recorded Franka reach episode in it (32 px front and wrist cameras), and tiny ACT and
    flow policies trained on it (runs/act, runs/flow)."""
    root = tmp_path_factory.mktemp("deploy")
    bundle = desk_bundle(root / "desk")
    assert run_record(RecordConfig(bundle=str(bundle), out=str(root / "reach"), task="reach", robot="franka",
                                   episodes=1, worlds=1, size=SIZE, seed=0)) == 0
    for kind in ("act", "flow"):
        code, res = twin_json(tiny_train_args(root / "reach", root / "runs" / kind, kind, STEPS))
        assert code == 0 and res["steps"] == STEPS
    return root


@pytest.fixture(scope="module")
def policies(work) -> dict:
    return {kind: load_served(work / "runs" / kind, "torch") for kind in ("act", "flow")}


@pytest.fixture(scope="module")
def sim(work, policies):
    """The sim adapter every test drives: the reach task in the desk, the policy's cameras at its 10 fps."""
    adapter = SimAdapter("reach", str(work / "desk"), "franka", hz=HZ, cameras=["front", "wrist"], size=SIZE,
                         camera_fps=10, end_on_done=False)   # episodes run their --seconds, success or not
    adapter.connect()
    yield adapter
    adapter.close()


class Wrapped:
    """A real policy whose answers a test alters: late by `delay` s, without the rtc prefix, past a joint limit,
    or, after `good` calls, NaN or the wrong shape."""

    def __init__(self, policy, delay: float = 0.0, strip: bool = False, over: float = 0.0, garbage: str = "",
                 good: int = 0):
        self.policy, self.delay, self.strip, self.over, self.garbage, self.good = policy, delay, strip, over, \
            garbage, good
        self.source, self.calls = policy.source, 0

    def metadata(self) -> dict:
        return self.policy.metadata()

    def infer(self, obs: dict) -> np.ndarray:
        self.calls += 1
        time.sleep(self.delay)
        if self.strip:
            obs = {k: v for k, v in obs.items() if not k.startswith("prefix")}
        a = self.policy.infer(obs)
        a[:, FINGER] += self.over
        if self.garbage and self.calls > self.good:
            return np.full_like(a, np.nan) if self.garbage == "nan" else a[:, :-1]
        return a


def deploy(sim, source, out: Path, **cfg):
    """One episode of `source` on the sim from seed 0, recorded at `out`; its EpisodeLog."""
    if not isinstance(source, RemoteSource):
        source = LocalSource(source)
    meta = source.metadata
    sim.begin(0)
    loop = plan_loop(DeployConfig(run="test", task="reach", **cfg), meta)
    rec = DeployRecorder(out, meta, meta["fps"], sim.robot_type, "reach")
    try:
        ((index, log),) = deploy_episodes(sim, source, loop, rec, 1)
    finally:
        rec.close()
    assert index == 0
    return log


def steps_by_kind(log) -> tuple[float, float, int]:
    """(largest step of the pre-safety targets inside chunks, largest at chunk seams, seams counted), over steps
    where the loop ran; the first seam (the robot's start toward its first chunk) is not a splice."""
    t = np.asarray(log.targets)
    d = np.r_[0.0, np.abs(np.diff(t, axis=0)).max(axis=1)]
    run = np.array([m == "run" for m in log.modes])
    seams = {s for s in log.seams[1:] if s < len(d)}
    inside = [d[i] for i in range(log.seams[0] + 1, len(d)) if run[i] and run[i - 1] and i not in seams]
    at = [d[i] for i in sorted(seams) if run[i] and run[i - 1]]
    return max(inside), max(at), len(at)


# ------------------------------------------------------------------ rate, recording, limits


@pytest.fixture(scope="module")
def limited(work, policies, sim):
    """A 3 s ACT episode whose gripper targets are 0.5 m past the finger's limit."""
    out = work / "deploy_limits"
    log = deploy(sim, Wrapped(policies["act"], over=OVER), out, seconds=3.0)
    return log, out


def test_episode_keeps_the_rate_and_is_a_lerobot_episode_with_its_safety_events(limited):
    log, out = limited
    s = log.summary()
    print(f"\n50 Hz sim episode: achieved {s['achieved_hz']} Hz, jitter p50 {s['jitter_p50_ms']} ms, p99 "
          f"{s['jitter_p99_ms']} ms, max {s['jitter_max_ms']} ms, {s['overruns']} overruns; chunk delay <= "
          f"{s['delay_max_steps']} steps; {s['safety_events']} safety events")
    assert log.outcome in ("time_limit", "done", "success") and log.steps == 150
    assert abs(s["achieved_hz"] - HZ) < 0.1 * HZ                  # a late step re-anchors, it never bursts
    assert s["chunks"] >= 10 and not log.faults and not log.watchdog
    ds = read_dataset(out)
    assert ds.total_episodes == 1 and ds.fps == 10 and ds.robot_type == "franka"
    ep = ds.episodes[0]
    assert ep.length == math.ceil(log.steps / 5) == 30
    frames = ds.episode_frames(0)
    assert frames["observation.state"].shape == (30, 12) and frames["action"].shape == (30, 9)
    assert ds.episode_video(0, "observation.images.wrist").shape == (30, SIZE, SIZE, 3)
    sent = np.asarray(log.sent)
    np.testing.assert_allclose(frames["action"], sent[4::5].astype(np.float32))   # each frame's last safe target
    assert int(frames["safety.events"].sum()) == len(log.safety) == ep.meta["safety_events"] > 0
    assert (frames["watchdog.state"] == 0).all() and ep.meta["outcome"] == log.outcome
    (events,) = read_events(out)
    assert events["episode_index"] == 0 and len(events["safety"]) == len(log.safety)
    assert events["delays"] == log.delays
    # LeRobot's own reader loads it (the extra columns, the events file in meta/)
    ref = subprocess.run([sys.executable, str(REFERENCE), str(out), str(out.parent / "deploy_limits_ref")],
                         capture_output=True, text=True, timeout=300)
    assert ref.returncode == 0, ref.stderr[-3000:]
    theirs = np.load(out.parent / "deploy_limits_ref" / "frames.npz")
    np.testing.assert_array_equal(theirs["safety.events"], frames["safety.events"])
    np.testing.assert_allclose(theirs["action"], frames["action"])


def test_a_target_past_a_joint_limit_is_clamped_and_logged(limited, sim):
    log, out = limited
    upper = sim.limits.upper[FINGER]
    assert np.asarray(log.targets)[:, FINGER].max() > upper + 0.4        # the policy asked for it ...
    assert np.asarray(log.sent)[:, FINGER].max() <= upper + 1e-12      # ... the robot never got it
    clamps = [e for e in read_events(out)[0]["safety"] if e["kind"] == "position_limit"
              and e["name"] == "panda_finger_joint1" and e["requested"] > upper + 0.4]
    assert clamps and all(e["applied"] <= upper for e in clamps)
    assert len(clamps) >= log.steps - log.seams[0] - 5   # every step that executed a chunk


# ------------------------------------------------------------------ chunk seams


@pytest.mark.parametrize("kind,chunking", [("flow", "rtc"), ("act", "ensemble")])
def test_chunk_seams_do_not_jump_with_a_real_inference_delay(work, policies, sim, kind, chunking):
    log = deploy(sim, Wrapped(policies[kind], delay=0.07), work / f"deploy_seams_{kind}", seconds=3.0,
                 chunking=chunking)
    assert min(log.delays[1:]) > 1, log.delays                      # measured: several control steps late
    inside, at, n = steps_by_kind(log)
    print(f"\n{chunking}: delays {log.delays}; largest step inside chunks {inside:.4f} rad, at {n} seams {at:.4f}")
    assert n >= 8 and at <= inside + 1e-3
    if chunking == "rtc":  # the same policy without the prefix: its fresh noise jumps at the seams
        bare = deploy(sim, Wrapped(policies[kind], delay=0.07, strip=True), work / "deploy_seams_bare",
                      seconds=3.0, chunking=chunking)
        inside, at, _ = steps_by_kind(bare)
        assert at > inside + 1e-3, (inside, at)


# ------------------------------------------------------------------ the watchdog


def assert_held_then_stopped(log, sim, fault_at: float | None = None) -> None:
    """Hold after T1 and a controlled stop after T2 without a fresh chunk (each seen within a period and that
    step's own lateness), not before the fault (monotonic `fault_at`), logged, the robot at rest at the end."""
    states = [w["state"] for w in log.watchdog]
    modes = log.modes
    if states == ["stop"] and log.jitter_ms[log.watchdog[0]["step"]] >= T2 - T1:
        # the control loop itself stalled through the whole hold window (seen once in a full suite: one step
        # 1.3 s late): no step ran between T1 and T2 to hold at, so the watchdog stops at once; still logged
        stop = log.watchdog[0]
        assert log.outcome == "stopped" and stop["age_ms"] >= T2 and log.stop_ms == pytest.approx(stop["age_ms"])
        assert modes[stop["step"]] == "stop" and modes[-1] == "stop"
        assert np.abs(sim.read().qd).max() < 0.02
        return
    assert log.outcome == "stopped" and states == ["hold", "stop"], (log.watchdog, log.jitter_ms)
    hold, stop = log.watchdog
    for w, limit in ((hold, T1), (stop, T2)):
        late = log.jitter_ms[w["step"]]
        assert limit <= w["age_ms"] <= limit + DT * 1e3 + late + 1.0, (w, late)
    assert log.stop_ms == pytest.approx(stop["age_ms"])
    if fault_at is not None:
        assert hold["time"] > fault_at - log.started
    assert modes[hold["step"]] == "hold" and modes[stop["step"]] == "stop" and modes[-1] == "stop"
    assert np.abs(sim.read().qd).max() < 0.02                       # adapter.stop(): at rest


def test_a_killed_server_ends_in_hold_then_stop(work, sim):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([PYTHON, "-m", "twin_cli", "serve", str(work / "runs" / "act"), "--runtime", "torch",
                             "--port", "0"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        line, t0 = "", time.monotonic()
        while "serving" not in line and time.monotonic() - t0 < 120 and proc.poll() is None:
            if select.select([proc.stderr], [], [], 0.5)[0]:
                line = proc.stderr.readline()
        assert "serving the act policy" in line, line
        port = int(line.split("ws://127.0.0.1:")[1].split(" ")[0])
        source = RemoteSource(f"ws://127.0.0.1:{port}", timeout=T2 / 1e3)
        killed = []
        timer = threading.Timer(FAULT_AFTER, lambda: (killed.append(time.monotonic()), proc.send_signal(
            signal.SIGKILL)))
        timer.start()
        log = deploy(sim, source, work / "deploy_killed", seconds=8.0, hold_ms=T1, stop_ms=T2)
    finally:
        proc.kill()
        proc.wait(30)
    assert killed, "the server was not killed during the episode"
    assert_held_then_stopped(log, sim, killed[0])
    assert log.faults and all(f["time"] > killed[0] - log.started for f in log.faults)
    assert read_events(work / "deploy_killed")[0]["faults"]
    assert read_dataset(work / "deploy_killed").episode_frames(0)["watchdog.state"][-1] == 2


class StallingProxy:
    """A TCP relay to `port` that, once `stall` is set, forwards nothing more (both ways) and keeps connections
    open: the network stalls, nothing is closed."""

    def __init__(self, port: int):
        self.upstream, self.stall = port, threading.Event()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.upstream))
            self.open += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                return
            if not data:
                return
            while self.stall.is_set():
                time.sleep(0.05)   # hold the bytes: never delivered
            try:
                dst.sendall(data)
            except OSError:
                return

    def close(self) -> None:
        self.sock.close()
        for s in self.open:
            s.close()


def test_a_stalled_network_ends_in_hold_then_stop(work, policies, sim):
    with PolicyServer(policies["act"], port=0) as server:
        proxy = StallingProxy(server.port)
        try:
            source = RemoteSource(f"ws://127.0.0.1:{proxy.port}", timeout=T2 / 1e3)
            stalled = []
            timer = threading.Timer(FAULT_AFTER, lambda: (stalled.append(time.monotonic()), proxy.stall.set()))
            timer.start()
            log = deploy(sim, source, work / "deploy_stalled", seconds=8.0, hold_ms=T1, stop_ms=T2)
        finally:
            proxy.close()
    assert stalled, "the network did not stall during the episode"
    assert_held_then_stopped(log, sim, stalled[0])


@pytest.mark.parametrize("garbage,why", [("nan", "NaN or inf"), ("shape", "shape (8, 8), expected (8, 9)")])
def test_a_policy_answering_garbage_ends_in_hold_then_stop(work, policies, sim, garbage, why):
    policy = Wrapped(policies["act"], garbage=garbage, good=8)
    log = deploy(sim, policy, work / f"deploy_{garbage}", seconds=8.0, hold_ms=T1, stop_ms=T2)
    assert_held_then_stopped(log, sim)
    assert log.faults and all(why in f["error"] for f in log.faults)
    assert len(log.delays) == 5          # the 8 good answers: the warm-up's three, then 5 chunks
    logged = read_events(work / f"deploy_{garbage}")[0]
    assert [w["state"] for w in logged["watchdog"]] == ["hold", "stop"] and logged["faults"] == log.faults


# ------------------------------------------------------------------ the command


def test_twin_deploy_runs_a_run_on_the_sim_and_refuses_bad_input_in_one_line(work):
    out = work / "deploy_cli"
    code, res = twin_json(["deploy", str(work / "runs" / "act"), "--robot", "sim", "--task", "reach", "--bundle",
                           str(work / "desk"), "--seconds", "1", "--out", str(out)])
    assert code == 0, res
    assert res["chunking"] == "ensemble" and res["episodes"] == 1 and res["policy_type"] == "act"
    assert res["episode_results"][0]["control_steps"] == HZ and not res["stopped"]
    assert res["dataset"] == str(out) and read_dataset(out).episodes[0].length == 10
    for argv, why in ((["--robot", "sim"], "--robot sim needs --task"),
                      (["--task", "reach", "--chunking", "rtc", "--out", str(work / "x")], "rtc needs a flow policy"),
                      (["--task", "reach", "--hz", "55", "--out", str(work / "y")], "is not a multiple of the "
                                                                                    "policy's 10 fps"),
                      (["--task", "reach", "--hold-ms", "50", "--out", str(work / "z")], "not longer than the time "
                                                                                         "between two chunks"),
                      (["--task", "reach", "--out", str(out)], "already holds a dataset"),
                      (["--robot", "franka", "--out", str(work / "g")], "give --goal X Y Z")):
        code, res = twin_json(["deploy", str(work / "runs" / "act"), "--runtime", "torch", *argv])
        assert code == 2 and why in res["error"], (argv, res)


def test_a_real_robot_s_observation_carries_the_operator_s_goal():
    """A reach policy reads joints + goal (base frame): on a real robot the goal comes from --goal."""
    from policies.runtime.deploy import GoalAdapter
    from policies.runtime.robot import RobotState

    class Arm:  # the smallest robot: what an adapter reports, nothing simulated
        joint_names = ["j0", "j1"]

    wrapped = GoalAdapter(Arm(), np.array([0.4, -0.1, 0.3], dtype=np.float32))
    img = np.zeros((4, 4, 3), np.uint8)
    obs = wrapped.observation(RobotState(0.0, np.array([0.1, 0.2]), np.zeros(2), images={"head": img}))
    np.testing.assert_allclose(obs["observation.state"], [0.1, 0.2, 0.4, -0.1, 0.3], rtol=0, atol=1e-7)
    assert obs["observation.state"].dtype == np.float32 and obs["observation.images.head"] is img
    assert wrapped.joint_names == ["j0", "j1"]
