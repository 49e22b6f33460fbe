"""`twin view`: the browser draws the splats (checked against Twin's rasterizer), toggles, path editor, bad input."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from support.net import free_port, read_first_line
from support.small_bundle import make_bundle

CHROMIUM = "/usr/bin/chromium"


def wait_for_file(path: Path, timeout: float = 20.0) -> dict:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if path.exists():
            return json.loads(path.read_text())
        time.sleep(0.2)
    raise AssertionError(f"{path} was not written")


def server_render(bundle: Path, kf: dict, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Twin's rasterizer rendering of the splats from the client camera that the server reported."""
    from scenes.rendering.rasterize import rasterize
    from scenes.splats.gaussians import read_splats_ply

    g = read_splats_ply(bundle / "splats.ply")
    fy = height / 2 / np.tan(kf["fov_y"] / 2)
    K = torch.tensor([[fy, 0, width / 2], [0, fy, height / 2], [0, 0, 1]], dtype=torch.float32)
    out = rasterize(g.means, g.quats, g.scales, g.opacities, g.sh[:, :1].contiguous(),  # viser draws base colour
                    torch.tensor(kf["world_to_camera"], dtype=torch.float32), K, width, height,
                    background=torch.ones(3))
    return out.image.clamp(0, 1).numpy(), out.alpha[..., 0].numpy()


def test_view_draws_splats_that_match_a_server_render(tmp_path):
    from scenes.viewer.snapshot import canvas_image, chromium_page, wait_for_scene

    bundle = make_bundle(tmp_path / "small")
    port = free_port()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "twin_cli", "view", str(bundle), "--port", str(port),
                             "--seconds", "150"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        url = read_first_line(proc, timeout=90)
        assert url == f"http://127.0.0.1:{port}"
        W, H = 640, 480
        with chromium_page(url, W, H) as page:
            wait_for_scene(page, timeout=90)
            for name in ("Cameras", "Grid"):  # the layer toggles: leave only the splats in view
                page.get_by_role("checkbox", name=name).click()
            # The path editor reads the client camera back from the server's client handle.
            page.get_by_role("button", name="Add keyframe").click()
            page.get_by_text("1 keyframe", exact=True).wait_for(timeout=10_000)
            page.get_by_role("button", name="Save path").click()
            doc = wait_for_file(bundle / "paths" / "path.json")
            time.sleep(1.0)
            shot = canvas_image(page, hide_overlays=True).astype(np.float32) / 255
            page.get_by_role("checkbox", name="Splats").click()
            time.sleep(1.5)
            hidden = canvas_image(page, hide_overlays=True).astype(np.float32) / 255
            # "Render video" runs `twin render`'s renderer along the path (6 frames: 0.2 s at 30 fps)
            page.get_by_label("Duration (s)").fill("0.2")
            page.get_by_label("Video width").fill("320")
            time.sleep(0.5)
            page.get_by_role("button", name="Render video").click()
            page.get_by_text("Rendered").wait_for(timeout=120_000)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    import av

    with av.open(str(bundle.parent / "small_path.mp4")) as video:
        frames = [f.to_ndarray(format="rgb24") for f in video.decode(video=0)]
    assert len(frames) == 6 and frames[0].shape == (240, 320, 3)
    kf = doc["keyframes"][0]
    assert (kf["width"], kf["height"]) == (W, H) and shot.shape == (H, W, 3)
    ref, alpha = server_render(bundle, kf, W, H)
    covered = alpha > 0.9
    assert covered.mean() > 0.08, "test view should be filled with splats"
    err = np.abs(shot - ref).max(axis=2)
    match = (err[covered] < 0.12).mean()
    assert match > 0.8, f"only {match:.0%} of splat pixels match the server render"
    background = (np.abs(hidden - 1.0).max(axis=2) < 0.05)[covered].mean()
    assert background > 0.95, "unticking 'Splats' should leave the background where they were"
    assert (np.abs(shot - 1.0).max(axis=2) > 0.1).mean() > 0.08


def test_view_without_splats_says_so_and_shows_points(tmp_path):
    from scenes.viewer.server import NO_SPLATS_TITLE, ViewerOptions, run_in_thread
    from scenes.viewer.snapshot import chromium_page, wait_for_scene

    bundle = make_bundle(tmp_path / "nosplats", splats=False)
    v, stop = run_in_thread(bundle, ViewerOptions(port=free_port()))
    try:
        assert v.layers.splats is None and v.handles["points"].visible and v.handles["mesh"].visible
        with chromium_page(v.url, 640, 480) as page:
            img = wait_for_scene(page, timeout=90)
            assert page.get_by_text(NO_SPLATS_TITLE).first.is_visible()
    finally:
        stop.set()
    assert (np.abs(img.astype(int) - 255).max(axis=2) > 24).mean() > 0.02


def test_view_refuses_port_in_use_and_damaged_ply(tmp_path, capsys):
    from twin_cli.main import main

    bundle = make_bundle(tmp_path / "b")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        assert main(["view", str(bundle), "--port", str(port), "--seconds", "0"]) == 2
    out = capsys.readouterr()
    err = " ".join(out.err.split())  # rich wraps long lines
    assert out.out == "" and f"port {port}" in err and "in use" in err
    data = (bundle / "splats.ply").read_bytes()
    (bundle / "splats.ply").unlink()
    (bundle / "splats.ply").write_bytes(data[: len(data) // 2])  # truncated: a damaged download or disk
    assert main(["view", str(bundle), "--port", str(free_port()), "--seconds", "0"]) == 2
    assert "damaged" in capsys.readouterr().err


def test_display_budget_keeps_most_visible_and_says_so(tmp_path):
    from scenes.viewer.server import ViewerOptions, run_in_thread

    bundle = make_bundle(tmp_path / "b", n=600)
    v, stop = run_in_thread(bundle, ViewerOptions(port=free_port(), max_gaussians=100, thumbnails=False))
    try:
        s = v.layers.splats
        assert len(s.index) == 100 and s.n_total == 600 and s.subsampled
        assert "Showing 100 of 600 Gaussians" in v.gui["budget"].content
        assert v.handles["splats"].centers.shape == (100, 3)
        assert " m cells" in v.gui["scale"].content and "not metric" not in v.gui["scale"].content
        assert "scale_label" in v.handles  # metric bundle: a scale bar is drawn
    finally:
        stop.set()


def test_camera_path_interpolates_through_keyframes():
    import viser.transforms as tf

    from scenes.viewer._paths import path_cameras, path_document
    from spatial.cameras import look_at

    kfs = []
    for eye in ([3.0, 0, 1], [0, 3.0, 1], [-3.0, 0, 1]):
        R, t = look_at(np.array(eye), np.zeros(3))
        kfs.append({"position": eye, "wxyz": tf.SO3.from_matrix(R.T).wxyz.tolist(), "fov_y": 0.8, "aspect": 4 / 3})
    cams = path_cameras(path_document(kfs, fps=10, seconds=2, width=320), n_frames=21)
    assert len(cams) == 21 and (cams[0].width, cams[0].height) == (320, 240)
    for cam, kf in ((cams[0], kfs[0]), (cams[10], kfs[1]), (cams[20], kfs[2])):
        np.testing.assert_allclose(cam.center, kf["position"], atol=1e-9)
        R_ref, _ = look_at(np.array(kf["position"]), np.zeros(3))
        np.testing.assert_allclose(cam.R, R_ref, atol=1e-9)
    for cam in cams:  # every in-between frame still looks roughly at the centre
        assert (cam.R @ (-cam.center))[2] > 0.9 * np.linalg.norm(cam.center)


def test_a_hung_page_fails_at_the_browser_deadline():
    """A page that never answers (a promise that never settles; Playwright's evaluate has no timeout of its own)
    fails the waiting call once the browser's deadline kills Chromium, instead of blocking the process forever."""
    from scenes.viewer.snapshot import chromium_page

    t0 = time.monotonic()
    with pytest.raises(Exception, match="closed"), chromium_page("about:blank", deadline=3) as page:
        page.evaluate("() => new Promise(() => {})")
    assert time.monotonic() - t0 < 60
