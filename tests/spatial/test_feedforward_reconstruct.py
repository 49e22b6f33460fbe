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

from spatial.bundle import read_bundle, read_depth, read_points
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
