"""`twin view --sim` and `twin sim --teleop`: the robot moves in the browser, teleop keys/buttons drive the end
effector through IK within joint limits, the session is filmed, and scenes the sim cannot use are refused.

Real viser servers, real Newton physics (MuJoCo-Warp on the CPU) and Debian's headless Chromium.
"""
from __future__ import annotations

import json
import time

import numpy as np
import pytest
from support.net import free_port
from support.small_bundle import make_bundle

pytestmark = pytest.mark.realtime   # timing-sensitive: run alone, never beside another test (Makefile)


def wait_sim(live, seconds: float, timeout: float = 60.0) -> None:
    """Wait until the session's physics thread has simulated `seconds` more (it may run slower than real time)."""
    t_end = live.snapshot.sim_time + seconds
    t0 = time.monotonic()
    while live.snapshot.sim_time < t_end:
        assert live.error is None, live.error
        assert time.monotonic() - t0 < timeout, "physics thread stalled"
        time.sleep(0.05)


def wait_until(live, cond, max_sim: float, timeout: float = 60.0) -> bool:
    """Poll `cond()` while the simulation advances by up to `max_sim` seconds; returns its last value."""
    t_end = live.snapshot.sim_time + max_sim
    t0 = time.monotonic()
    while not cond():
        assert live.error is None, live.error
        if live.snapshot.sim_time >= t_end or time.monotonic() - t0 > timeout:
            return bool(cond())
        time.sleep(0.05)
    return True


def robot_bbox(v, view, width: int, height: int) -> tuple[int, int, int, int]:
    """Pixel box (x0, y0, x1, y1) covering every drawn robot vertex, seen from the connected client's camera."""
    from scenes import keyframe_from_client
    from sim.live.viewer import link_meshes
    from twin_kit.rotations import qrot

    kf = keyframe_from_client(next(iter(v.server.get_clients().values())))
    w2c = np.asarray(kf["world_to_camera"])
    f = height / 2 / np.tan(kf["fov_y"] / 2)
    live = view.session
    bq = np.concatenate([live.snapshot.body_q, [[0, 0, 0, 0, 0, 0, 1.0]]])  # body -1: fixed to the world
    pts = np.concatenate([qrot(bq[m.body, 3:], m.vertices.astype(np.float64)) + bq[m.body, :3]
                          for m in link_meshes(live.world)]) / view.mpu
    x = pts @ w2c[:3, :3].T + w2c[:3, 3]
    assert (x[:, 2] > 0).all(), "robot should be in front of the client camera"
    u = f * x[:, 0] / x[:, 2] + width / 2
    v_ = f * x[:, 1] / x[:, 2] + height / 2
    return int(u.min()), int(v_.min()), int(np.ceil(u.max())), int(np.ceil(v_.max()))


def test_view_sim_moves_robot_and_teleop_drives_it(tmp_path):
    from scenes.viewer.server import ViewerOptions
    from scenes.viewer.snapshot import canvas_image, chromium_page, wait_for_scene
    from sim.live.session import SessionConfig
    from sim.live.viewer import ViewConfig, start_sim_viewer, stop_sim_viewer
    from sim.sensors.filming import film_poses

    bundle = make_bundle(tmp_path / "small")
    # as `twin sim --teleop` runs it: poses recorded for the video, a "Stop & save" button
    v, view = start_sim_viewer(bundle, ViewerOptions(port=free_port(), thumbnails=False),
                               cfg=SessionConfig(record_fps=10), view=ViewConfig(save_button=True), announce=False)
    live = view.session
    try:
        assert live.mode == "scripted" and len(view.handles["links"]) >= 8  # franka: 7 links + hand + fingers
        # Server side: the link frames follow the session's snapshots (scripted path: up to 12 cm sideways/up).
        a = view.link_positions()
        wait_sim(live, 0.25)
        time.sleep(2.0 / view.cfg.ui_hz)  # the drawing thread's next frame
        b = view.link_positions()
        assert np.abs(b - a).max() > 0.01, "robot link handles did not move"
        W, H = 640, 480
        with chromium_page(v.url, W, H) as page:
            live.set_playing(False)
            time.sleep(0.3)
            wait_for_scene(page, timeout=60)
            box0 = robot_bbox(v, view, W, H)
            shot0 = canvas_image(page, hide_overlays=True).astype(np.int16)
            live.set_playing(True)
            wait_sim(live, 0.3)
            live.set_playing(False)
            time.sleep(1.5)
            shot1 = canvas_image(page, hide_overlays=True).astype(np.int16)
            box1 = robot_bbox(v, view, W, H)
            changed = np.abs(shot1 - shot0).max(axis=2) > 30
            assert changed.mean() > 0.002, "the browser shows no robot motion"
            x0, y0 = min(box0[0], box1[0]) - 4, min(box0[1], box1[1]) - 4
            x1, y1 = max(box0[2], box1[2]) + 4, max(box0[3], box1[3]) + 4
            inside = changed[max(y0, 0):y1, max(x0, 0):x1].sum() / changed.sum()
            assert inside > 0.95, f"only {inside:.0%} of the changed pixels are where the robot is"

            # Teleop: keys (the injected listener clicks the buttons) and a button click move the target.
            page.get_by_role("button", name="+X").wait_for(timeout=10_000)
            e0 = live.snapshot.ee_pos.copy()
            # viser's client keeps only the last of GUI messages sent within 50 ms of each other (and a
            # software-rendered page can delay them into one window), so each press waits for the server.
            for act in [lambda: page.keyboard.press("u")] * 3 + [page.get_by_role("button", name="+X").click] * 2:
                n = live.nudges
                act()
                t0 = time.monotonic()
                while live.nudges == n and time.monotonic() - t0 < 10:
                    time.sleep(0.05)
            assert live.mode == "teleop" and view.gui["mode"].value == "Teleop"
            np.testing.assert_allclose(live.goal - e0, [0.04, 0.0, 0.06], atol=0.005)
            live.set_playing(True)
            wait_until(live, lambda: np.abs(live.snapshot.ee_pos - e0 - [0.04, 0, 0.06]).max() < 0.01, 2.0)
            s = live.snapshot
            np.testing.assert_allclose(s.ee_pos - e0, [0.04, 0.0, 0.06], atol=0.012)
            lo, hi = np.asarray(live.world.robot.lower), np.asarray(live.world.robot.upper)
            assert (s.joint_q >= lo - 1e-3).all() and (s.joint_q <= hi + 1e-3).all()
            page.get_by_role("button", name="Stop & save").click()
            assert live.finished.wait(10)
        # Pushing far past the workspace: the target stays within reach, joints stay within limits.
        for _ in range(40):
            live.nudge((0, 0, 1), 0.05)
        wait_sim(live, 0.4)
        s = live.snapshot
        assert np.linalg.norm(s.goal - s.ee_pos) <= live.cfg.lead + 1e-6
        assert (s.joint_q >= lo - 1e-3).all() and (s.joint_q <= hi + 1e-3).all()
        live.reset()
        wait_sim(live, 0.05)
        assert np.linalg.norm(live.snapshot.ee_pos - live.home_pos) < 0.03
    finally:
        stop_sim_viewer(v, view)
    assert live.error is None
    # The session as `twin sim --teleop` films it: the arm moves in the recorded frames.
    n = len(live.recording)
    assert n >= 0.9 * 10 * live.snapshot.sim_time
    frames, _ = film_poses(live.world, live.recording[:: max(1, n // 6)], 160)
    assert frames[0].shape[1] == 160  # (the last frames are back at home after the reset)
    assert max(np.abs(f.astype(int) - frames[0]).max() for f in frames[1:]) > 30


def test_cli_prints_url_first_and_json_last(tmp_path, capsys):
    from twin_cli.main import main

    bundle = make_bundle(tmp_path / "small", splats=False)
    out = tmp_path / "teleop.mp4"
    port = free_port()
    assert main(["sim", str(bundle), "--teleop", "--port", str(port), "--teleop-seconds", "2", "--fps", "10",
                 "--width", "96", "--out", str(out), "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == f"http://127.0.0.1:{port}" and len(lines) == 2, f"stdout: URL, then the JSON only: {lines}"
    res = json.loads(lines[1])
    assert res["teleop"] and res["frames"] >= 1 and res["sim_time"] > 0
    assert np.abs(res["ee_moved"]).max() < 0.01  # nobody drove it: the arm holds its pose
    import av

    with av.open(str(out)) as video:
        assert sum(1 for _ in video.decode(video=0)) == res["frames"]
    # `twin view --sim` the same way: URL first, JSON last, the physics ran.
    assert main(["view", str(bundle), "--sim", "--port", str(port), "--seconds", "2", "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == f"http://127.0.0.1:{port}" and json.loads(lines[-1])["sim_time"] > 0


def test_sim_view_refuses_unusable_scenes(tmp_path, capsys):
    from spatial.bundle import updating_bundle
    from twin_cli.main import main

    nomesh = make_bundle(tmp_path / "nomesh")
    with updating_bundle(nomesh) as (tmp, _):  # a valid bundle that simply has no collision mesh
        (tmp / "collision.ply").unlink()
    assert main(["view", str(nomesh), "--sim", "--port", str(free_port()), "--seconds", "0"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "no collision mesh" in err and err.count("error:") == 1
    arbitrary = make_bundle(tmp_path / "arb", metric=False)
    assert main(["view", str(arbitrary), "--sim", "--port", str(free_port()), "--seconds", "0"]) == 2
    assert "pass --scale" in capsys.readouterr().err
    assert main(["sim", str(tmp_path / "nomesh"), "--teleop", "--port", str(free_port())]) == 2
    assert "no collision mesh" in " ".join(capsys.readouterr().err.split())
