"""The synthetic capture generator: its ground truth must agree with its own images, mesh and video."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import trimesh

from spatial.capture.synth import SynthConfig, load_ground_truth, synthesize_capture
from twin_kit.errors import InputError

FRAMES, W, H = 12, 160, 120


@pytest.fixture(scope="module")
def capture(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "cap"
    return synthesize_capture(SynthConfig(frames=FRAMES, width=W, height=H, seed=3), out)


@pytest.fixture(scope="module")
def marker_capture(tmp_path_factory) -> Path:
    """Large enough frames for the 0.15 m marker to be detected reliably."""
    out = tmp_path_factory.mktemp("synth_marker") / "cap"
    return synthesize_capture(SynthConfig(frames=8, width=320, height=240, seed=0), out)


def _unproject_cv(depth: np.ndarray, K: np.ndarray, R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """World points of a z-depth map, written independently of the renderer: X = R^T (z K^-1 [u v 1] - t)."""
    h, w = depth.shape
    u, v = np.meshgrid(np.arange(w), np.arange(h))
    pix = np.stack([u, v, np.ones_like(u)], -1).reshape(-1, 3).astype(np.float64)
    x_cam = (pix @ np.linalg.inv(K).T) * depth.reshape(-1, 1)
    return (x_cam - t) @ R


def _project_cv(X: np.ndarray, K: np.ndarray, R: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV's own projection (cv2.projectPoints) plus camera z."""
    uv, _ = cv2.projectPoints(X.reshape(-1, 1, 3), cv2.Rodrigues(R)[0], t.reshape(3, 1), K, None)
    return uv.reshape(-1, 2), X @ R[2] + t[2]


def test_layout_and_metadata(capture: Path):
    gt = load_ground_truth(capture)
    assert len(gt.cameras) == FRAMES
    assert sorted(p.name for p in (capture / "frames").iterdir()) == [f"{i:06d}.jpg" for i in range(FRAMES)]
    for i, cam in enumerate(gt.cameras):
        assert (cam.width, cam.height) == (W, H) and cam.dist == [] and cam.image == f"frames/{i:06d}.jpg"
        assert np.allclose(cam.R @ cam.R.T, np.eye(3), atol=1e-9) and np.linalg.det(cam.R) > 0
        assert 1.2 < cam.center[2] < 1.7 and np.linalg.norm(cam.center[:2]) < 1.6  # hand-held, around the table
        d = gt.depth(i)
        assert d.dtype == np.float32 and d.shape == (H, W) and (d > 0).all() and d.max() < 6.0  # closed room
        hfov = 2 * np.degrees(np.arctan(W / 2 / cam.fx))
        assert 65 <= hfov <= 70
    ts = [c.timestamp for c in gt.cameras]
    assert np.allclose(np.diff(ts), 1 / gt.meta["fps"])
    mesh = trimesh.load(gt.mesh_path, process=False)
    assert np.allclose(mesh.bounds, [[-2, -2, 0], [2, 2, 2.5]], atol=1e-6)
    corners = gt.marker_corners
    side = np.linalg.norm(np.diff(np.vstack([corners, corners[:1]]), axis=0), axis=1)
    assert np.allclose(side, gt.marker_size) and np.allclose(corners[:, 2], gt.table_top_z, atol=1e-3)
    # (image-x edge) x (image-y edge) points into the table when the printed side faces up, unmirrored
    n = np.cross(corners[1] - corners[0], corners[3] - corners[0])
    assert n[2] < 0


def test_depth_reprojects_consistently_between_frames(capture: Path):
    """Unproject frame i's depth, project into frame j, compare with frame j's depth where visible.

    Inverse depth is affine in pixel coordinates over a plane, so its bilinear interpolation is exact on
    the (mostly planar) scene: agreement should be at float32 precision, and a 0.1 px error in the
    principal point already gives ~1e-4.
    """
    gt = load_ground_truth(capture)
    for i, j in [(0, 1), (3, 5), (6, 4), (10, 11)]:
        ci, cj = gt.cameras[i], gt.cameras[j]
        X = _unproject_cv(gt.depth(i), ci.K, ci.R, ci.t)
        uv, z = _project_cv(X, cj.K, cj.R, cj.t)
        inside = (uv[:, 0] >= 0) & (uv[:, 0] <= W - 1) & (uv[:, 1] >= 0) & (uv[:, 1] <= H - 1) & (z > 0)
        assert inside.mean() > 0.3
        m = uv[inside].astype(np.float32)
        inv_j = cv2.remap(1.0 / gt.depth(j), m[:, :1], m[:, 1:], cv2.INTER_LINEAR).ravel()
        rel = z[inside] * inv_j - 1.0
        assert (rel < -0.05).mean() < 0.05  # little floats in front of what frame j sees (edges interpolate)
        visible = np.abs(rel) < 0.01
        assert visible.mean() > 0.6  # most points are not occluded in the neighbouring frame
        assert np.median(np.abs(rel[visible])) < 1e-5


def test_depth_matches_an_independent_ray_cast(capture: Path):
    gt = load_ground_truth(capture)
    mesh = trimesh.load(gt.mesh_path, process=False)
    cam = gt.cameras[2]
    rng = np.random.default_rng(0)
    u, v = rng.integers(0, W, 200), rng.integers(0, H, 200)
    d_cam = np.stack([(u - cam.cx) / cam.fx, (v - cam.cy) / cam.fy, np.ones(200)], -1)
    d_world = d_cam @ cam.R
    loc, idx, _ = mesh.ray.intersects_location(np.tile(cam.center, (200, 1)), d_world, multiple_hits=False)
    z = np.full(200, np.nan)
    z[idx] = (loc - cam.center) @ cam.R[2]
    depth = gt.depth(2)[v, u]
    ok = np.isfinite(z)
    assert ok.mean() > 0.95
    assert np.percentile(np.abs(z[ok] - depth[ok]), 95) < 1e-4


def test_marker_detected_at_ground_truth_corners(marker_capture: Path):
    gt = load_ground_truth(marker_capture)
    params = cv2.aruco.DetectorParameters()
    params.cornerRefinementMethod = cv2.aruco.CORNER_REFINE_SUBPIX
    detector = cv2.aruco.ArucoDetector(cv2.aruco.getPredefinedDictionary(cv2.aruco.DICT_4X4_50), params)
    errors = []
    for i, cam in enumerate(gt.cameras):
        corners, ids, _ = detector.detectMarkers(gt.image(i))
        if ids is None or not len(ids):   # OpenCV 4 says "none found" with None, OpenCV 5 with an empty array
            continue
        assert ids.ravel().tolist() == [0]
        uv, _ = _project_cv(gt.marker_corners, cam.K, cam.R, cam.t)
        errors.append(corners[0].reshape(4, 2) - uv)
    assert len(errors) >= 3, f"marker found in only {len(errors)} of {len(gt.cameras)} frames"
    e = np.concatenate(errors)
    assert np.abs(e).max() < 2.0
    assert np.abs(e.mean(axis=0)).max() < 0.3  # no half-pixel convention offset


def test_frames_are_textured(capture: Path):
    gt = load_ground_truth(capture)
    sift = cv2.SIFT_create()
    for i in (0, 5, 11):
        grey = cv2.cvtColor(gt.image(i), cv2.COLOR_RGB2GRAY).astype(np.float32)
        gx, gy = cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1)
        mag = np.hypot(gx, gy)
        assert mag.mean() > 20 and (mag > 40).mean() > 0.1  # not flat anywhere much
        assert 40 < grey.mean() < 215 and grey.std() > 20
        assert len(sift.detect(grey.astype(np.uint8), None)) > 40


def test_video_decodes_to_the_frames(capture: Path):
    import av

    gt = load_ground_truth(capture)
    with av.open(str(gt.video_path)) as c:
        s = c.streams.video[0]
        assert s.codec_context.name == "h264" and s.codec_context.pix_fmt == "yuv420p"
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == FRAMES and frames[0].shape == (H, W, 3)
    for i in (0, FRAMES - 1):
        diff = np.abs(frames[i].astype(float) - gt.image(i).astype(float)).mean()
        other = np.abs(frames[i].astype(float) - gt.image(FRAMES - 1 - i).astype(float)).mean()
        assert diff < 8 and diff < other / 2


def test_same_seed_same_capture_other_seed_differs(tmp_path: Path):
    cfg = SynthConfig(frames=3, width=64, height=48, seed=11)
    a = synthesize_capture(cfg, tmp_path / "a")
    b = synthesize_capture(cfg, tmp_path / "b")
    c = synthesize_capture(SynthConfig(frames=3, width=64, height=48, seed=12), tmp_path / "c")
    for name in ["frames/000002.jpg", "ground_truth/depth/000001.npy", "ground_truth/cameras.json",
                 "ground_truth/meta.json", "ground_truth/mesh.ply"]:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert (a / "frames/000002.jpg").read_bytes() != (c / "frames/000002.jpg").read_bytes()
    assert json.loads((a / "ground_truth/meta.json").read_text())["seed"] == 11


def test_runner_prints_one_json_object(tmp_path: Path, capsys):
    from spatial.capture.synth import run_synth

    out = tmp_path / "run"
    assert run_synth(SynthConfig(out=out, frames=2, width=48, height=32), json_out=True) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    res = json.loads(lines[-1])
    assert res["frames"] == 2 and res["seconds"] > 0 and Path(res["path"]) == out
    assert len(load_ground_truth(out).cameras) == 2


def test_refuses_bad_config_and_foreign_directories(tmp_path: Path):
    with pytest.raises(InputError):
        synthesize_capture(SynthConfig(frames=2, width=63, height=48), tmp_path / "odd")
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(InputError):
        synthesize_capture(SynthConfig(frames=1, width=32, height=32), foreign)
    assert (foreign / "notes.txt").read_text() == "keep me"
    with pytest.raises(InputError):
        load_ground_truth(foreign)
