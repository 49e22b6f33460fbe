"""policies.runtime.replay: the real G1 teleoperation episode (LeRobot v2.1 in ../shared/data/g1_episode) replayed
through the safety layer into Twin's simulated G1 over DDS (`twin sim --robot g1 --bridge unitree`, hung from its
band, in a subprocess on lo), with the three injected faults, each checked from the logged events."""
from __future__ import annotations

import numpy as np
import pytest
from support.unitree import start_bridge

from policies.runtime.deploy import DeployConfig, run_deploy
from policies.runtime.replay import ReplayConfig, load_episode, replay, summarize
from policies.runtime.robots import G1Adapter
from twin_kit import InputError

pytestmark = pytest.mark.realtime   # timing-sensitive: run alone, never beside another test (Makefile)

SECONDS = 4.0   # of the episode's 11.4 s: enough to pass all three faults, short for test time
# Measured on the 4 s replayed here at 100 Hz: 0.028-0.029 rad (worst joint 0.066), the PD drives' lag and
# gravity sag (kp 60 N m/rad holding each arm). A joint mapped onto the wrong motor, or a wrong sign, gives errors
# of the commanded angles themselves (0.3-1.2 rad), and a replay stuck holding, the episode's motion (0.1-0.4).
RMS_BOUND = 0.06


def test_the_episode_maps_its_arm_joints_onto_the_g1_and_leaves_the_hands_out(shared_data):
    ep = load_episode(shared_data / "g1_episode")
    assert ep.episode_index == 2 and ep.fps == 30 and ep.targets.shape == (343, 14)
    assert ep.names[0] == "left_shoulder_pitch_joint" and ep.names[10] == "right_elbow_joint"
    assert ep.source_names[10] == "kRightElbow"
    assert len(ep.skipped) == 12 and all("Hand" in n for n in ep.skipped)
    mid = ep.at(0.5 / 30)                 # halfway between frames 0 and 1: interpolated
    assert np.allclose(mid, 0.5 * (ep.targets[0] + ep.targets[1]))
    assert np.allclose(ep.at(100.0), ep.targets[-1])
    assert load_episode(shared_data / "g1_episode", seconds=1.0).targets.shape == (31, 14)
    with pytest.raises(InputError, match="use --robot g1"):
        run_deploy(DeployConfig(replay=str(shared_data / "g1_episode"), robot="sim"))
    with pytest.raises(InputError, match="--replay DATASET"):
        run_deploy(DeployConfig())
    with pytest.raises(InputError, match="--inject injects"):
        run_deploy(DeployConfig(run="x", inject="nan"))
    with pytest.raises(InputError, match="--inject must be"):
        DeployConfig(replay="x", inject="nan,fire")
    with pytest.raises(InputError, match="must hold within"):
        ReplayConfig(hold_ms=250.0)


def test_the_real_episode_replays_into_the_simulated_g1_and_each_fault_is_handled(tmp_path, shared_data):
    ep = load_episode(shared_data / "g1_episode", seconds=SECONDS)
    cfg = ReplayConfig(hz=100, inject=("limit", "dropout", "nan"))
    bridge = start_bridge(tmp_path, "g1")
    adapter = G1Adapter(ep.names, domain=bridge.domain, timeout=240)
    try:
        adapter.connect()
        log = replay(adapter, ep, cfg)
    finally:
        adapter.close()
        report = bridge.stop()
    res = summarize(log, ep, adapter.limits, cfg)
    print({k: res[k] for k in ("tracking_rms_rad", "tracking_rms_max_joint_rad", "min_margin_rad", "interventions",
                               "fault_events", "faults_handled", "jitter_p99_ms")})
    assert report["band"] and report["commands"] > 0 and report["nonfinite"] == 0
    assert res["interventions"] == 0, res["interventions_by_kind"]     # real data: the safety layer stays out
    assert res["tracking_rms_rad"] < RMS_BOUND and res["min_margin_rad"] > 0
    assert res["faults_handled"] == {"limit": True, "dropout": True, "nan": True}
    kinds = {e["kind"] for e in log.events}
    assert {"position_limit", "nonfinite"} <= kinds
    hold, run = log.watchdog[0], log.watchdog[1]          # the dropout: held before 200 ms, then resumed
    assert hold["state"] == "hold" and hold["age_ms"] < 200 and run["state"] == "run" and not res["stopped"]
    sent = np.asarray(log.sent)
    assert np.all(sent <= adapter.limits.upper) and np.all(sent >= adapter.limits.lower) and np.isfinite(sent).all()
