"""The moving synthetic capture (`twin capture synth --dynamic`) and its ground-truth bundle: masks, part poses and
depth agree with each other frame to frame; the bundle holds the true cameras and points on the surfaces."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import trimesh

from spatial.bundle import read_bundle
from spatial.bundle_files import read_points
from spatial.capture.synth import SynthConfig, load_ground_truth, synthesize_capture
from spatial.capture.synth.geometry import project, unproject
from twin_kit.errors import InputError

FRAMES, W, H = 6, 128, 96


@pytest.fixture(scope="module")
def capture(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth_dyn") / "cap"
    return synthesize_capture(SynthConfig(frames=FRAMES, width=W, height=H, seed=1, dynamic=True,
                                          orbit_radius_m=1.0, exposure_s=0.0), out)


def test_masks_and_motion_describe_three_moving_parts(capture: Path):
    gt = load_ground_truth(capture)
    assert gt.dynamic and gt.meta["dynamic"] == ["sliding_box", "spinning_box", "chest_lid"]
    motion = gt.motion()
    assert [f["time"] for f in motion["frames"]] == pytest.approx(np.linspace(0, 1, FRAMES))
    first, last = motion["frames"][0]["poses"], motion["frames"][-1]["poses"]
    assert np.allclose(first["sliding_box"], np.eye(4))  # time 0 is the rest pose
    assert np.allclose(np.array(last["sliding_box"])[:3, 3], [0.3, 0, 0])
    assert np.allclose(np.array(last["spinning_box"])[:3, :3], np.diag([-1, -1, 1]), atol=1e-9)  # half a turn
    seen = set()
    for i in range(FRAMES):
        m = gt.moving_mask(i)
        assert m.shape == (H, W) and m.dtype == np.uint8 and m.max() <= 3
        assert 0.005 < (m > 0).mean() < 0.3  # the objects are in view, the room is most of it
        seen |= set(np.unique(m).tolist())
    assert seen == {0, 1, 2, 3}


def test_depth_follows_each_part_from_frame_to_frame(capture: Path):
    """A pixel on moving part k, unprojected at frame i, taken back to the part's rest pose and out again at
    frame j's pose, lands where frame j sees part k at that depth (static pixels: the plain reprojection)."""
    gt = load_ground_truth(capture)
    poses = [{k: np.array(v) for k, v in f["poses"].items()} for f in gt.motion()["frames"]]
    names = gt.meta["dynamic"]
    for i, j in [(0, 1), (2, 3), (5, 4)]:
        X = unproject(gt.depth(i), gt.cameras[i]).reshape(-1, 3)
        part = gt.moving_mask(i).reshape(-1).astype(int) - 1
        Y = X.copy()
        for k, name in enumerate(names):
            sel = part == k
            Ti, Tj = poses[i][name], poses[j][name]
            rest = (X[sel] - Ti[:3, 3]) @ Ti[:3, :3]
            Y[sel] = rest @ Tj[:3, :3].T + Tj[:3, 3]
        uv, z = project(Y, gt.cameras[j])
        u, v = np.round(uv[:, 0]).astype(int), np.round(uv[:, 1]).astype(int)
        inside = (u >= 0) & (u < W) & (v >= 0) & (v < H) & (z > 0) & (gt.depth(i).reshape(-1) > 0)
        m = uv[inside].astype(np.float32)
        inv_j = cv2.remap(1.0 / np.maximum(gt.depth(j), 1e-6), m[:, :1], m[:, 1:], cv2.INTER_LINEAR).ravel()
        rel = z[inside] * inv_j - 1.0
        same = gt.moving_mask(j)[v[inside], u[inside]].astype(int) - 1 == part[inside]
        checked = 0
        for k in range(-1, len(names)):
            on = (part[inside] == k) & same
            if on.sum() < 20:
                continue
            vis = np.abs(rel[on]) < 0.02  # not hidden behind something else in frame j
            assert vis.mean() > 0.4 and np.median(np.abs(rel[on][vis])) < 1e-4, (i, j, k, vis.mean())
            checked += 1
        assert checked >= 2  # the static room and at least one moving part


def test_static_capture_is_unchanged_by_the_moving_layout(tmp_path: Path):
    """Without --dynamic the room has its original objects (no masks, no motion file)."""
    out = synthesize_capture(SynthConfig(frames=1, width=48, height=32), tmp_path / "s")
    gt = load_ground_truth(out)
    assert not gt.dynamic and not (out / "ground_truth" / "motion.json").exists()
    with pytest.raises(InputError):
        gt.moving_mask(0)
    dyn = trimesh.load(synthesize_capture(SynthConfig(frames=1, width=48, height=32, dynamic=True),
                                          tmp_path / "d") / "ground_truth" / "mesh.ply", process=False)
    static = trimesh.load(gt.mesh_path, process=False)
    assert len(static.faces) != len(dyn.faces)


def test_ground_truth_bundle_holds_true_cameras_and_surface_points(capture: Path, tmp_path: Path):
    from spatial.capture.synth.gt_bundle import write_ground_truth_bundle

    gt = load_ground_truth(capture)
    b = read_bundle(write_ground_truth_bundle(capture, tmp_path / "b"))
    assert b.metric and len(b.cameras) == FRAMES
    for c, g in zip(b.cameras, gt.cameras):
        assert np.allclose(c.world_to_cam, g.world_to_cam) and c.timestamp == g.timestamp
        assert (b.root / c.image).read_bytes() == (capture / g.image).read_bytes()
    xyz, rgb = read_points(b.paths.points)
    assert len(xyz) > 1000 and rgb.std() > 10
    import open3d as o3d

    mesh = trimesh.load(gt.mesh_path, process=False)
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(np.asarray(mesh.vertices, np.float32)),
                        o3d.core.Tensor(np.asarray(mesh.faces, np.uint32)))
    dist = scene.compute_distance(o3d.core.Tensor(xyz.astype(np.float32))).numpy()
    assert np.median(dist) < 1e-3 and (dist < 1e-3).mean() > 0.9  # on the surfaces (but moving parts off rest)
    assert b.manifest["provenance"]["input_kind"] == "synthetic ground truth" and b.paths.collision.exists()


def test_cli_writes_capture_and_bundle_and_refuses_a_foreign_bundle_folder(tmp_path: Path, capsys):
    from spatial.capture.synth import run_synth

    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep")
    with pytest.raises(InputError, match="--bundle"):
        run_synth(SynthConfig(out=tmp_path / "c", frames=2, width=48, height=32, dynamic=True, bundle=foreign))
    assert (foreign / "notes.txt").read_text() == "keep" and not (tmp_path / "c").exists()
    cfg = SynthConfig(out=tmp_path / "c", frames=2, width=48, height=32, dynamic=True, bundle=tmp_path / "b")
    assert run_synth(cfg, json_out=True) == 0
    assert run_synth(cfg, json_out=True) == 0  # replaces its own earlier bundle
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["dynamic"] and Path(res["bundle"]) == tmp_path / "b" and len(read_bundle(res["bundle"]).cameras) == 2


def test_texture_scale_makes_surfaces_smoother(tmp_path: Path):
    """--texture-scale enlarges every pattern: less fine detail (image gradient energy) in the same view."""
    energy = []
    for scale in (1.0, 3.0):
        out = synthesize_capture(SynthConfig(frames=1, width=160, height=120, noise=0.0, texture_scale=scale),
                                 tmp_path / f"s{scale}")
        grey = cv2.cvtColor(load_ground_truth(out).image(0), cv2.COLOR_RGB2GRAY).astype(np.float32)
        energy.append(np.hypot(cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1)).mean())
    assert energy[1] < 0.85 * energy[0]  # (object and shadow edges stay as sharp)
