"""`twin view BUNDLE --dataset DIR`: a recorded episode replayed in the browser viewer.

A real recording (`run_record`: Newton + MuJoCo's C core, ray-traced 32 px cameras, the real writer; 2 pick_place
episodes of 1 s at 10 fps in the small test bundle), a real viser server, and Debian's headless Chromium. The
drawn links are checked against a robot built where the recorder built it (forward kinematics of the recorded
joint positions), the camera images against the decoded videos.
"""
from __future__ import annotations

import io
import json
import shutil
import time

import numpy as np
import pytest
from support.net import free_port
from support.small_bundle import make_bundle

from policies import RecordConfig, read_dataset, run_record

CAMERAS = ("front", "wrist")


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    d = tmp_path_factory.mktemp("replay")
    make_bundle(d / "scene")
    assert run_record(RecordConfig(bundle=str(d / "scene"), out=str(d / "datasets" / "ds"), episodes=2, worlds=2,
                                   size=32, episode_s=1.0)) == 0
    return d


@pytest.fixture(scope="module")
def replay(work):
    """The replay viewer on a free port, showing episode 0."""
    from policies.replay.viewer import start_replay_viewer
    from scenes import ViewerOptions

    v, view = start_replay_viewer(work / "scene", work / "datasets" / "ds", ViewerOptions(port=free_port(),
                                  thumbnails=False), episode=0, announce=False)
    yield v, view
    view.stop()
    v.stop()


def reference_links(base, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Link poses (bodies, 7) and end-effector position of a Franka built at `base` (as the recorder built it,
    robot_pose x y z yaw) with joint positions q, by Newton's forward kinematics."""
    import newton

    from sim import WorldConfig, body_poses, build_world, ee_pose

    w = build_world(WorldConfig(scene=None, robot="franka", robot_pose=tuple(base), worlds=1, solver="featherstone",
                                visuals=False, check_collisions=False))
    full = w.default_q.copy()
    s = w.robot_coord_start
    full[s:s + len(q)] = q
    w.state.joint_q.assign(full)
    newton.eval_fk(w.model, w.state.joint_q, w.state.joint_qd, w.state)
    return body_poses(w)[0].astype(np.float64), ee_pose(w)[0][0]


def png_pixels(handle) -> np.ndarray:
    """The image a GUI image handle sends to the browser (its PNG payload, decoded)."""
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(handle._data)).convert("RGB"))


def test_time_slider_poses_the_recorded_robot_objects_and_images(work, replay):
    from policies.replay.viewer import display_image

    v, view = replay
    data = read_dataset(work / "datasets" / "ds")
    meta = data.episodes[0].meta
    assert len(meta["robot_base"]) == 4 and meta["metres_per_unit"] == 1.0   # what the recorder now stores
    frames = data.episode_frames(0)
    videos = {c: data.episode_video(0, f"observation.images.{c}") for c in CAMERAS}
    T, fps = len(frames["action"]), data.fps
    assert T == 10 and view.gui["time"].max == pytest.approx((T - 1) / fps)
    base = np.asarray(meta["robot_base"])
    for k in (3, 9, 0):
        view.gui["time"].value = k / fps                 # as a browser moving the slider does
        assert view.frame == k
        ref, ee = reference_links(base, frames["observation.state"][k])
        got = view.link_world_poses()
        assert got.shape == ref.shape
        np.testing.assert_allclose(got[:, :3], ref[:, :3], atol=1e-5)
        assert np.abs(np.abs((got[:, 3:] * ref[:, 3:]).sum(1)) - 1).max() < 1e-5   # same rotations (q or -q)
        # the rebuilt kinematics agree with the end effector the physics recorded
        np.testing.assert_allclose(ee, frames["privileged.ee_pose"][k, :3], atol=1e-4)
        for j, fh in enumerate(view.handles["objects"]):
            np.testing.assert_allclose(fh.position, frames["privileged.object_poses"][k, j, :3], atol=1e-6)
        for c in CAMERAS:
            shown = view.gui["images"][c].image
            assert np.array_equal(shown, display_image(videos[c][k]))
            step = shown.shape[1] // 32
            assert step >= 2 and np.array_equal(shown[::step, ::step], videos[c][k])
            assert np.array_equal(png_pixels(view.gui["images"][c]), shown)   # lossless over the wire
    assert f"frame 1 of {T}" in view.gui["clock"].content

    # Another episode: its base, success flag and style are shown, from its first frame
    view.gui["episode"].value = 1
    m1 = data.episodes[1].meta
    assert view.episode.index == 1 and view.frame == 0 and float(view.gui["time"].value) == 0.0
    status = view.gui["status"].content
    assert ("succeeded" if m1["success"] else "failed") in status and m1["style_id"] in status and "seed 1" in status
    f1 = data.episode_frames(1)
    assert np.array_equal(view.gui["images"]["front"].image,
                          display_image(data.episode_video(1, "observation.images.front")[0]))
    ref, _ = reference_links(m1["robot_base"], f1["observation.state"][0])
    np.testing.assert_allclose(view.link_world_poses()[:, :3], ref[:, :3], atol=1e-5)

    # Play runs through the episode at the dataset's rate and pauses on its last frame
    view.set_playing(True)
    assert view.gui["play"].label == "Pause"
    t0 = time.monotonic()
    while view.playing and time.monotonic() - t0 < 20:
        time.sleep(0.05)
    assert not view.playing and view.frame == T - 1 and view.gui["play"].label == "Play"
    assert time.monotonic() - t0 >= 0.8 * (T - 1) / fps
    view.gui["episode"].value = 0


def test_browser_shows_the_replay_panel(replay):
    from scenes import chromium_page, wait_for_scene

    v, view = replay
    with chromium_page(v.url, 960, 640) as page:
        page.get_by_text("Time (s)").wait_for(timeout=60_000)
        slider = page.get_by_role("slider")
        assert slider.count() == 1 and slider.get_attribute("aria-valuenow") == "0"
        assert page.get_by_text("wrist").count() >= 1 and page.locator("img").count() >= 2
        wait_for_scene(page, timeout=90)
        view.gui["time"].value = 0.5
        page.get_by_text("frame 6 of 10").wait_for(timeout=10_000)
        assert slider.get_attribute("aria-valuenow") == "0.5"
    view.gui["time"].value = 0.0


def test_cli_prints_url_first_and_json_last(work, capsys):
    from twin_cli.main import main

    port = free_port()
    assert main(["view", str(work / "scene"), "--dataset", str(work / "datasets" / "ds"), "--episode", "1",
                 "--port", str(port), "--seconds", "0", "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == f"http://127.0.0.1:{port}" and len(lines) == 2, lines
    res = json.loads(lines[1])
    assert res["episode"] == 1 and res["episodes"] == 2 and res["frames"] == 10 and res["robot"] == "franka"
    assert res["cameras"] == list(CAMERAS)


def foreign_dataset(work) -> str:
    """The recording's metadata with another robot named in info.json (as a LeRobot dataset of a Koch arm)."""
    out = work / "datasets" / "koch"
    if not out.exists():
        shutil.copytree(work / "datasets" / "ds" / "meta", out / "meta")
        info = json.loads((out / "meta" / "info.json").read_text())
        info["robot_type"] = "koch"
        (out / "meta" / "info.json").write_text(json.dumps(info))
    return str(out)


@pytest.mark.parametrize("args, message", [
    (["--dataset", "datasets/nope"], "datasets/nope: no such dataset"),
    (["--dataset", "scene"], "not a LeRobot dataset"),
    (["--dataset", "datasets/ds", "--episode", "2"], "--episode 2: datasets/ds has 2 episodes (0-1)"),
    (["--dataset", "datasets/ds", "--robot", "so101"], "was recorded with franka"),
    (["--dataset", "KOCH"], "recorded with robot 'koch', which Twin cannot replay"),
    (["--dataset", "datasets/ds", "--scale", "0.5"], "recorded at 1 metres per scene unit"),
    (["--dataset", "datasets/ds", "--sim"], "--sim and --dataset: choose one"),
    (["--episode", "1"], "--episode 1: needs --dataset"),
])
def test_bad_inputs_are_one_line_errors(work, capsys, monkeypatch, args, message):
    from twin_cli.main import main

    monkeypatch.chdir(work)
    args = [foreign_dataset(work) if a == "KOCH" else a for a in args]
    assert main(["view", "scene", *args, "--port", str(free_port()), "--seconds", "0"]) == 2
    out = capsys.readouterr()
    err = " ".join(out.err.split())  # rich wraps long lines
    assert out.out == "" and err.startswith("error:") and err.count("error:") == 1 and message in err, err
    assert "Traceback" not in err
