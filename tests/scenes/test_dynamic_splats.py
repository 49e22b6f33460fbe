"""Dynamic splats: the bundle's dynamic/ round trip and its refusals, and `twin splat --dynamic` on a tiny
moving scene, where the deformation must beat the same run's static baseline."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from scenes.dynamic.deformation import DeformationConfig, DeformationField
from scenes.dynamic.model import DynamicSplats, TimeAxis, load_dynamic, save_dynamic, time_axis
from spatial import BundleError, BundlePaths, read_bundle, updating_bundle
from tests.support.moving_bundle import make_moving_bundle
from tests.support.small_bundle import make_bundle, small_gaussians
from twin_kit import InputError


def _moving_field(seed: int = 0) -> DeformationField:
    torch.manual_seed(seed)
    f = DeformationField(DeformationConfig(resolution=6, time_resolution=5, features=4, width=16,
                                           bounds=[-0.5, -0.5, -0.5, 0.5, 0.5, 0.5]))
    with torch.no_grad():
        for head in (f.d_xyz, f.d_rot, f.d_scale):
            head[-1].weight.normal_(0, 0.1)
        for tp in f.grid.time:
            tp.add_(torch.randn_like(tp) * 0.3)
    return f


@pytest.fixture()
def written(tmp_path: Path) -> tuple[Path, DynamicSplats]:
    root = make_bundle(tmp_path / "b", n=300)
    dyn = DynamicSplats(small_gaussians(300), _moving_field(), TimeAxis(1.5, 4.5))
    with updating_bundle(root) as (tmp, _):
        save_dynamic(tmp, dyn, {"psnr": 30.0})
    return root, dyn


def test_round_trip_gives_the_same_gaussians_at_every_time(written):
    root, dyn = written
    b = read_bundle(root)
    assert "dynamic/" in b.manifest["files"]
    back = load_dynamic(root)
    assert back.time == dyn.time and back.field.cfg == dyn.field.cfg
    for t in (0.0, 0.31, 1.0):
        a, c = dyn.at(t), back.at(t)
        for x, y in zip(a.tensors(), c.tensors()):
            assert torch.equal(x, y)
    assert not torch.allclose(dyn.at(0.0).means, dyn.at(1.0).means)  # the field does move things
    assert back.time.normalise(3.0) == 0.5 and back.time.normalise(9.0) == 1.0


def test_damaged_or_foreign_dynamic_data_is_refused_with_a_reason(written):
    root, _ = written
    paths = BundlePaths(root)
    doc = json.loads(paths.dynamic_config.read_text())
    paths.dynamic_config.write_text(json.dumps({**doc, "version": 99}))
    with pytest.raises(BundleError, match="version 99"):
        load_dynamic(root)
    paths.dynamic_config.write_text("{not json")
    with pytest.raises(BundleError, match="damaged"):
        load_dynamic(root)
    paths.dynamic_config.write_text(json.dumps({**doc, "deformation": {**doc["deformation"], "width": 8}}))
    with pytest.raises(InputError, match="do not fit"):
        load_dynamic(root)
    paths.dynamic_config.write_text(json.dumps(doc))
    paths.dynamic_deformation.write_bytes(b"\x00" * 7)
    with pytest.raises(BundleError, match="damaged deformation"):
        load_dynamic(root)
    paths.dynamic_deformation.unlink()
    with pytest.raises(BundleError, match="deformation weights"):
        load_dynamic(root)
    with pytest.raises(BundleError, match="no dynamic splats"):
        load_dynamic(make_bundle(root.parent / "plain", n=50))


def test_time_axis_from_timestamps_or_from_frame_order():
    from spatial import Camera

    cams = [Camera(f"f{i}", 8, 8, 5.0, 5.0, 3.5, 3.5, timestamp=2.0 + 0.5 * i) for i in (2, 0, 1)]
    axis, times = time_axis(cams)
    assert (axis.start, axis.end, axis.units) == (2.0, 3.0, "seconds") and times == [1.0, 0.0, 0.5]
    cams = [Camera(f"f{i}", 8, 8, 5.0, 5.0, 3.5, 3.5) for i in (2, 0, 1, 3)]
    axis, times = time_axis(cams)
    assert axis.units == "frames" and np.allclose(times, [2 / 3, 0.0, 1 / 3, 1.0])


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, dict]:
    import contextlib
    import io

    from scenes.splats.cli import run_splat
    from scenes.splats.train_config import SplatConfig

    root = make_moving_bundle(tmp_path_factory.mktemp("moving") / "b", frames=16)
    cfg = SplatConfig(bundle=root, dynamic=True, steps=300, resolution=0, sh_degree=0, max_gaussians=800,
                      backdrop=False, eval_every_n=4, refine_start=50, refine_every=50, warmup_fraction=0.2,
                      plane_levels=2, plane_resolution=16, threads=1, quiet=True)  # small planes: a 48x36 scene
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert run_splat(cfg, json_out=True) == 0
    return root, json.loads(out.getvalue().strip().splitlines()[-1])


def test_dynamic_splats_beat_the_static_baseline_on_a_moving_scene(trained):
    root, res = trained
    assert res["psnr"] > 23 and res["psnr"] > res["psnr_static"] + 2.0, res
    assert res["steps"] == 300 and res["warmup_steps"] == 60 and res["render_fps"] > 0
    assert 0 < res["seconds"] and 0 < res["seconds_static"]
    m = read_bundle(root).manifest
    assert m["metrics"]["splat_dynamic"]["psnr"] == res["psnr"] and "dynamic/" in m["files"]
    assert not BundlePaths(root).splats.exists()  # the static splats are not written by --dynamic


def test_trained_dynamic_splats_reload_and_render_the_capture_times(trained):
    """The ball (red) is where the capture saw it: left at time 0, right at time 1 (it moved +x)."""
    from scenes.splats.train import render_params
    from tests.support.moving_bundle import cameras

    root, _ = trained
    dyn = load_dynamic(root)
    assert dyn.time.units == "seconds" and dyn.time.end == pytest.approx(1.5)
    cam = cameras(16)[0]
    xs = []
    for t in (0.0, 1.0):
        g = dyn.at(t)
        params = dict(zip(("means", "quats", "log_scales", "opacity_logits", "sh_dc", "sh_rest"), g.tensors()))
        img = render_params(params, cam, backend="warp").image
        red = (img[..., 0] > 0.6) & (img[..., 1] < 0.3) & (img[..., 2] < 0.3)
        assert red.sum() > 10
        xs.append(float(torch.nonzero(red)[:, 1].float().mean()))
    assert xs[1] - xs[0] > 5  # pixels


def test_usd_export_writes_time_samples_of_every_gaussian(written):
    from pxr import Usd, UsdVol

    from scenes.export.formats import export_bundle

    root, dyn = written
    out = export_bundle(root, {"usd"}, time_samples=4)
    stage = Usd.Stage.Open(out["usd"])
    assert (stage.GetStartTimeCode(), stage.GetEndTimeCode()) == (0.0, 3.0)
    assert stage.GetTimeCodesPerSecond() == pytest.approx(1.0)  # 3 codes over the 3 s capture
    pf = UsdVol.ParticleField3DGaussianSplat(stage.GetPrimAtPath("/World/Splats"))
    assert pf.GetPositionsAttr().GetTimeSamples() == [0.0, 1.0, 2.0, 3.0]
    for code, t in ((0.0, 0.0), (2.0, 2 / 3), (3.0, 1.0)):
        g = dyn.at(t)
        pos = np.array(pf.GetPositionsAttr().Get(code))
        assert np.allclose(pos, g.means.numpy(), atol=1e-6)
        q = np.array([[x.GetReal(), *x.GetImaginary()] for x in pf.GetOrientationsAttr().Get(code)])
        qn = g.quats.numpy() / np.linalg.norm(g.quats.numpy(), axis=1, keepdims=True)
        assert np.allclose(np.abs((q * qn).sum(1)), 1.0, atol=1e-5)
        assert np.allclose(np.array(pf.GetScalesAttr().Get(code)), g.scales.numpy(), rtol=1e-5)
    # between samples USD interpolates linearly: halfway between codes 0 and 1
    mid = np.array(pf.GetPositionsAttr().Get(0.5))
    assert np.allclose(mid, (dyn.at(0.0).means.numpy() + dyn.at(1 / 3).means.numpy()) / 2, atol=1e-5)
    assert len(pf.GetOpacitiesAttr().GetTimeSamples()) == 0  # constant over time


def test_twin_export_time_samples_put_moving_gaussians_on_the_stage(written, tmp_path):
    """`twin export B --usd --time-samples 5 --out DIR`: the stage read back with pxr moves its Gaussians."""
    import contextlib
    import io

    from pxr import Usd, UsdVol

    from scenes.export.cli import ExportConfig, run_export

    root, dyn = written
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert run_export(ExportConfig(bundle=root, usd=True, time_samples=5, out=tmp_path / "x"),
                          json_out=True) == 0
    stage = Usd.Stage.Open(json.loads(out.getvalue().strip().splitlines()[-1])["written"]["usd"])
    pf = UsdVol.ParticleField3DGaussianSplat(stage.GetPrimAtPath("/World/Splats"))
    first, last = (np.array(pf.GetPositionsAttr().Get(c)) for c in (0.0, 4.0))
    assert first.shape == (300, 3) and np.abs(last - first).max() > 2e-3  # the test field moves a few mm
    assert np.allclose(last, dyn.at(1.0).means.numpy(), atol=1e-6)
    with pytest.raises(InputError, match="no dynamic splats"):
        run_export(ExportConfig(bundle=make_bundle(tmp_path / "plain", n=50), usd=True, time_samples=3))


def test_render_time_runs_the_capture_along_the_path(trained, tmp_path):
    import contextlib
    import io

    import av

    from scenes.splats.cli import run_render
    from scenes.splats.train_config import RenderConfig

    root, _ = trained
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert run_render(RenderConfig(bundle=root, time=True, camera_path="frames", num_frames=6, resolution=0,
                                       out=tmp_path / "m.mp4", quiet=True), json_out=True) == 0
        assert run_render(RenderConfig(bundle=root, time=True, frame="0012", out=tmp_path / "f.png"),
                          json_out=True) == 0
    video, frame = (json.loads(line) for line in out.getvalue().strip().splitlines()[-2:])
    assert video["frames"] == 6 and frame["time"] == pytest.approx(0.8)  # frame 12 of 0..15
    assert frame["psnr"] > 22  # a training frame at its own time
    with av.open(str(tmp_path / "m.mp4")) as c:
        frames = [f.to_ndarray(format="rgb24").astype(float) for f in c.decode(video=0)]
    assert len(frames) == 6 and np.abs(frames[0] - frames[-1]).mean() > 2  # the ball moved (and the camera)
    with pytest.raises(InputError, match="no dynamic splats"):
        run_render(RenderConfig(bundle=make_bundle(tmp_path / "plain", n=50), time=True, out=tmp_path / "x.mp4"))
