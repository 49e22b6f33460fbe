"""COLMAP and nerfstudio round trips, pixel conventions, and reference auto-detection."""

import cv2
import numpy as np
import pycolmap
import pytest
from support.data import BIRD

from spatial.bundle import write_cameras
from spatial.cameras import Camera, look_at
from spatial.interop.colmap_io import read_colmap, write_colmap
from spatial.interop.nerfstudio_io import read_transforms, write_transforms
from spatial.interop.reference import read_reference, reference_kind
from twin_kit.errors import InputError

DISTS = ([], [0.1, -0.05, 0.001, -0.002], [0.1, -0.05, 0.001, -0.002, 0.01], [0.0, 0.0, 0.0, 0.0])


def cameras():
    out = []
    for k, dist in enumerate(DISTS * 2):
        a = 0.7 * k
        R, t = look_at(np.array([2 * np.cos(a), 2 * np.sin(a), 1.0 + 0.1 * k]), np.array([0.1, -0.2, 0.3]))
        out.append(Camera(f"{k:03d}.jpg", 640 + k, 480, 500.0 + k, 505.5 - k, 320.25 + k, 239.75, R, t,
                          dist=list(dist), image=f"images/{k:03d}.jpg"))
    return out


def assert_same(a: list[Camera], b: list[Camera], tol=1e-12):
    assert [c.name for c in a] == [c.name for c in b]
    for x, y in zip(a, b):
        assert (x.width, x.height) == (y.width, y.height)
        np.testing.assert_allclose([x.fx, x.fy, x.cx, x.cy], [y.fx, y.fy, y.cx, y.cy], rtol=0, atol=tol)
        np.testing.assert_allclose(x.R, y.R, rtol=0, atol=tol)
        np.testing.assert_allclose(x.t, y.t, rtol=0, atol=tol)
        assert len(x.dist) == len(y.dist)
        np.testing.assert_allclose(x.dist, y.dist, rtol=0, atol=0)


@pytest.mark.parametrize("text", [False, True])
def test_colmap_round_trip(tmp_path, text):
    cams = cameras()
    rng = np.random.default_rng(0)
    pts, cols = rng.normal(size=(300, 3)), rng.integers(0, 256, size=(300, 3), dtype=np.uint8)
    write_colmap(tmp_path / "m", cams, pts, cols, text=text)
    got, gp, gc = read_colmap(tmp_path / "m")
    assert_same(cams, got)
    order = np.lexsort(gp.T)  # COLMAP does not promise point order
    np.testing.assert_allclose(gp[order], pts[np.lexsort(pts.T)], atol=1e-12 if not text else 1e-9)
    np.testing.assert_array_equal(gc[order], cols[np.lexsort(pts.T)])


def test_colmap_pixel_convention_matches_pycolmap_projection(tmp_path):
    cams = cameras()
    write_colmap(tmp_path, cams)
    rec = pycolmap.Reconstruction(str(tmp_path))
    X = np.array([[0.05, -0.1, 0.25], [0.3, 0.1, 0.4]])
    for im in rec.images.values():
        cam = next(c for c in cams if c.name == im.name)
        colmap_px = np.array([im.project_point(x) for x in X])
        cv_px = cv2.projectPoints(X, cv2.Rodrigues(cam.R)[0], cam.t, cam.K, np.array(cam.dist or [0.0] * 4))[0]
        np.testing.assert_allclose(colmap_px, cv_px.reshape(-1, 2) + 0.5, atol=1e-6)


def test_colmap_models_and_refusals(tmp_path):
    rec = pycolmap.Reconstruction()
    models = {1: ("SIMPLE_RADIAL", [500, 320, 240, 0.1]), 2: ("RADIAL", [500, 320, 240, 0.1, 0.02]),
              3: ("OPENCV_FISHEYE", [500, 500, 320, 240, 0.1, 0.0, 0.0, 0.0])}
    for i, (model, params) in models.items():
        rec.add_camera_with_trivial_rig(pycolmap.Camera(model=model, width=640, height=480, params=params,
                                                        camera_id=i))
        rec.add_image_with_trivial_frame(pycolmap.Image(name=f"sub/{i}.jpg", camera_id=i, image_id=i),
                                         pycolmap.Rigid3d(np.hstack([np.eye(3), [[0], [0], [i]]])))
    rec.write(str(tmp_path))
    with pytest.raises(InputError, match="OPENCV_FISHEYE"):
        read_colmap(tmp_path)
    got = {c.name: c for c in read_colmap(tmp_path, poses_only=True)[0]}
    assert got["1.jpg"].dist == [0.1, 0.0, 0.0, 0.0] and got["2.jpg"].dist == [0.1, 0.02, 0.0, 0.0]
    assert got["3.jpg"].dist == [] and got["1.jpg"].image == "sub/1.jpg"
    assert got["1.jpg"].cx == 319.5 and got["3.jpg"].t[2] == 3


def test_transforms_round_trip_and_opengl_convention(tmp_path):
    cams = cameras()
    cams[0].timestamp = 1.25
    p = write_transforms(tmp_path, cams)
    got = read_transforms(p)
    assert_same(cams, got, tol=1e-12)
    assert got[0].timestamp == 1.25 and got[1].image == "images/001.jpg"
    import json

    f = json.loads(p.read_text())["frames"][0]
    M = np.array(f["transform_matrix"])
    np.testing.assert_allclose(M[:3, 3], cams[0].center, atol=1e-12)
    back = M[:3, 2]  # OpenGL camera z points backwards: from the target towards the eye
    assert back @ (cams[0].center - np.array([0.1, -0.2, 0.3])) > 0
    assert f["cx"] == pytest.approx(cams[0].cx + 0.5)


def test_read_reference_detects_formats(tmp_path):
    cams = cameras()[:4]
    write_colmap(tmp_path / "proj" / "sparse" / "0", cams)
    write_transforms(tmp_path / "ns" / "transforms.json", cams)
    (tmp_path / "bundle").mkdir()
    write_cameras(tmp_path / "bundle", cams)
    for sub, kind in (("proj", "colmap"), ("proj/sparse/0", "colmap"), ("ns", "transforms"),
                      ("ns/transforms.json", "transforms"), ("bundle", "bundle")):
        assert reference_kind(tmp_path / sub) == kind
        assert [c.name for c in read_reference(tmp_path / sub)] == [c.name for c in cams]
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("hi")
    for bad in ("junk", "junk/notes.txt", "missing"):
        with pytest.raises(InputError):
            read_reference(tmp_path / bad)
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(InputError, match="transforms"):
        read_reference(tmp_path / "broken.json")


def test_bird_model_reads_and_survives_both_formats(tmp_path):
    cams, pts, cols = read_colmap(BIRD)
    assert len(cams) == 184 and len(pts) == 6271 and cols.dtype == np.uint8
    assert cams[0].name == "001.jpg" and cams[0].cx == 271.5 and cams[0].dist == []
    write_colmap(tmp_path / "c", cams, pts, cols)
    assert_same(cams, read_colmap(tmp_path / "c")[0])
    write_transforms(tmp_path / "t.json", cams)
    assert_same(cams, read_transforms(tmp_path / "t.json"))
