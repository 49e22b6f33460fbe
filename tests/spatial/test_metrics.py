"""Pose metrics: Umeyama, VGGT-style relative-pose AUC, ATE, AbsRel, and the bird reference against itself."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation
from support.data import BIRD

from spatial.cameras import Camera, look_at
from spatial.evaluation.metrics import auc, depth_absrel, evaluate_poses, relative_pose_errors, umeyama, umeyama_ransac
from spatial.interop.nerfstudio_io import write_transforms
from spatial.interop.reference import read_reference
from spatial.sfm.align import apply_similarity


def ring(n=12, radius=2.0):
    cams = []
    for k in range(n):
        a = 2 * np.pi * k / n
        eye = np.array([radius * np.cos(a), radius * np.sin(a), 0.6 + 0.3 * np.sin(3 * a)])
        R, t = look_at(eye, np.array([0.0, 0.0, 0.2]))
        cams.append(Camera(f"{k:03d}.jpg", 640, 480, 500.0, 500.0, 319.5, 239.5, R, t))
    return cams


def similarity(seed=0, scale=3.7):
    rng = np.random.default_rng(seed)
    S = np.eye(4)
    S[:3, :3] = scale * Rotation.random(random_state=seed).as_matrix()
    S[:3, 3] = rng.normal(size=3) * 5
    return S


def perturbed(cams, rot_deg, trans, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for c in cams:
        dR = Rotation.from_rotvec(np.radians(rot_deg) * rng.normal(size=3) / np.sqrt(3)).as_matrix()
        R = dR @ c.R
        centre = c.center + trans * rng.normal(size=3)
        out.append(Camera(c.name, c.width, c.height, c.fx, c.fy, c.cx, c.cy, R, -R @ centre))
    return out


def test_umeyama_recovers_similarity_and_ignores_outliers():
    rng = np.random.default_rng(1)
    src = rng.normal(size=(50, 3))
    S = similarity(3, scale=0.42)
    dst = src @ S[:3, :3].T + S[:3, 3]
    np.testing.assert_allclose(umeyama(src, dst), S, atol=1e-10)
    R_only = umeyama(src, dst, with_scale=False)
    np.testing.assert_allclose(R_only[:3, :3] @ R_only[:3, :3].T, np.eye(3), atol=1e-10)
    bad = dst.copy()
    bad[:8] += rng.normal(size=(8, 3)) * 10
    assert np.abs(umeyama(src, bad) - S).max() > 1e-2
    S_r, inl = umeyama_ransac(src, bad, threshold=0.05)
    np.testing.assert_allclose(S_r, S, atol=1e-8)
    assert inl.sum() == 42 and not inl[:8].any()


def test_weighted_umeyama_with_zero_weight_on_outliers_is_exact():
    rng = np.random.default_rng(2)
    src = rng.normal(size=(40, 3))
    S = similarity(5, scale=1.9)
    dst = src @ S[:3, :3].T + S[:3, 3]
    bad = dst.copy()
    bad[:10] += rng.normal(size=(10, 3)) * 10
    w = np.ones(len(src))
    w[:10] = 0.0
    assert np.abs(umeyama(src, bad) - S).max() > 1e-2                       # the outliers do pull the plain fit
    np.testing.assert_allclose(umeyama(src, bad, weights=w), S, atol=1e-10)
    np.testing.assert_allclose(umeyama(src, bad, weights=3.5 * w), S, atol=1e-10)    # only relative weight counts
    np.testing.assert_allclose(umeyama(src, dst, weights=np.ones(len(src))), umeyama(src, dst), atol=1e-12)
    with pytest.raises(ValueError, match="positive sum"):
        umeyama(src, dst, weights=np.zeros(len(src)))


def test_identical_and_similarity_copies_score_perfectly():
    ref = ring()
    for est in (ref, apply_similarity(similarity(), ref)[0]):
        m = evaluate_poses(est, ref)
        for k in (5, 15, 30):
            assert m[f"auc{k}"] == m[f"rra_auc{k}"] == m[f"rta_auc{k}"] == pytest.approx(100.0)
        assert m["registered_fraction"] == 1.0 and m["n_pairs"] == 66
        assert m["ate"] < 1e-9 and m["ate_rel"] < 1e-9


def test_auc_falls_monotonically_with_noise():
    ref = ring(16)
    scores = [evaluate_poses(perturbed(ref, r, t), ref) for r, t in [(0.5, 0.005), (2, 0.03), (6, 0.1), (15, 0.3)]]
    for key in ("auc30", "auc5", "rra_auc30", "rta_auc30"):
        vals = [s[key] for s in scores]
        assert all(a > b for a, b in zip(vals, vals[1:])), (key, vals)
    ates = [s["ate_rel"] for s in scores]
    assert all(a < b for a, b in zip(ates, ates[1:]))
    assert scores[-1]["auc30"] < 60


def test_relative_errors_of_one_rotated_camera():
    ref = ring(6)
    est = list(ref)
    c = ref[2]
    R = Rotation.from_rotvec([0, 0, np.radians(10)]).as_matrix() @ c.R  # roll about its optical axis
    est[2] = Camera(c.name, c.width, c.height, c.fx, c.fy, c.cx, c.cy, R, R @ -c.center)
    rot, tra = relative_pose_errors(np.stack([e.world_to_cam for e in est]), np.stack([r.world_to_cam for r in ref]))
    i, j = np.triu_indices(6, 1)
    involved = (i == 2) | (j == 2)
    np.testing.assert_allclose(rot[involved], 10.0, atol=1e-6)
    np.testing.assert_allclose(rot[~involved], 0.0, atol=1e-5)
    # the pair's translation is camera j's centre seen from camera i: only pairs with i = 2 see the roll
    assert (tra[i == 2] > 0.1).all() and (tra[i != 2] < 1e-5).all()
    # VGGT's AUC: mean over 1..T degree thresholds of the fraction below
    assert auc(np.array([0.5, 2.5, 100.0]), 5) == pytest.approx(100 * np.mean([1, 1, 2, 2, 2]) / 3)


def test_registered_fraction_and_name_matching():
    ref = ring(10)
    est = [Camera(**{**c.__dict__, "name": c.name.replace(".jpg", ".png")}) for c in ref[:7]]  # re-encoded
    m = evaluate_poses(est, ref)
    assert m["n_matched"] == 7 and m["registered_fraction"] == pytest.approx(0.7)
    assert evaluate_poses(est, ref, n_total=14)["registered_fraction"] == pytest.approx(0.5)
    m0 = evaluate_poses(est[:1], ref)
    assert m0["auc30"] is None and m0["ate"] is None and m0["registered_fraction"] == pytest.approx(0.1)


def test_depth_absrel():
    gt = np.array([[1.0, 2.0], [4.0, 0.0]])
    pred = np.array([[1.1, 1.0], [np.nan, 3.0]])
    assert depth_absrel(pred, gt) == pytest.approx((0.1 + 0.5) / 2)
    assert depth_absrel(pred, gt, mask=np.array([[True, False], [True, True]])) == pytest.approx(0.1)
    assert np.isnan(depth_absrel(np.zeros((2, 2)), gt))


def test_bird_reference_against_itself_across_formats(tmp_path):
    ref = read_reference(BIRD / "sparse" / "0")
    assert len(ref) == 184 and ref[0].name == "001.jpg"
    m = evaluate_poses(ref, ref)
    assert m["auc30"] == pytest.approx(100.0) and m["n_pairs"] == 184 * 183 // 2
    moved = apply_similarity(similarity(5, scale=0.3), ref)[0]
    write_transforms(tmp_path / "transforms.json", moved, [f"images/{c.name}" for c in moved])
    m2 = evaluate_poses(read_reference(tmp_path), ref)
    assert m2["auc5"] == pytest.approx(100.0) and m2["ate_rel"] < 1e-9 and m2["registered_fraction"] == 1.0
