"""Splat training: densification edits keep Adam state consistent, a tiny scene trains, resumes, renders,
and a NaN stops training with a clear error while the last good checkpoint survives."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from plyfile import PlyData, PlyElement

from scenes.splats.gaussians import read_splats_ply
from scenes.splats.strategy import DefaultStrategy, MCMCStrategy, relocation_params
from scenes.splats.train import PARAM_NAMES, TrainingDiverged, evaluate, load_views, train, write_result
from scenes.splats.train_config import SplatConfig
from spatial.bundle import finalize_manifest, new_manifest, read_bundle, write_cameras
from spatial.cameras import Camera, look_at
from twin_kit.errors import InputError

# ---------------------------------------------------------------------------------------------- helpers

def _params(n: int, seed: int = 0) -> dict[str, torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    t = {"means": torch.randn(n, 3, generator=g), "quats": torch.randn(n, 4, generator=g),
         "log_scales": torch.full((n, 3), math.log(0.005)), "opacity_logits": torch.zeros(n),
         "sh_dc": torch.randn(n, 3, generator=g), "sh_rest": torch.randn(n, 15, 3, generator=g)}
    return {k: torch.nn.Parameter(v) for k, v in t.items()}


def _optims(params):
    opts = {k: torch.optim.Adam([p], lr=1e-3, eps=1e-15) for k, p in params.items()}
    for k, p in params.items():  # one step with distinct gradients so that every row has its own moments
        p.grad = torch.arange(p.numel(), dtype=torch.float32).reshape(p.shape) + 1
        opts[k].step()
        opts[k].zero_grad()
    return opts


def _assert_consistent(params, optims):
    for k, p in params.items():
        opt = optims[k]
        assert opt.param_groups[0]["params"][0] is p, k
        st = opt.state[p]
        assert st["exp_avg"].shape == p.shape and st["exp_avg_sq"].shape == p.shape, k


def _info(n, grad_rows, width=100, height=100):
    g = torch.zeros(n, 2)
    g[grad_rows] = 1.0  # pixel gradient 1 -> NDC gradient 50 per axis, far above the threshold
    return {"means2d_grad": g, "radii": torch.ones(n, dtype=torch.int32), "width": width, "height": height}


# ---------------------------------------------------------------------------------------------- strategies

def test_default_strategy_clones_splits_prunes_and_keeps_adam_rows():
    n = 20
    params = _params(n)
    params["log_scales"].data[5:10] = math.log(0.5)  # large: split (extent 1 -> percent_dense 0.01)
    params["opacity_logits"].data[15:18] = -10.0  # nearly transparent: prune
    optims = _optims(params)
    keep_row = params["sh_dc"].data[19].clone()
    parent_scales = params["log_scales"].data[5:10].exp()
    keep_moment = optims["sh_dc"].state[params["sh_dc"]]["exp_avg"][19].clone()
    s = DefaultStrategy(refine_start=1, refine_every=1, refine_stop=100, reset_every=0)
    state = s.init_state(n, scene_extent=1.0)
    out = s.step_post_backward(params, optims, state, 1, _info(n, list(range(10))))
    assert out == {"clone": 5, "split": 5, "prune": 3}
    assert len(params["means"]) == n + 5 + 5 - 3
    _assert_consistent(params, optims)
    # the untouched Gaussian 19 keeps its values and its Adam moments (at its new row, after 3 removals)
    assert torch.equal(params["sh_dc"].data[16], keep_row)
    assert torch.equal(optims["sh_dc"].state[params["sh_dc"]]["exp_avg"][16], keep_moment)
    # split children are 1.6x smaller; new rows start with zero moments
    assert torch.allclose(params["log_scales"].data[5:10].exp(), parent_scales / 1.6)
    assert torch.allclose(params["log_scales"].data[-5:].exp(), parent_scales / 1.6)
    assert torch.all(optims["means"].state[params["means"]]["exp_avg"][-10:] == 0)
    assert state["grad2d"].shape == (len(params["means"]),)


def test_default_strategy_respects_budget():
    params = _params(20)
    optims = _optims(params)
    s = DefaultStrategy(max_gaussians=24, refine_start=1, refine_every=1, refine_stop=100, reset_every=0)
    state = s.init_state(20, 1.0)
    s.step_post_backward(params, optims, state, 1, _info(20, list(range(20))))
    assert len(params["means"]) == 24
    _assert_consistent(params, optims)


def test_opacity_reset_caps_opacity_and_clears_its_moments():
    params = _params(10)
    params["opacity_logits"].data[:] = 3.0
    optims = _optims(params)
    DefaultStrategy().reset_opacity(params, optims)
    assert torch.all(torch.sigmoid(params["opacity_logits"].data) <= 0.01 + 1e-6)
    assert torch.all(optims["opacity_logits"].state[params["opacity_logits"]]["exp_avg"] == 0)
    _assert_consistent(params, optims)


def test_relocation_formula_is_identity_for_one_copy_and_preserves_peak_opacity():
    o = torch.tensor([0.3, 0.9])
    s = torch.ones(2, 3)
    o1, s1 = relocation_params(o, s, torch.tensor([1, 1]))
    assert torch.allclose(o1, o) and torch.allclose(s1, s)
    o4, _ = relocation_params(o, s, torch.tensor([4, 4]))
    assert torch.allclose(1 - (1 - o4) ** 4, o, atol=1e-6)  # 4 copies stacked: same opacity at the centre


def test_mcmc_relocates_dead_and_grows_to_budget():
    n = 40
    params = _params(n)
    params["opacity_logits"].data[:10] = -20.0  # dead
    optims = _optims(params)
    s = MCMCStrategy(max_gaussians=42, refine_start=1, refine_every=1, refine_stop=100)
    state = s.init_state(n, 1.0)
    out = s.step_post_backward(params, optims, state, 1, {}, lr_means=1e-4)
    assert out == {"relocate": 10, "add": 2}
    assert len(params["means"]) == 42
    assert torch.all(torch.sigmoid(params["opacity_logits"].data) > 0.005)
    assert torch.isfinite(params["means"].data).all()
    _assert_consistent(params, optims)


# ---------------------------------------------------------------------------------------------- tiny scene

W, H = 48, 36


def _write_points(path, xyz, rgb):
    arr = np.empty(len(xyz), dtype=[(c, "f4") for c in "xyz"] + [(c, "u1") for c in ("red", "green", "blue")])
    arr["x"], arr["y"], arr["z"] = xyz.T
    arr["red"], arr["green"], arr["blue"] = (rgb * 255).astype(np.uint8).T
    PlyData([PlyElement.describe(arr, "vertex")]).write(str(path))


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory):
    """A synthetic scene: 150 coloured Gaussians seen by 16 cameras on a circle, rendered with Warp."""
    import cv2

    from scenes.rendering.rasterize import rasterize

    root = tmp_path_factory.mktemp("splat") / "tiny"
    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(1)
    n = 150
    xyz = rng.uniform(-0.5, 0.5, (n, 3))
    rgb = rng.uniform(0.1, 0.9, (n, 3))
    g = dict(means=torch.tensor(xyz, dtype=torch.float32), quats=torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1),
             scales=torch.full((n, 3), 0.08), opacities=torch.full((n,), 0.8),
             sh=((torch.tensor(rgb, dtype=torch.float32) - 0.5) / 0.28209479177387814)[:, None, :])
    cams = []
    for i in range(16):
        a = 2 * np.pi * i / 16
        R, t = look_at(np.array([3 * np.cos(a), 3 * np.sin(a), 1.0]), np.zeros(3))
        cam = Camera(name=f"{i:03d}", width=W, height=H, fx=50.0, fy=50.0, cx=W / 2, cy=H / 2, R=R, t=t,
                     image=f"images/{i:03d}.png")
        img = rasterize(**g, viewmat=torch.tensor(cam.world_to_cam, dtype=torch.float32),
                        K=torch.tensor(cam.K, dtype=torch.float32), width=W, height=H, backend="warp").image
        cv2.imwrite(str(root / cam.image), (img.clamp(0, 1).numpy()[:, :, ::-1] * 255 + 0.5).astype(np.uint8))
        cams.append(cam)
    write_cameras(root, cams)
    _write_points(root / "points.ply", xyz + rng.normal(0, 0.03, xyz.shape), np.full((n, 3), 0.5))
    # the ground truth as splats.ply, so that rendering can be tested without training first
    from scenes.splats.gaussians import Gaussians, write_splats_ply

    write_splats_ply(root / "splats.ply", Gaussians(
        means=g["means"], quats=g["quats"], log_scales=g["scales"].log(),
        opacity_logits=torch.logit(g["opacities"]), sh_dc=g["sh"][:, 0], sh_rest=torch.zeros(n, 0, 3)))
    finalize_manifest(root, new_manifest(input="synthetic"))
    return root


def _cfg(bundle, **kw):
    base = dict(bundle=bundle, steps=80, resolution=0, max_gaussians=400, sh_degree=1, sh_increase_every=40,
                refine_start=20, refine_every=20, eval_interval=0, checkpoint_every=40, quiet=True,
                backend="warp", init_opacity=0.3, lr_means=1e-3, lr_means_final=1e-4,
                backdrop=False)  # a floating cloud on black: nothing behind it to seed
    base.update(kw)
    return SplatConfig(**base)


def test_tiny_scene_trains_writes_bundle_and_resumes(tiny_bundle):
    from scenes.splats.seed_points import gaussians_from_points, read_points_float

    cfg = _cfg(tiny_bundle)
    b = read_bundle(tiny_bundle)
    views = load_views(b.root, b.cameras, 0, 8)
    g0 = gaussians_from_points(*read_points_float(tiny_bundle / "points.ply"), 1, 0.3)
    psnr0, _ = evaluate(dict(zip(PARAM_NAMES, g0.tensors())), views, views.test, torch.zeros(3), "warp")

    res = train(cfg)
    assert res.psnr > psnr0 + 4.0, (psnr0, res.psnr)
    assert 0 < res.ssim <= 1 and res.num_gaussians <= 400 and res.resolution == f"{W}x{H}"
    ck = torch.load(cfg.checkpoint_path(), weights_only=False)
    assert ck["step"] == 80

    write_result(tiny_bundle, res, cfg)
    b = read_bundle(tiny_bundle)
    assert b.manifest["metrics"]["splat"]["num_gaussians"] == res.num_gaussians
    assert "splats.ply" in b.manifest["files"] and b.manifest["timings"]["splat"] > 0
    assert len(read_splats_ply(tiny_bundle / "splats.ply")) == res.num_gaussians

    # resume from step 80 to 100: continues, does not start over
    res2 = train(_cfg(tiny_bundle, steps=100, resume=True))
    assert torch.load(cfg.checkpoint_path(), weights_only=False)["step"] == 100
    assert res2.psnr > psnr0 + 4.0


def test_backdrop_seeds_stay_within_the_gaussian_budget(tiny_bundle):
    from scenes.splats.train import initial_points

    b = read_bundle(tiny_bundle)
    views = load_views(b.root, b.cameras, 0, 8)
    for budget in (100, 400, 5000):
        xyz, rgb = initial_points(b, views, _cfg(tiny_bundle, max_gaussians=budget, backdrop=True))
        assert len(xyz) == len(rgb) <= budget
        assert np.isfinite(xyz).all() and ((rgb >= 0) & (rgb <= 1)).all()
    assert len(xyz) > 150  # the 150 fused points and shell seeds beyond them
    assert np.linalg.norm(xyz, axis=1).max() > 3.0


def test_nan_stops_training_and_keeps_last_good_checkpoint(tiny_bundle):
    cfg = _cfg(tiny_bundle, steps=40, checkpoint_every=10, refine_start=1000)

    def inject(step, params):
        if step == 25:
            params["means"].data[0] = float("nan")

    with pytest.raises(TrainingDiverged) as e:
        train(cfg, on_step=inject)
    msg = str(e.value)
    assert isinstance(e.value, InputError) and "\n" not in msg
    assert "step 25" in msg and "step 20" in msg
    ck = torch.load(cfg.checkpoint_path(), weights_only=False)
    assert ck["step"] == 20 and all(torch.isfinite(t).all() for t in ck["params"].values())


def test_resume_without_checkpoint_is_an_input_error(tmp_path, tiny_bundle):
    import shutil

    other = tmp_path / "copy"
    shutil.copytree(tiny_bundle, other)
    with pytest.raises(InputError, match="nothing to resume"):
        train(_cfg(other, resume=True))


def test_render_video_and_frame_comparison(tiny_bundle, tmp_path):
    import av
    import cv2

    from scenes.rendering.camera_paths import capture_path_cameras, orbit_cameras, read_path_file, write_path_file
    from scenes.rendering.render_video import render_frame_comparison, render_path_video

    b = read_bundle(tiny_bundle)
    orbit = orbit_cameras(b, 6, resolution=48)
    # the orbit circles the scene centre (origin) at the capture radius 3 and height 1
    assert all(abs(np.linalg.norm(c.center[:2]) - 3) < 0.05 and abs(c.center[2] - 1) < 0.05 for c in orbit)
    out = tmp_path / "orbit.mp4"
    assert render_path_video(tiny_bundle, orbit, out, fps=10, backend="warp") == 6
    with av.open(str(out)) as c:
        frames = list(c.decode(video=0))
    assert len(frames) == 6 and frames[0].width == 48
    # a path file round trip reproduces the cameras
    path = tmp_path / "path.json"
    write_path_file(path, capture_path_cameras(b, 5, 48))
    cams, fps = read_path_file(path)
    assert len(cams) == 5 and fps == 30.0 and np.allclose(cams[0].R, b.cameras[0].R)
    # the viewer's keyframe path document is read too (resampled to the requested frame count)
    from scenes.viewer._paths import path_document

    kfs = [{"position": [x, 0.0, 1.0], "wxyz": [1.0, 0.0, 0.0, 0.0], "fov_y": 1.0, "aspect": 4 / 3}
           for x in (3.0, 2.0)]
    (tmp_path / "viewer.json").write_text(json.dumps(path_document(kfs, fps=12, seconds=1.0, width=64)))
    cams, fps = read_path_file(tmp_path / "viewer.json", n_frames=7)
    assert len(cams) == 7 and fps == 12 and (cams[0].width, cams[0].height) == (64, 48)
    assert np.allclose(cams[-1].center, [2.0, 0.0, 1.0])
    # a capture frame next to its real photo
    res = render_frame_comparison(tiny_bundle, "000", tmp_path / "f.png", resolution=0, backend="warp")
    img = cv2.imread(str(tmp_path / "f.png"))
    assert img.shape == (H, 2 * W + 4, 3) and res["psnr"] > 15
    with pytest.raises(InputError, match="no capture frame"):
        render_frame_comparison(tiny_bundle, "nope", tmp_path / "g.png")


def test_cli_splat_json(tiny_bundle, capsys):
    from twin_cli.main import main

    code = main(["splat", str(tiny_bundle), "--steps", "20", "--resolution", "0", "--backend", "warp", "--quiet",
                 "--max-gaussians", "300", "--sh-degree", "0", "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"psnr", "ssim", "num_gaussians", "seconds"} <= set(out)
    assert main(["splat", str(tiny_bundle / "nope"), "--quiet"]) == 2
