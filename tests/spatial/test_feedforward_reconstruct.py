"""`twin reconstruct --method vggt` end to end on the CPU with a tiny network checkpoint whose heads are rigged
to known outputs (same pose for every frame, depth 2 everywhere), so the bundle can be checked analytically;
and the one-line refusals of bad options, before any work."""
from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from spatial.bundle import read_bundle
from spatial.bundle_files import read_depth, read_points
from spatial.feedforward import build_vggt, tiny_config
from spatial.feedforward.pipeline import confidence_ranks
from spatial.feedforward.weights import save_vggt_weights

FOV_H, FOV_W = 0.9, 1.1
T = (0.1, -0.2, 0.3)


def _twin(*args):
    return subprocess.run([sys.executable, "-m", "twin_cli", *map(str, args)], capture_output=True, text=True,
                          timeout=600)


@pytest.fixture(scope="module")
def rigged_weights(tmp_path_factory):
    torch.manual_seed(0)
    model = build_vggt(tiny_config())
    with torch.no_grad():
        fc2 = model.camera_head.pose_branch.fc2      # four refinements add four equal deltas
        fc2.weight.zero_()
        fc2.bias.copy_(torch.tensor([*T, 0.0, 0.0, 0.0, 1.0, FOV_H, FOV_W]) / 4)
        last = model.depth_head.scratch.output_conv2[2]
        last.weight.zero_()
        last.bias.copy_(torch.tensor([math.log(2.0), 0.0]))
    return save_vggt_weights(model, tmp_path_factory.mktemp("w") / "tiny.safetensors")


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    import cv2

    out = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    base = cv2.resize(rng.integers(0, 255, (12, 16, 3), dtype=np.uint8), (160, 120), interpolation=cv2.INTER_CUBIC)
    for i in range(4):
        cv2.imwrite(str(out / f"p{i}.jpg"), np.roll(base, 6 * i, axis=1))
    return out


def test_network_bundle_holds_the_network_cameras_and_depth(rigged_weights, photos, tmp_path):
    out = tmp_path / "twin"
    r = _twin("reconstruct", photos, "--out", out, "--method", "vggt", "--weights", rigged_weights, "--quiet",
              "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["registered"] == summary["frames"] == 4 and not summary["metric"]
    b = read_bundle(out)
    assert b.manifest["provenance"]["backend"] == "vggt network (tiny.safetensors)"
    network = b.manifest["metrics"]["reconstruct"]["network"]
    assert network["input_size"] == [56, 42] and network["parameters"] > 0
    assert len(b.cameras) == 4
    for c in b.cameras:
        assert (c.width, c.height) == (160, 120)
        assert c.fx == pytest.approx(80 / math.tan(FOV_W / 2), rel=1e-5)      # fov -> focal at frame size
        assert c.fy == pytest.approx(60 / math.tan(FOV_H / 2), rel=1e-5)
        assert abs(c.cx - 80) < 1.5 and abs(c.cy - 60) < 1.5
    # one pose for all frames; alignment moved the world rigidly (no scale without a marker)
    R0, t0 = b.cameras[0].R, b.cameras[0].t
    assert all(np.allclose(c.R, R0, atol=1e-9) and np.allclose(c.t, t0, atol=1e-9) for c in b.cameras)
    pts, _ = read_points(b.paths.points)
    assert len(pts) > 100
    z_cam = pts @ R0[2] + t0[2]
    assert np.allclose(z_cam, 2.0, atol=1e-4)                                 # every point at depth 2
    maps = sorted(b.paths.depth.iterdir())
    assert len(maps) == 4
    d = read_depth(maps[0])
    assert d["depth"].shape == (42, 56) and np.allclose(d["depth"], 2.0, atol=1e-5)


def test_bad_method_options_are_refused_before_any_work(rigged_weights, photos, tmp_path):
    from spatial.commands import ReconstructConfig
    from spatial.reconstruct import run_reconstruct
    from twin_kit import InputError

    out = tmp_path / "o"
    cases = [
        (dict(method="vggt"), "needs --weights"),
        (dict(method="vggt", weights=tmp_path / "missing.pt"), "no such weights file"),
        (dict(weights=rigged_weights), "--weights is for --method vggt"),
        (dict(method="vggt", weights=rigged_weights, poses=photos), "estimates the cameras itself"),
    ]
    for extra, message in cases:
        with pytest.raises(InputError, match=message):
            run_reconstruct(ReconstructConfig(input=photos, out=out, quiet=True, **extra))
        assert not out.exists()
    # through the command line: exit code 2 and one line, no traceback
    r = _twin("reconstruct", photos, "--out", out, "--method", "vggt")
    assert r.returncode == 2 and "needs --weights" in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_confidence_ranks_are_the_fraction_at_most_as_confident():
    conf = np.array([[1.5, 3.0], [1.5, 9.0]])
    assert np.allclose(confidence_ranks(conf), [[0.5, 0.75], [0.5, 1.0]])


# ---------------------------------------------------------------------------------------------------------
# Long videos (--chunk) and bundle adjustment (--refine) through the command line.


@pytest.fixture(scope="module")
def six_photos(tmp_path_factory):
    """Six views of a textured plane at depth 2, each shifted 6 px right of the one before (a camera moving
    left), which the rigged network does not see: it says every frame has the same camera."""
    import cv2

    out = tmp_path_factory.mktemp("six")
    rng = np.random.default_rng(1)
    base = cv2.resize(rng.integers(0, 255, (12, 16, 3), dtype=np.uint8), (160, 120), interpolation=cv2.INTER_CUBIC)
    for i in range(6):
        cv2.imwrite(str(out / f"p{i}.jpg"), np.roll(base, 6 * i, axis=1))
    return out


@pytest.fixture(scope="module")
def one_pass(rigged_weights, six_photos, tmp_path_factory):
    out = tmp_path_factory.mktemp("one") / "twin"
    r = _twin("reconstruct", six_photos, "--out", out, "--method", "vggt", "--weights", rigged_weights, "--quiet",
              "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    return out, json.loads(r.stdout.strip().splitlines()[-1])


def test_chunked_run_matches_the_one_pass_run_and_reports_memory(rigged_weights, six_photos, one_pass, tmp_path):
    out = tmp_path / "twin"
    r = _twin("reconstruct", six_photos, "--out", out, "--method", "vggt", "--weights", rigged_weights, "--quiet",
              "--json", "--chunk", "4", "--overlap", "2")
    assert r.returncode == 0, r.stderr[-3000:]
    net = json.loads(r.stdout.strip().splitlines()[-1])["network"]
    assert net["windows"] == [[0, 4], [2, 6]] and (net["chunk"], net["overlap"]) == (4, 2)
    (join,) = net["joins"]
    assert join["frames"] == [2, 6] and join["shared"] == 2 and join["scale"] == pytest.approx(1.0, abs=1e-6)
    mem = net["memory"]
    assert mem["peak_rss_mb"] > 50 and mem["kept_layers"] == 4
    # 4-frame windows keep 4/6 of the tokens a 6-frame pass keeps: (4 layers x frames x 17 tokens x 64) x 4 B
    assert mem["tokens_kept_mb"] == pytest.approx(4 * 4 * 17 * 64 * 4 / 2 ** 20, abs=0.006)
    assert mem["tokens_one_pass_mb"] == pytest.approx(4 * 6 * 17 * 64 * 4 / 2 ** 20, abs=0.006)
    assert one_pass[1]["network"]["windows"] == [[0, 6]] and one_pass[1]["network"]["joins"] == []
    manifest_net = read_bundle(out).manifest["metrics"]["reconstruct"]["network"]
    assert manifest_net["windows"] == net["windows"] and "peak_rss_mb" in manifest_net["memory"]
    chunked, single = read_bundle(out), read_bundle(one_pass[0])
    for a, b in zip(chunked.cameras, single.cameras, strict=True):
        assert np.allclose(a.world_to_cam, b.world_to_cam, atol=1e-6) and np.allclose(a.K, b.K)
    for name in ("p0", "p5"):
        assert np.allclose(read_depth(chunked.paths.depth_map(name))["depth"],
                           read_depth(single.paths.depth_map(name))["depth"], atol=1e-5)


def test_refine_moves_the_cameras_the_way_the_images_moved(rigged_weights, six_photos, one_pass, tmp_path):
    out = tmp_path / "twin"
    r = _twin("reconstruct", six_photos, "--out", out, "--method", "vggt", "--weights", rigged_weights, "--quiet",
              "--json", "--refine")
    assert r.returncode == 0, r.stderr[-3000:]
    ref = json.loads(r.stdout.strip().splitlines()[-1])["network"]["refine"]
    assert "skipped" not in ref and ref["tracks"] >= 100
    assert ref["reprojection_px_after"] < 0.25 * ref["reprojection_px_before"]
    b = read_bundle(out)
    assert b.manifest["metrics"]["reconstruct"]["network"]["refine"] == ref
    centres = np.stack([c.center for c in b.cameras])
    steps = np.diff(centres, axis=0)
    along_x = steps @ b.cameras[0].R[0]                      # camera 0's x axis (image right)
    assert (along_x < 0).all()                               # content moved right: the camera moved left
    assert np.all(np.abs(along_x) > 0.9 * np.linalg.norm(steps, axis=1))
    single = read_bundle(one_pass[0])                         # unrefined: one camera for every frame
    assert np.ptp(np.stack([c.center for c in single.cameras]), axis=0).max() < 1e-9


def test_chunk_and_refine_options_are_checked_before_any_work(rigged_weights, photos, tmp_path):
    from spatial.commands import ReconstructConfig
    from spatial.reconstruct import run_reconstruct
    from twin_kit import InputError

    out = tmp_path / "o"
    for extra, message in [(dict(chunk=4), "--chunk is for --method vggt"),
                           (dict(refine=True), "--refine is for --method vggt"),
                           (dict(method="vggt", weights=rigged_weights, chunk=4, overlap=4),
                            "--overlap 4 must be smaller than --chunk 4")]:
        with pytest.raises(InputError, match=message):
            run_reconstruct(ReconstructConfig(input=photos, out=out, quiet=True, **extra))
        assert not out.exists()
    with pytest.raises(InputError, match="--chunk must be 0 or an integer >= 2"):
        ReconstructConfig(input=photos, out=out, chunk=1)
