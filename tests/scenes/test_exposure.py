"""Per-frame exposure compensation: the closed-form gain recovers a known exposure, held-out gains are
interpolated in time, and `--dynamic` training on a capture whose exposure drifts scores better with it, for the
deformed model and for the static baseline alike."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from scenes.splats.exposure import Exposure, interpolate_gains
from scenes.splats.losses import psnr
from tests.support.moving_bundle import cameras, make_moving_bundle, scene_gaussians

DRIFT = 0.3 * np.cos(2 * np.pi * np.arange(16) / 16)  # smooth log-gain; held-out frames 0 and 8 at its extremes


def _renders(n: int) -> list[torch.Tensor]:
    from scenes.splats.train import render_params

    params, _ = scene_gaussians()
    return [render_params(params, cam, backend="warp").image for cam in cameras(n)]


def test_fit_recovers_a_known_per_frame_gain_even_with_clipped_pixels():
    imgs = _renders(4)
    true = np.array([[0.0, 0.0, 0.0], [0.3, 0.3, 0.3], [-0.2, 0.1, 0.25], [0.6, 0.6, 0.6]])
    ex = Exposure.make(4)
    for i, img in enumerate(imgs):
        ref = (img * torch.exp(torch.tensor(true[i], dtype=torch.float32))).clamp(0, 1)
        ex.fit(img, ref, i)
    assert np.allclose(ex.table(), true, atol=2e-3)
    for i, img in enumerate(imgs):
        ref = (img * torch.exp(torch.tensor(true[i], dtype=torch.float32))).clamp(0, 1)
        assert psnr(ex.apply(img, i), ref) > 50
    assert (imgs[3] * np.exp(0.6) >= 1).any()  # the brightest frame clipped, and those pixels did not bias it
    fork = ex.fork()
    fork.fit(imgs[0], imgs[0] * 2, 0)
    assert np.allclose(ex.table(), true, atol=2e-3)  # a fork trains on by itself


def test_folding_the_mean_gain_into_the_colours_changes_no_exposed_render():
    from scenes.splats.train import render_params

    params, _ = scene_gaussians()
    params["sh_rest"] = torch.randn(len(params["means"]), 3, 3) * 0.1  # view-dependent colour is scaled too
    ex = Exposure.make(3)
    ex.log_gains[:] = torch.tensor([[0.5, 0.1, 0.3], [0.3, 0.2, 0.4], [0.1, 0.0, 0.2]])
    ex.seen[:2] = True  # view 2 (held out) is not part of the mean
    cams = cameras(3)
    before = [ex.apply(render_params(params, c, backend="warp").image, i) for i, c in enumerate(cams)]
    ex.fold_into(params)
    assert np.allclose(ex.table()[:2].mean(0), 0.0, atol=1e-6)
    assert np.allclose(ex.table()[2], [-0.3, -0.15, -0.15], atol=1e-6)
    for i, c in enumerate(cams):
        assert torch.allclose(ex.apply(render_params(params, c, backend="warp").image, i), before[i], atol=2e-5)


def test_held_out_gains_are_interpolated_in_time_from_the_training_frames():
    table = np.array([[9.0, 9, 9], [0.1, 0.2, 0.3], [9, 9, 9], [0.3, 0.0, 0.1], [0.5, 0.4, 0.3], [9, 9, 9]])
    times = [0.0, 0.1, 0.2, 0.4, 0.3, 1.0]  # out of order on purpose: interpolation follows time, not index
    out = interpolate_gains(table, times, train=[1, 3, 4])
    assert np.allclose(out[[1, 3, 4]], table[[1, 3, 4]])
    assert np.allclose(out[0], table[1]) and np.allclose(out[5], table[3])  # held beyond the ends
    assert np.allclose(out[2], 0.5 * (table[1] + table[4]))  # t = 0.2 between t = 0.1 and t = 0.3


@pytest.fixture(scope="module")
def drifting(tmp_path_factory):
    return make_moving_bundle(tmp_path_factory.mktemp("drift") / "b", frames=16, gains=np.exp(DRIFT))


def _train(root, exposure: bool):
    from scenes.dynamic.train import train_dynamic
    from scenes.splats.train_config import SplatConfig
    from twin_kit import torch_threads

    cfg = SplatConfig(bundle=root, dynamic=True, steps=300, resolution=0, sh_degree=0, max_gaussians=800,
                      backdrop=False, eval_every_n=4, refine_start=50, refine_every=50, warmup_fraction=0.2,
                      plane_levels=2, plane_resolution=16, threads=1, quiet=True, exposure=exposure)
    with torch_threads(1):
        return train_dynamic(cfg)


@pytest.fixture(scope="module")
def runs(drifting):
    return _train(drifting, True), _train(drifting, False)


def test_dynamic_training_compensates_a_drifting_exposure_in_both_models(runs):
    on, off = runs
    assert on.psnr > off.psnr + 1.0 and on.psnr_static > off.psnr_static + 1.0, (on, off)
    assert on.psnr > on.psnr_static + 2.0  # the gap still measures the motion
    assert off.log_gains is None
    learned = on.log_gains.mean(1)
    learned, true = learned - learned.mean(), DRIFT - DRIFT.mean()  # a common scale is the colours' business
    assert np.corrcoef(learned, true)[0, 1] > 0.95 and np.abs(learned - true).max() < 0.08, (learned, true)


def test_saved_colours_hold_the_mean_exposure(drifting, runs):
    """The gains' mean is folded into the colours, so the saved Gaussians show the capture's mean exposure:
    held-out frame 8 (the darkest), rendered with no gain, is its image brightened by its gain, not the dark
    image."""
    import cv2

    from scenes.splats.train import PARAM_NAMES, render_params

    dyn = runs[0].dyn
    img = render_params(dict(zip(PARAM_NAMES, dyn.at(8 / 15).tensors())), cameras(16)[8], backend="warp").image
    ref = torch.from_numpy(cv2.imread(str(drifting / "images" / "0008.png"))[:, :, ::-1].copy()).float() / 255
    assert psnr(img, (ref * np.exp(-DRIFT[8])).clamp(0, 1)) > psnr(img, ref) + 3
