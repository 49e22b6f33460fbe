"""The scene bundle contract: versioned manifest, atomic writes, clear refusals."""
import json

import numpy as np
import pytest

from spatial.bundle import (
    BundleError,
    finalize_manifest,
    new_manifest,
    read_bundle,
    staged_bundle,
    updating_bundle,
    write_cameras,
)
from spatial.cameras import Camera, look_at


def _make(dest, overwrite=False, marker="a"):
    with staged_bundle(dest, overwrite=overwrite) as tmp:
        R, t = look_at([1.0, 2.0, 1.5], [0, 0, 0])
        write_cameras(tmp, [Camera("000.jpg", 64, 48, 50.0, 50.0, 31.5, 23.5, R, t, image="images/000.jpg")])
        (tmp / "images").mkdir()
        (tmp / "images" / "000.jpg").write_bytes(b"x")
        (tmp / "marker.txt").write_text(marker)
        finalize_manifest(tmp, new_manifest(input="test"))
    return dest


def test_roundtrip_and_manifest(tmp_path):
    b = read_bundle(_make(tmp_path / "s"))
    assert b.manifest["version"] == 1 and b.manifest["up_axis"] == "+Z"
    assert "cameras.json" in b.manifest["files"] and "images/" in b.manifest["files"]
    cam = b.cameras[0]
    assert np.allclose(cam.center, [1.0, 2.0, 1.5])
    assert not list(tmp_path.glob(".s.tmp-*"))


def test_refuses_existing_without_overwrite(tmp_path):
    _make(tmp_path / "s")
    with pytest.raises(BundleError, match="already exists"):
        _make(tmp_path / "s", marker="b")
    _make(tmp_path / "s", overwrite=True, marker="b")
    assert (tmp_path / "s" / "marker.txt").read_text() == "b"


def test_failure_leaves_existing_bundle_untouched(tmp_path):
    _make(tmp_path / "s")
    with pytest.raises(RuntimeError):
        with staged_bundle(tmp_path / "s", overwrite=True) as tmp:
            (tmp / "marker.txt").write_text("half-written")
            raise RuntimeError("boom")
    assert (tmp_path / "s" / "marker.txt").read_text() == "a"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]


def test_refuses_unknown_version_and_damage(tmp_path):
    d = _make(tmp_path / "s")
    m = json.loads((d / "scene.json").read_text())
    m["version"] = 99
    (d / "scene.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match="version 99"):
        read_bundle(d)
    (d / "scene.json").write_text("{not json")
    with pytest.raises(BundleError, match="damaged manifest"):
        read_bundle(d)
    d2 = _make(tmp_path / "t")
    (d2 / "marker.txt").unlink()
    with pytest.raises(BundleError, match="marker.txt"):
        read_bundle(d2)
    with pytest.raises(BundleError, match="no such bundle"):
        read_bundle(tmp_path / "missing")


def test_update_is_atomic_and_preserves_files(tmp_path):
    d = _make(tmp_path / "s")
    with updating_bundle(d) as (tmp, manifest):
        (tmp / "splats.ply").write_bytes(b"ply")
        (tmp / "marker.txt").unlink()
        (tmp / "marker.txt").write_text("new")
        manifest["metrics"]["x"] = 1
    b = read_bundle(d)
    assert "splats.ply" in b.manifest["files"] and b.manifest["metrics"]["x"] == 1
    assert (d / "marker.txt").read_text() == "new" and (d / "images" / "000.jpg").read_bytes() == b"x"
    with pytest.raises(ValueError):
        with updating_bundle(d) as (tmp, manifest):
            (tmp / "marker.txt").unlink()
            raise ValueError("fail")
    assert (d / "marker.txt").read_text() == "new"


def test_camera_transform_and_scaling():
    R, t = look_at([2.0, 0.0, 1.0], [0, 0, 0.5])
    cam = Camera("a", 100, 80, 90.0, 90.0, 49.5, 39.5, R, t)
    X = np.array([0.1, 0.2, 0.4])
    p = cam.K @ (cam.R @ X + cam.t)
    S = np.eye(4)
    ang = 0.3
    S[:3, :3] = 2.0 * np.array([[np.cos(ang), -np.sin(ang), 0], [np.sin(ang), np.cos(ang), 0], [0, 0, 1]])
    S[:3, 3] = [1, 2, 3]
    c2 = cam.transformed(S)
    X2 = S[:3, :3] @ X + S[:3, 3]
    p2 = c2.K @ (c2.R @ X2 + c2.t)
    assert np.allclose(p[:2] / p[2], p2[:2] / p2[2])
    half = cam.scaled(0.5)
    assert (half.width, half.height) == (50, 40) and np.isclose(half.cx, 24.5)
