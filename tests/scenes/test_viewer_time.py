"""`twin view` on a dynamic bundle: the time slider and the play button move the splats in Chromium."""
from __future__ import annotations

import time

import numpy as np
import torch
from support.net import free_port
from support.small_bundle import make_bundle, small_gaussians

SHIFT = 0.6  # metres along +x that the test field moves every Gaussian between t = 0 and t = 1


def translating_field():
    """A hand-set deformation field: every Gaussian moves SHIFT * t along +x (rotations and scales kept)."""
    from scenes.dynamic.deformation import DeformationConfig, DeformationField

    f = DeformationField(DeformationConfig(resolution=4, multires=(1,), time_resolution=3, features=2, width=4,
                                           bounds=[-1.0, -1.0, -1.0, 1.0, 1.0, 1.0]))
    with torch.no_grad():
        for p in f.parameters():
            p.zero_()
        f.grid.space[0].fill_(1.0)
        f.grid.time[0].fill_(1.0)
        f.grid.time[0][0, 0] = torch.tensor([1.0, 1.5, 2.0])[:, None]  # xt plane, channel 0: 1 + t
        f.trunk[0].weight[0] = torch.tensor([1.0, -1.0])  # hidden 0 = (1 + t) - 1 = t
        f.d_xyz[1].weight[0, 0] = 1.0
        f.d_xyz[3].weight[0, 0] = SHIFT
    return f


def dynamic_bundle(path):
    from scenes.dynamic.model import DynamicSplats, TimeAxis, save_dynamic
    from spatial import updating_bundle

    root = make_bundle(path, n=300)
    dyn = DynamicSplats(small_gaussians(300), translating_field(), TimeAxis(0.0, 3.0))
    with updating_bundle(root) as (tmp, _):
        save_dynamic(tmp, dyn, {})
    return root, dyn


def test_translating_field_moves_everything_by_the_shift(tmp_path):
    _, dyn = dynamic_bundle(tmp_path / "b")
    d = dyn.at(1.0).means - dyn.at(0.0).means
    assert torch.allclose(d, torch.tensor([SHIFT, 0.0, 0.0]).expand_as(d), atol=1e-6)
    assert torch.allclose(dyn.at(0.5).means - dyn.at(0.0).means, d / 2, atol=1e-6)


def test_time_slider_and_play_button_move_the_splats(tmp_path):
    from scenes.viewer.server import ViewerOptions, run_in_thread
    from scenes.viewer.snapshot import canvas_image, chromium_page, wait_for_scene

    bundle, dyn = dynamic_bundle(tmp_path / "dyn")
    v, stop = run_in_thread(bundle, ViewerOptions(port=free_port(), thumbnails=False))
    try:
        assert v.layers.dynamic is not None and "time" in v.gui
        c0 = v.handles["splats"].centers.copy()
        with chromium_page(v.url, 640, 480) as page:
            wait_for_scene(page, timeout=90)
            for name in ("Cameras", "Grid"):
                page.get_by_role("checkbox", name=name).click()
            time.sleep(1.0)
            shot0 = canvas_image(page, hide_overlays=True).astype(np.float32) / 255
            slider = page.get_by_role("slider").first
            slider.focus()
            slider.press("End")  # the slider's maximum: the capture's last instant
            page.get_by_text("t = 1.00").wait_for(timeout=30_000)
            time.sleep(1.5)
            shot1 = canvas_image(page, hide_overlays=True).astype(np.float32) / 255
            assert v.gui["time"].value == 1.0
            assert np.allclose(v.handles["splats"].centers - c0, [SHIFT, 0.0, 0.0], atol=1e-4)
            slider.press("Home")
            page.get_by_text("t = 0.00").wait_for(timeout=30_000)
            time.sleep(1.5)
            back = canvas_image(page, hide_overlays=True).astype(np.float32) / 255
            page.get_by_role("button", name="Play").click()
            page.get_by_role("button", name="Pause").wait_for(timeout=10_000)
            time.sleep(1.5)
            played = v.gui["time"].value
            page.get_by_role("button", name="Pause").click()
            page.get_by_role("button", name="Play").wait_for(timeout=10_000)
    finally:
        stop.set()
    moved = np.abs(shot1 - shot0).max(axis=2) > 0.15
    assert moved.mean() > 0.05, "the splats should move on screen when time runs to the end"
    assert (np.abs(back - shot0).max(axis=2) > 0.15).mean() < 0.2 * moved.mean(), "t = 0 again looks as before"
    assert 0.05 < played < 1.0, f"playing for 1.5 s of a 3 s capture should advance time ({played})"
