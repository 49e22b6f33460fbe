"""+Z-up support-plane alignment, marker and distance scale, similarity application."""
import cv2
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from spatial.cameras import Camera, look_at
from spatial.sfm.align import apply_similarity, distance_scale, marker_scale, up_from_plane_and_cameras
from twin_kit.errors import InputError


def ring_cameras(n=10, radius=1.5, height=1.0, target=(0.0, 0.0, 0.1), w=640, h=480, f=600.0):
    cams = []
    for k in range(n):
        a = 2 * np.pi * k / n
        eye = np.array([radius * np.cos(a), radius * np.sin(a), height + 0.15 * np.sin(2 * a)])
        R, t = look_at(eye, np.asarray(target))
        cams.append(Camera(f"{k:03d}.png", w, h, f, f, (w - 1) / 2, (h - 1) / 2, R, t))
    return cams


def scene_points(rng):
    """Table (z = 0, 2 x 2, 3k points), a box on it, and a bigger wall and ceiling that must not win."""
    table = np.c_[rng.uniform(-1, 1, (3000, 2)), rng.normal(0, 0.002, 3000)]
    box = rng.uniform([-0.2, -0.2, 0.0], [0.2, 0.2, 0.4], (800, 3))
    wall = np.c_[np.full(5000, 2.0), rng.uniform(-2, 2, 5000), rng.uniform(-0.5, 2.5, 5000)]
    ceiling = np.c_[rng.uniform(-2, 2, (4000, 2)), np.full(4000, 2.5)]
    noise = rng.uniform(-2, 2, (300, 3))
    return np.concatenate([table, box, wall, ceiling, noise]), slice(0, 3000)


def test_up_alignment_finds_table_in_tilted_scaled_scene():
    rng = np.random.default_rng(0)
    pts, table = scene_points(rng)
    cams = ring_cameras()
    S = np.eye(4)
    S[:3, :3] = 0.37 * Rotation.from_euler("xyz", [40, -25, 70], degrees=True).as_matrix()
    S[:3, 3] = [3.0, -1.0, 2.0]
    cams_s, pts_s = apply_similarity(S, cams, pts)
    T, plane = up_from_plane_and_cameras(pts_s, cams_s)
    # inliers: the table plus the foot of the box and of the wall within the 1 %-of-extent threshold
    assert plane["found"] and 3000 / len(pts) <= plane["inlier_fraction"] < 3400 / len(pts)
    np.testing.assert_allclose(T[:3, :3] @ T[:3, :3].T, np.eye(3), atol=1e-12)  # rigid, no scale
    cams_a, pts_a = apply_similarity(T, cams_s, pts_s)
    z = pts_a[table, 2] / 0.37  # the table is z = 0 (its points have 0.002 noise)
    assert abs(np.median(z)) < 0.002 and np.percentile(np.abs(z), 95) < 0.006
    assert np.median(pts_a[3000:3800, 2]) > 0.02  # the box stands on it
    assert all(c.center[2] > 0.3 for c in cams_a)  # cameras above
    # the composite maps original +Z onto +Z
    up = (T[:3, :3] @ S[:3, :3]) @ np.array([0.0, 0.0, 1.0])
    assert np.degrees(np.arccos(up[2] / np.linalg.norm(up))) < 0.5
    x0, y0, x1, y1 = plane["extent_xy"]
    # a 2 x 2 table under an arbitrary heading spans 2 .. 2.83 units along each axis (times the 0.37 scale)
    assert 1.8 < (x1 - x0) / 0.37 < 3.3 and 1.8 < (y1 - y0) / 0.37 < 3.3
    assert plane["tilt_from_camera_up_deg"] < 10 and abs(plane["centroid"][2]) < 1e-3


def test_up_alignment_falls_back_to_camera_up_without_a_plane():
    rng = np.random.default_rng(1)
    blob = rng.normal(size=(2000, 3)) * [0.3, 0.3, 0.3]
    cams = ring_cameras(height=2.0)
    T, plane = up_from_plane_and_cameras(blob, cams, min_inlier_fraction=0.5)
    assert not plane["found"]
    assert np.degrees(np.arccos(T[2, :3] @ [0.0, 0.0, 1.0])) < 5  # camera up is close to the true up here


def render_marker_views(marker_world=0.6, views=5, dictionary=cv2.aruco.DICT_4X4_50, marker_id=7):
    """Views of a marker texture lying on z = 0 (side `marker_world` units), by plane homography."""
    n, pad = 240, 40
    tex = cv2.aruco.generateImageMarker(cv2.aruco.getPredefinedDictionary(dictionary), marker_id, n)
    tex = cv2.copyMakeBorder(tex, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=255)
    a = marker_world / n
    o = (pad - 0.5) * a + marker_world / 2  # texel centres at integers: the black edge is at pad - 0.5
    A = np.array([[a, 0, -o], [0, -a, o], [0, 0, 1]])  # texture pixel -> plane (x, y); y flipped: seen from above
    rng = np.random.default_rng(3)
    cams, imgs = [], []
    for k, ang in enumerate(np.linspace(0, 1.6, views)):
        eye = np.array([1.2 * np.cos(ang), 1.2 * np.sin(ang), 0.9 + 0.1 * k])
        R, t = look_at(eye, np.array([0.05, -0.03, 0.0]))
        cam = Camera(f"{k:03d}.png", 640, 480, 600.0, 610.0, 321.0, 238.0, R, t)
        H = cam.K @ np.column_stack([R[:, 0], R[:, 1], t]) @ A
        img = cv2.warpPerspective(tex, H, (640, 480), flags=cv2.INTER_LINEAR, borderValue=128)
        img = np.clip(img + rng.normal(0, 2, img.shape), 0, 255).astype(np.uint8)
        cams.append(cam)
        imgs.append(np.repeat(img[..., None], 3, axis=2))
    return imgs, cams


def test_marker_scale_recovers_metres_within_one_percent():
    imgs, cams = render_marker_views(marker_world=0.6)
    res = marker_scale(imgs, cams, marker_size_m=0.15)
    assert res is not None and res.source == "marker"
    assert res.scale == pytest.approx(0.15 / 0.6, rel=0.01)
    assert res.n_views == 5 and res.n_markers == 1 and res.reprojection_px < 1.0 and res.rel_std < 0.01
    assert res.markers[0]["dictionary"] == "DICT_4X4_50" and res.markers[0]["id"] == 7
    # images at half resolution: cameras are rescaled to match, the scale is unchanged
    small = [cv2.resize(i, (320, 240), interpolation=cv2.INTER_AREA) for i in imgs]
    res2 = marker_scale(small, cams, marker_size_m=0.15)
    assert res2 is not None and res2.scale == pytest.approx(0.25, rel=0.02)


def test_marker_scale_with_lens_distortion():
    imgs, cams = render_marker_views(marker_world=0.5)
    dist = [-0.12, 0.03, 0.001, -0.0005]
    out_imgs, out_cams = [], []
    for img, cam in zip(imgs, cams):
        # distorted pixel grid -> undistorted pixel positions, sampled from the pinhole render
        u, v = np.meshgrid(np.arange(cam.width, dtype=np.float64), np.arange(cam.height, dtype=np.float64))
        grid = np.stack([u, v], -1).reshape(-1, 1, 2)
        und = cv2.undistortPoints(grid, cam.K, np.array(dist), P=cam.K).reshape(cam.height, cam.width, 2)
        warped = cv2.remap(img, und[..., 0].astype(np.float32), und[..., 1].astype(np.float32), cv2.INTER_LINEAR,
                           borderValue=(128, 128, 128))
        out_imgs.append(warped)
        out_cams.append(Camera(**{**cam.__dict__, "dist": dist}))
    res = marker_scale(out_imgs, out_cams, marker_size_m=0.1)
    assert res is not None and res.scale == pytest.approx(0.2, rel=0.01)
    ignored = marker_scale(out_imgs, cams, marker_size_m=0.1)  # same pixels read as pinhole: worse
    assert ignored is None or ignored.reprojection_px > res.reprojection_px


def test_marker_scale_apriltag_and_too_few_views():
    imgs, cams = render_marker_views(marker_world=0.5, views=3, dictionary=cv2.aruco.DICT_APRILTAG_36h11, marker_id=3)
    res = marker_scale(imgs, cams, marker_size_m=0.1)
    assert res is not None and res.scale == pytest.approx(0.2, rel=0.01)
    assert res.markers[0]["dictionary"] == "DICT_APRILTAG_36h11"
    assert marker_scale(imgs[:1], cams[:1], 0.1) is None
    blank = [np.full_like(i, 128) for i in imgs]
    assert marker_scale(blank, cams, 0.1) is None


def test_distance_scale_and_similarity_keep_projections():
    cams = ring_cameras(4)
    d = np.linalg.norm(cams[0].center - cams[2].center)
    res = distance_scale(cams, "000.png", 2, metres=1.2)
    assert res.scale == pytest.approx(1.2 / d)
    with pytest.raises(InputError):
        distance_scale(cams, "000.png", "nope.png", 1.0)
    with pytest.raises(InputError):
        distance_scale(cams, 0, 0, 1.0)
    pts = np.random.default_rng(0).normal(size=(20, 3)) * 0.2
    S = res.matrix @ np.block([[Rotation.from_euler("z", 30, degrees=True).as_matrix(), np.ones((3, 1))],
                               [np.zeros((1, 3)), np.ones((1, 1))]])
    cams2, pts2 = apply_similarity(S, cams, pts)
    np.testing.assert_allclose(np.linalg.norm(cams2[0].center - cams2[2].center), 1.2, rtol=1e-12)
    for a, b in zip(cams, cams2):
        pa = (a.K @ (a.R @ pts.T + a.t[:, None])).T
        pb = (b.K @ (b.R @ pts2.T + b.t[:, None])).T
        np.testing.assert_allclose(pa[:, :2] / pa[:, 2:], pb[:, :2] / pb[:, 2:], atol=1e-9)
